"""2AFC accuracy of K-CROSS (and its branches, as the paper's ablation) against every baseline and the
deep feature distances (DFD) on the clinically ordered pair set built from the validation cases.

    kcross-train pairs --out runs/twoafc_val --split validation --n-pairs-per-rule 100
    python benchmarks/twoafc_table.py runs/twoafc_val/pairs.csv --out docs/results-twoafc.md

Accuracy = fraction of pairs where the metric prefers the side that is better by construction
(ties count 0.5); 95 % percentile bootstrap CIs over pairs (seeded). These are constructed
orderings, not radiologist judgments (docs/datasets/twoafc.md).

Score cache: the per-pair scores of every metric are kept in ``scores_<metric>.csv`` beside the
pairs CSV (``--cache-dir`` to put them elsewhere, ``--no-cache`` to disable). A row is keyed by
pair id, a SHA-1 digest of the pair's arrays (reference, a, b, source) and the metric's settings
(class, its parameters and a SHA-1 of its state dict, i.e. its weights), so a re-run only computes
the metrics or pairs that changed; a regenerated pair set or new weights are recomputed, never
read from a stale row. Scores are stored with full float precision (``repr``), so a table made
from the cache is identical to one computed afresh.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from kcross_metric._util.files import atomic_write_text
from kcross_metric.evaluation.twoafc_table import BASELINES, score_twoafc_set, twoafc_page
from kcross_metric.train.ratedsets.twoafc import load_twoafc_set


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pairs", type=Path)
    p.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    p.add_argument("--weights", type=Path, default=None)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--baselines", default=",".join(BASELINES))
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on a shared 2-core machine)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="folder of the per-metric score caches scores_<metric>.csv (default: the pairs CSV's folder)")
    p.add_argument("--no-cache", action="store_true", help="compute every score, read and write no cache")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    pairs = load_twoafc_set(args.pairs)
    cache_dir = None if args.no_cache else (args.cache_dir or args.pairs.parent)
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)  # this script's own cache folder
    start = time.time()
    result = score_twoafc_set(pairs, weights=args.weights, baselines=[n for n in args.baselines.split(",") if n],
                              cache_dir=cache_dir, log=lambda line: print(line, flush=True))
    text = twoafc_page(result, pairs_path=args.pairs, n_boot=args.n_boot, threads=args.threads, started=start,
                       cache_dir=cache_dir)
    print(text)
    if args.out is not None:
        atomic_write_text(args.out, text, overwrite=True)
    return 0


if __name__ == "__main__":
    from _paths import name_checkout_shared

    name_checkout_shared()
    sys.exit(main())
