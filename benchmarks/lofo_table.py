"""Leave-one-family-out: does the score stay monotone and lesion-aware on families stage 2 never saw?

    KCROSS_EXTRA_DIR=/path/to/extra python benchmarks/lofo_table.py --out docs/results-lofo.md \
        --base-weights src/kcross_metric/weights/kcross.safetensors

The segmenter and stage-1 networks come from ``--base-weights``; the score heads are refitted by
:func:`kcross_metric.train.stage2.train_stage2` with the stage-2 config (``--config``, default the
shipped ``stage2.yaml``) on pairs of the *training* subjects that include every ladder family and
every lesion edit, then once per family F (and per lesion edit E) without F's (E's) pairs. Each
fit is tested on the validation subjects' ladders and lesion rules of ``benchmarks/ladders_table.py``
(the same set: same ``--n-ladders``, ``--n-lesion``, ``--seed``, and its feature cache).

Columns: *all families*: heads that saw F in training; *F left out*: heads that never saw F. A
design that is monotone only on the families it was trained on shows a drop in the second column.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from kcross_metric._util.files import atomic_write_text, cached_tensors
from kcross_metric.evaluation.ladders import (
    build_ladder_set,
    encode_ladder_set,
    fit_heads,
    heads_credits,
    leave_one_out_rows,
    lofo_bank_key,
    lofo_config,
    lofo_networks,
    lofo_training_bank,
    render_lofo_footer,
    render_lofo_header,
    set_key,
)
from kcross_metric.train.stage2 import FeatureBank
from kcross_metric.weights import sha256_file

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "kcross_metric" / "train" / "configs"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--base-weights", required=True, help="weight file with the segmenter and stage-1 networks")
    parser.add_argument("--config", type=Path, default=CONFIGS / "stage2.yaml")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--n-ladders", type=int, default=20)
    parser.add_argument("--n-lesion", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("runs/ladders-cache"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    start = time.time()

    config = lofo_config(args.config, args.threads)
    base_sha = sha256_file(args.base_weights)
    nets = lofo_networks(args.base_weights, config)
    # kept as a plain dict (read back without unpickling); files named lofo-train-* held a pickled FeatureBank
    bank_path = args.cache / f"lofo-bank-{lofo_bank_key(config, base_sha)}.pt"
    bank = FeatureBank(cached_tensors(bank_path, lambda: dict(lofo_training_bank(config, nets))))

    data = build_ladder_set(args.split, args.cache, n_ladders=args.n_ladders, n_lesion=args.n_lesion, seed=args.seed)
    # validation features under the same segmenter/stage-1 networks (any score heads: only the raw
    # branch vectors are used); the base file is encoded by the same code and cache as ladders_table.py
    key = set_key(args.split, data["cases"], n_ladders=args.n_ladders, n_lesion=args.n_lesion, seed=args.seed)
    enc = encode_ladder_set(args.base_weights, data, args.cache, key)

    all_credits = heads_credits(fit_heads(config, nets, bank), enc, data)
    lines = render_lofo_header(
        command="python benchmarks/lofo_table.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        seconds=time.time() - start, config_name=args.config.name, n_train_pairs=len(bank["rules"]),
        base_name=Path(args.base_weights).name, base_sha=base_sha, data=data,
    )
    for row in leave_one_out_rows(lambda drop: fit_heads(config, nets, bank, drop), enc, data, all_credits):
        lines.append(row.markdown())
        print(lines[-1], flush=True)
    lines += render_lofo_footer(time.time() - start)
    atomic_write_text(args.out, "\n".join(lines) + "\n", overwrite=True, make_parents=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from _paths import name_checkout_shared

    name_checkout_shared()
    raise SystemExit(main())
