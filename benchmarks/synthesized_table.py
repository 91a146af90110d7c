"""K-CROSS (and its branches) against every baseline on the synthesized set: real pix2pix/CycleGAN
outputs of every epoch on the validation cases (docs/datasets/synthesized.md).

    kcross-train synthesize --runs runs/gan --out runs/synthesized
    python benchmarks/synthesized_table.py runs/synthesized/synthesized.csv --out docs/results-synthesized.md

No human ratings exist for these images, so three constructed views are reported:

1. 2AFC accuracy on epoch pairs (rule ``synthesized_epochs`` of the rated-sets issue): for two
   epochs of one generator on one slice, the later one is "better" only if its MSE to the real image
   AND its MSE inside the lesion mask are both >= 10 % lower. The ordering is defined by squared
   error, so MAE/PSNR are favoured by construction.
2. SROCC between each metric and the training epoch, per generator (training progress as a weak,
   not necessarily monotone proxy of quality).
3. Mean of each metric per generator at its last epoch (descriptive; which model each metric prefers).

Per-image scores are cached in ``<set>/scores/<metric>.csv`` (keyed by the fake's path and the
metric settings) so a re-run only computes what is missing. CIs: seeded 95 % percentile bootstrap
over pairs (1) or slices (2); epoch pairs share images, so those intervals are optimistic.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from kcross_metric._util.files import atomic_write_text
from kcross_metric.evaluation.synthesized import (
    BASELINES,
    build_tables,
    row_contents,
    score_rows,
    set_digest,
    synthesized_page,
    write_table_csv,
)
from kcross_metric.train.translation.synthesize import load_synthesized_set
from kcross_metric.weights import resolve_weights, sha256_file


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("index", type=Path, help="synthesized.csv from `kcross-train synthesize`")
    p.add_argument("--out", type=Path, default=None, help="write the Markdown page here (default: print)")
    p.add_argument("--csv-out", type=Path, default=None)
    p.add_argument("--metrics", default="kcross," + ",".join(BASELINES))
    p.add_argument("--margin", type=float, default=0.1)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--weights", type=Path, default=None,
                   help="K-CROSS weights file (default: the bundled weights); its SHA-256 keys the score cache")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    rows = load_synthesized_set(args.index)
    contents = row_contents(rows)
    digest = set_digest(rows, contents)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    scores = score_rows(rows, metrics, args.index.parent / "scores",
                        weights=args.weights, contents=contents)
    weights_sha = sha256_file(resolve_weights(args.weights, filename="kcross.safetensors"))[:16]
    tables, csv_rows = build_tables(rows, scores, margin=args.margin, n_boot=args.n_boot)
    text = synthesized_page(rows, tables, digest=digest, weights_sha256=weights_sha, weights=args.weights,
                            left_out=[b for b in BASELINES if b not in metrics],
                            seconds=time.time() - start)
    if args.out:
        atomic_write_text(args.out, text, overwrite=True)
    else:
        print(text)
    if args.csv_out:
        write_table_csv(args.csv_out, csv_rows)
    return 0


if __name__ == "__main__":
    from _paths import name_checkout_shared

    name_checkout_shared()
    sys.exit(main())
