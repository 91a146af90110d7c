"""Severity ladders and lesion rules on the validation subjects: is the score monotone and lesion-aware?

    KCROSS_EXTRA_DIR=/path/to/extra python benchmarks/ladders_table.py --out docs/results-ladders.md \
        --weights new=src/kcross_metric/weights/kcross.safetensors --weights old=path/to/old.safetensors

For every family of :data:`kcross_metric.train.ratedsets.ladders.LADDERS` it builds ``--n-ladders``
five-level severity ladders on random slices and contrasts of the validation subjects, and
``--n-lesion`` lesion-rule pairs per lesion edit (erased, faded, shrunk, moved, invented, each against
Rician noise, blur or bias field of equal MSE). Reported:

1. accuracy on the *consecutive* ladder pairs (level i vs i+1; the milder must score better; ties
   count 0.5), per family, with 95 % bootstrap CIs, for each K-CROSS weight file and the baselines;
2. accuracy per lesion edit;
3. the analysis of where order is lost, per weight file: the same accuracy for each branch quality,
   for the size (L2 norm) of each branch's difference vector *before* the score networks, and the
   fraction of ladder steps whose lesion region changed between the two levels.

Families kept out of the stage-2 training of the shipped weights (``HELD_OUT_FAMILIES``,
``HELD_OUT_LESION_EDITS``) are marked *unseen*. These orderings are constructed, not radiologist
judgements. Encoded features are cached in ``--cache`` (keyed by the weights' SHA-256 and the set's
parameters), so a rerun with another weight file only encodes that file.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from kcross_metric._util.files import atomic_write_text
from kcross_metric.evaluation.ladders import (
    CreditColumn,
    baseline_columns,
    branch_analysis,
    build_ladder_set,
    build_misregistration_set,
    encode_ladder_set,
    ladder_credit,
    misregistration_table,
    pair_credit,
    render_ladders_page,
    set_key,
)
from kcross_metric.train.ratedsets.ladders import HELD_OUT_FAMILIES, HELD_OUT_LESION_EDITS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="markdown table to write")
    parser.add_argument("--weights", action="append", default=None,
                        help="NAME=PATH of a K-CROSS weight file (repeatable; PATH 'bundled' = the shipped file)")
    parser.add_argument("--baselines", default="psnr,ssim,lpips_alex", help="comma-separated registry metrics")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--n-ladders", type=int, default=20, help="ladders per family")
    parser.add_argument("--n-lesion", type=int, default=30, help="lesion-rule pairs per lesion edit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-misreg", type=int, default=60, help="misregistration-vs-global pairs (structure rule)")
    parser.add_argument("--cache", type=Path, default=Path("runs/ladders-cache"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--title", default="Severity ladders and lesion rules (validation subjects)")
    parser.add_argument("--intro", type=Path, default=None, help="markdown inserted below the title (findings)")
    parser.add_argument("--unseen", default=",".join(HELD_OUT_FAMILIES + HELD_OUT_LESION_EDITS),
                        help="families / lesion edits to mark as kept out of stage-2 training ('' for none)")
    args = parser.parse_args(argv)
    unseen = {u for u in args.unseen.split(",") if u}
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    weights = [(name, path) for name, path in (w.split("=", 1) for w in (args.weights or ["shipped=bundled"]))]

    start = time.time()
    data = build_ladder_set(args.split, args.cache, n_ladders=args.n_ladders, n_lesion=args.n_lesion, seed=args.seed)
    key = set_key(args.split, data["cases"], n_ladders=args.n_ladders, n_lesion=args.n_lesion, seed=args.seed)
    n_ladders, n_levels = data["ladders"]["images"].shape[:2]
    a_better = data["lesion"]["a_better"]
    encoded = {name: encode_ladder_set(path, data, args.cache, key) for name, path in weights}
    baselines, left_out = baseline_columns([b for b in args.baselines.split(",") if b], data)
    for b, reason in left_out.items():
        print(f"baseline {b} left out: {reason}", file=sys.stderr)
    columns = [CreditColumn(f"K-CROSS {name}", ladder_credit(enc["ladders"]["score"], n_ladders, n_levels),
                            pair_credit(enc["lesion_a"]["score"], enc["lesion_b"]["score"], a_better))
               for name, enc in encoded.items()]
    columns += [CreditColumn(b, ladder_credit(lv, n_ladders, n_levels), pair_credit(la, lb, a_better))
                for b, (lv, la, lb) in baselines.items()]
    seconds = time.time() - start

    misreg_table = None
    if args.n_misreg:
        misreg = build_misregistration_set(data["cases"], args.cache, key=key, n_pairs=args.n_misreg, seed=args.seed)
        if len(misreg["case"]):
            misreg_table = misregistration_table(weights, misreg, args.cache, f"{key}-{args.n_misreg}", list(baselines))
    page = render_ladders_page(
        title=args.title,
        intro=args.intro.read_text(encoding="utf-8").strip() if args.intro else None,
        command="python benchmarks/ladders_table.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        seconds=seconds,
        data=data,
        columns=columns,
        unseen=unseen,
        misregistration=misreg_table,
        analyses=[branch_analysis(name, enc, n_ladders, n_levels) for name, enc in encoded.items()],
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, page, overwrite=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from _paths import name_checkout_shared

    name_checkout_shared()
    raise SystemExit(main())
