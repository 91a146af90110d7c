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
import hashlib
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kcross_metric.core.metric import KCross  # noqa: E402
from kcross_metric.train.config import Stage2Config, load_config  # noqa: E402
from kcross_metric.train.export import assemble_networks  # noqa: E402
from kcross_metric.train.ratedsets.ladders import HELD_OUT_FAMILIES, HELD_OUT_LESION_EDITS, LADDERS  # noqa: E402
from kcross_metric.train.ratedsets.twoafc import ALL_LESION_EDITS  # noqa: E402
from kcross_metric.train.stage2 import ScoreHeads, _training_bank, select_pairs, train_stage2, with_design  # noqa: E402
from kcross_metric.weights import sha256_file  # noqa: E402
from ladders_table import _fmt, _set_key, build_set, encode_weights, ladder_credit, lesion_credit  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "kcross_metric" / "train" / "configs"


def _scores(heads: ScoreHeads, feats: dict) -> torch.Tensor:
    with torch.no_grad():
        return heads(feats["vc"], feats["vt"], feats["vs"], feats["vm"])


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

    config = load_config(Stage2Config, args.config)
    config = replace(config, ladder_families=list(LADDERS), lesion_edits=list(ALL_LESION_EDITS), threads=args.threads)
    base_sha = sha256_file(args.base_weights)
    nets = with_design(assemble_networks(base_weights=args.base_weights), config.design)
    key = hashlib.sha1(f"{base_sha}|{sorted(vars(config).items())}".encode()).hexdigest()[:12]
    bank_path = args.cache / f"lofo-train-{key}.pt"
    if bank_path.exists():
        bank = torch.load(bank_path, weights_only=False)
    else:
        bank = _training_bank(config, KCross.from_networks(nets))
        torch.save(bank, bank_path)

    data = build_set(args, args.cache)
    # validation features under the same segmenter/stage-1 networks (any score heads: only the raw
    # branch vectors are used); the base file is encoded by ladders_table.py's code and cache
    enc = encode_weights("base", args.base_weights, data, args.cache, _set_key(args, data["cases"]))
    lad, les = data["ladders"], data["lesion"]
    n_ladders, n_levels = lad["images"].shape[:2]
    pair_family = np.repeat(np.array(lad["family"]), n_levels - 1)
    edits = np.array(les["edit"])

    def fit(drop: str | None) -> ScoreHeads:
        train = bank if drop is None else select_pairs(bank, lambda r: r.split(":", 1)[1] != drop)
        with tempfile.TemporaryDirectory() as tmp:
            return train_stage2(config, tmp, nets, train_bank=train, resume=False, verbose=False)

    def credits(heads: ScoreHeads) -> tuple[np.ndarray, np.ndarray]:
        lv = _scores(heads, enc["ladders"])
        return (ladder_credit(lv, n_ladders, n_levels),
                lesion_credit(_scores(heads, enc["lesion_a"]), _scores(heads, enc["lesion_b"]), les["a_better"]))

    all_ladder, all_lesion = credits(fit(None))
    lines = [
        "# Leave-one-family-out (validation subjects)",
        "",
        "Generated by `python benchmarks/lofo_table.py " + " ".join(argv if argv is not None else sys.argv[1:]) + "`",
        f"({time.time() - start:.0f} s so far at the first fit). Score heads refitted with `{args.config.name}` on the "
        f"training subjects' pairs ({len(bank['rules'])} pairs incl. every family) on the networks of "
        f"`{Path(args.base_weights).name}` (sha256 {base_sha[:16]}…); tested on {n_ladders} validation ladders and "
        f"{len(edits)} lesion-rule pairs of `benchmarks/ladders_table.py` (same seed and sizes). Constructed orderings.",
        "",
        "| family or lesion edit | pairs | all families in training | this one left out |",
        "|---|---|---|---|",
    ]
    for fam in LADDERS:
        rows = pair_family == fam
        if not rows.any():
            continue
        left_ladder, _ = credits(fit(fam))
        lines.append(f"| {fam} | {int(rows.sum())} | {_fmt(all_ladder[rows], False)} | {_fmt(left_ladder[rows], True)} |")
        print(lines[-1], flush=True)
    for edit in ALL_LESION_EDITS:
        rows = edits == edit
        if not rows.any():
            continue
        _, left_lesion = credits(fit(edit))
        lines.append(f"| {edit} (lesion rule) | {int(rows.sum())} | {_fmt(all_lesion[rows], False)} | "
                     f"{_fmt(left_lesion[rows], True)} |")
        print(lines[-1], flush=True)
    lines += ["", f"The shipped weights leave out {', '.join(HELD_OUT_FAMILIES + HELD_OUT_LESION_EDITS)} "
              f"(reported as unseen in docs/results-ladders.md). Total time {time.time() - start:.0f} s."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from _paths import name_checkout_shared

    name_checkout_shared()
    raise SystemExit(main())
