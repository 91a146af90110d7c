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
import hashlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from kcross_metric import KCross, create_metric
from kcross_metric.evaluation import bootstrap_ci
from kcross_metric.train.data import available_cases
from kcross_metric.train.ratedsets.ladders import (
    HELD_OUT_FAMILIES,
    HELD_OUT_LESION_EDITS,
    LADDERS,
    build_ladders,
    build_lesion_rules,
    build_misregistration_pairs,
    consecutive_pairs,
)
from kcross_metric.train.ratedsets.twoafc import ALL_LESION_EDITS, load_case
from kcross_metric.train.splits import cases_for_split

BRANCHES = ("score", "complex", "natural", "tumor", "structure")
SLICE_RANGE = (40, 100)


def _set_key(args: argparse.Namespace, cases: Sequence[str]) -> str:
    text = f"{args.split}|{','.join(cases)}|{args.n_ladders}|{args.n_lesion}|{args.seed}|{SLICE_RANGE}|v1"
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def build_set(args: argparse.Namespace, cache: Path) -> dict:
    cases = available_cases(cases_for_split(args.split))
    key = _set_key(args, cases)
    path = cache / f"set-{key}.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    start = time.time()
    loaded = [load_case(c, slice_range=SLICE_RANGE) for c in cases]
    ladders = build_ladders(loaded, n_per_family=args.n_ladders, seed=args.seed)
    lesion = build_lesion_rules(loaded, n_per_edit=args.n_lesion, seed=args.seed + 1)
    data = {
        "cases": list(cases),
        "ladders": {
            "family": [lad.family for lad in ladders],
            "case": [lad.case for lad in ladders],
            "images": torch.stack([lad.images for lad in ladders]),  # (N, L, 1, H, W)
            "reference": torch.cat([lad.reference for lad in ladders]),
            "source": torch.cat([lad.source for lad in ladders]),
        },
        "lesion": {
            "edit": [p.family for p in lesion],
            "case": [p.case for p in lesion],
            "a": torch.cat([p.a for p in lesion]),
            "b": torch.cat([p.b for p in lesion]),
            "a_better": torch.tensor([p.better == "a" for p in lesion]),
            "reference": torch.cat([p.reference for p in lesion]),
            "source": torch.cat([p.source for p in lesion]),
        },
        "seconds": time.time() - start,
    }
    torch.save(data, path)
    return data


def build_misregistration_set(args: argparse.Namespace, cache: Path, cases: Sequence[str]) -> dict:
    """The structure rule's pairs (misregistered vs aligned with equal-MSE global error), cached."""
    path = cache / f"misreg-{_set_key(args, cases)}-{args.n_misreg}.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    loaded = [load_case(c, slice_range=SLICE_RANGE) for c in cases]
    pairs = build_misregistration_pairs(loaded, n_pairs=args.n_misreg, seed=args.seed + 2)
    data = {
        "a": torch.cat([p.a for p in pairs]), "b": torch.cat([p.b for p in pairs]),
        "a_better": torch.tensor([p.better == "a" for p in pairs]),
        "reference": torch.cat([p.reference for p in pairs]), "source": torch.cat([p.source for p in pairs]),
        "case": [p.case for p in pairs],
    }
    torch.save(data, path)
    return data


def encode_misregistration(weights: str, misreg: dict, cache: Path, key: str) -> dict:
    kcross = KCross(weights=None if weights == "bundled" else weights)
    sha = str(kcross.weights_info.get("weights_sha256", "none"))[:16]
    path = cache / f"featsm-{key}-{sha}.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    result = {"a": _encode(kcross, misreg["a"], misreg["reference"], misreg["source"]),
              "b": _encode(kcross, misreg["b"], misreg["reference"], misreg["source"])}
    torch.save(result, path)
    return result


def _encode(kcross: KCross, fake: torch.Tensor, real: torch.Tensor, source: torch.Tensor, batch: int = 16) -> dict:
    out: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for i in range(0, fake.shape[0], batch):
            sl = slice(i, i + batch)
            feats = kcross.slice_features(fake[sl], real[sl], source[sl], None)
            quality = kcross.qualities(feats)
            rows = {k: quality[k] for k in BRANCHES}
            rows["norm_complex"] = feats["complex"].abs().norm(dim=1)
            rows["norm_tumor"] = feats["tumor"].norm(dim=1)
            rows["norm_structure"] = feats["structure"].norm(dim=1)
            if "lesion_change" in feats:
                rows["lesion_change"] = feats["lesion_change"].sum(dim=1)
            rows["region"] = feats["lesion_mask"].flatten(1)
            # the raw branch vectors, for refitting score heads on them (benchmarks/lofo_table.py)
            rows["vc"], rows["vt"], rows["vs"] = feats["complex"], feats["tumor"], feats["structure"]
            rows["vm"] = feats.get("lesion_change", feats["tumor"].new_zeros((feats["tumor"].shape[0], 2)))
            for k, v in rows.items():
                out.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in out.items()}


def encode_weights(name: str, weights: str, data: dict, cache: Path, set_key: str) -> dict:
    kcross = KCross(weights=None if weights == "bundled" else weights)
    sha = str(kcross.weights_info.get("weights_sha256", "none"))[:16]
    path = cache / f"feats2-{set_key}-{sha}.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    lad = data["ladders"]
    n, levels = lad["images"].shape[:2]
    fake = lad["images"].flatten(0, 1)
    ref = lad["reference"].repeat_interleave(levels, dim=0)
    src = lad["source"].repeat_interleave(levels, dim=0)
    les = data["lesion"]
    result = {
        "sha": sha,
        "design": kcross.nets.design,
        "ladders": _encode(kcross, fake, ref, src),
        "lesion_a": _encode(kcross, les["a"], les["reference"], les["source"]),
        "lesion_b": _encode(kcross, les["b"], les["reference"], les["source"]),
    }
    torch.save(result, path)
    return result


def baseline_scores(name: str, data: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ladder level scores, lesion a, lesion b), oriented so that higher is better."""
    metric = create_metric(name, data_range=1.0)
    sign = 1.0 if getattr(metric, "higher_is_better", True) else -1.0
    lad, les = data["ladders"], data["lesion"]
    levels = lad["images"].shape[1]

    def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([metric(x[i : i + 32], y[i : i + 32]).flatten() for i in range(0, x.shape[0], 32)]) * sign

    return (
        run(lad["images"].flatten(0, 1), lad["reference"].repeat_interleave(levels, dim=0)),
        run(les["a"], les["reference"]),
        run(les["b"], les["reference"]),
    )


def _acc(better: np.ndarray, worse: np.ndarray) -> np.ndarray:
    return (better > worse).astype(float) + 0.5 * (better == worse)


def ladder_credit(level_scores: torch.Tensor, n_ladders: int, n_levels: int) -> np.ndarray:
    """Per consecutive pair credit (1 correct, 0.5 tie, 0 wrong), ladder-major."""
    better, worse = consecutive_pairs(n_ladders, n_levels)
    s = level_scores.double().numpy()
    return _acc(s[better.numpy()], s[worse.numpy()])


def lesion_credit(a: torch.Tensor, b: torch.Tensor, a_better: torch.Tensor) -> np.ndarray:
    a_, b_ = a.double().numpy(), b.double().numpy()
    ab = a_better.numpy()
    return np.where(ab, _acc(a_, b_), _acc(b_, a_))


def _fmt(credit: np.ndarray, ci: bool) -> str:
    if credit.size == 0:
        return "–"
    if not ci:
        return f"{credit.mean():.2f}"
    lo_hi = bootstrap_ci(np.mean, credit, n_boot=500, seed=0)
    return f"{credit.mean():.3f} [{lo_hi.low:.2f}, {lo_hi.high:.2f}]"


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
    weights = [w.split("=", 1) for w in (args.weights or ["shipped=bundled"])]

    start = time.time()
    data = build_set(args, args.cache)
    set_key = _set_key(args, data["cases"])
    lad, les = data["ladders"], data["lesion"]
    n_ladders, n_levels = lad["images"].shape[:2]
    families = np.array(lad["family"])
    pair_family = np.repeat(families, n_levels - 1)
    edits = np.array(les["edit"])
    encoded = {name: encode_weights(name, path, data, args.cache, set_key) for name, path in weights}
    baselines = {}
    for b in [b for b in args.baselines.split(",") if b]:
        try:
            baselines[b] = baseline_scores(b, data)
        except Exception as exc:  # a baseline without its backbone weights is left out, with the reason
            print(f"baseline {b} left out: {exc}", file=sys.stderr)

    columns: list[tuple[str, np.ndarray, np.ndarray]] = []  # name, ladder credit, lesion credit
    for name, enc in encoded.items():
        columns.append((f"K-CROSS {name}", ladder_credit(enc["ladders"]["score"], n_ladders, n_levels),
                        lesion_credit(enc["lesion_a"]["score"], enc["lesion_b"]["score"], les["a_better"])))
    for b, (lv, la, lb) in baselines.items():
        columns.append((b, ladder_credit(lv, n_ladders, n_levels), lesion_credit(la, lb, les["a_better"])))

    def mark(f: str) -> str:
        return f"{f} *(unseen)*" if f in unseen else f

    lines = [
        f"# {args.title}",
        "",
        *([args.intro.read_text(encoding="utf-8").strip(), ""] if args.intro else []),
        "Generated by `python benchmarks/ladders_table.py " + " ".join(argv if argv is not None else sys.argv[1:]) + "`",
        f"({time.time() - start:.0f} s including cached parts). Subjects: {len(data['cases'])} validation subjects "
        f"present on the machine ({', '.join(data['cases'])}); {n_ladders} ladders of {n_levels} levels "
        f"({n_ladders * (n_levels - 1)} consecutive pairs), {len(edits)} lesion-rule pairs. ",
        "",
        "Constructed orderings, not radiologist judgements. Accuracy = fraction of pairs where the metric "
        "prefers the better side (ties 0.5), 95 % bootstrap CI for the first K-CROSS column."
        + (" *unseen*: kept out of the stage-2 training of the shipped weights." if unseen else ""),
        "",
        "## Severity ladders: consecutive levels (the milder must score better)",
        "",
        "| family | levels | " + " | ".join(c[0] for c in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for fam in LADDERS:
        rows = pair_family == fam
        if not rows.any():
            continue
        cells = [_fmt(c[1][rows], i == 0) for i, c in enumerate(columns)]
        levels = ", ".join(f"{v:g}" for v in LADDERS[fam].levels)
        lines.append(f"| {mark(fam)} | {levels} | " + " | ".join(cells) + " |")
    cells = [_fmt(c[1], i == 0) for i, c in enumerate(columns)]
    lines.append("| **all** | | " + " | ".join(cells) + " |")
    worst = min((columns[0][1][pair_family == f].mean(), f) for f in set(pair_family)) if columns else None
    lines += [
        "",
        "## Lesion rules: the lesion edit must score worse than a global error of equal MSE",
        "",
        "| lesion edit | pairs | " + " | ".join(c[0] for c in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for edit in ALL_LESION_EDITS:
        rows = edits == edit
        if rows.any():
            cells = [_fmt(c[2][rows], i == 0) for i, c in enumerate(columns)]
            lines.append(f"| {mark(edit)} | {int(rows.sum())} | " + " | ".join(cells) + " |")
    misreg = build_misregistration_set(args, args.cache, data["cases"]) if args.n_misreg else None
    if misreg is not None and len(misreg["case"]):
        mkey = f"{set_key}-{args.n_misreg}"
        lines += [
            "",
            "## Structure rule: a misregistered fake must score worse than an aligned one of equal MSE",
            "",
            f"{len(misreg['case'])} pairs: the fake rotated by 1-4 degrees and shifted by 0.5-2 px "
            "(`distortions.misregister`) against the aligned image with Rician noise, blur or bias field of "
            "the same MSE. Per K-CROSS weight file: the score and each branch quality alone.",
            "",
            "| metric | " + " | ".join(BRANCHES) + " |",
            "|---|" + "---|" * len(BRANCHES),
        ]
        for name, path in weights:
            em = encode_misregistration(path, misreg, args.cache, mkey)
            cells = [_fmt(lesion_credit(em["a"][k], em["b"][k], misreg["a_better"]), k == "score") for k in BRANCHES]
            lines.append(f"| K-CROSS {name} | " + " | ".join(cells) + " |")
        for b in baselines:
            metric = create_metric(b, data_range=1.0)
            sign = 1.0 if getattr(metric, "higher_is_better", True) else -1.0
            with torch.no_grad():
                sa = metric(misreg["a"], misreg["reference"]).flatten() * sign
                sb = metric(misreg["b"], misreg["reference"]).flatten() * sign
            lines.append(f"| {b} | {_fmt(lesion_credit(sa, sb, misreg['a_better']), False)} |" + " |" * (len(BRANCHES) - 1))
    lines += ["", "## Where order is lost (analysis, issue 16)", ""]
    lines += [
        "Per weight file and family: ladder accuracy of the score, of each branch quality, of the size of each "
        "branch's difference vector before the score networks (`|v|`: a larger vector for the stronger "
        "artefact counts as correct), and the fraction of ladder steps where the lesion region the tumor "
        "branch compares changed between the two levels.",
        "",
    ]
    for name, enc in encoded.items():
        e = enc["ladders"]
        region = e["region"].view(n_ladders, n_levels, -1)
        jumps = (region[:, 1:] != region[:, :-1]).any(dim=-1).flatten().numpy()
        cols = [("score", e["score"], 1), ("complex", e["complex"], 1), ("natural", e["natural"], 1),
                ("tumor", e["tumor"], 1), ("structure", e["structure"], 1),
                ("\\|v_complex\\|", e["norm_complex"], -1), ("\\|v_tumor\\|", e["norm_tumor"], -1),
                ("\\|v_structure\\|", e["norm_structure"], -1)]
        if "lesion_change" in e:
            cols.append(("lesion change", e["lesion_change"], -1))
        lines += [f"### K-CROSS {name} (design {enc['design']}, sha256 {enc['sha']}…)", "",
                  "| family | " + " | ".join(c[0] for c in cols) + " | region changed |",
                  "|---|" + "---|" * (len(cols) + 1)]
        for fam in LADDERS:
            rows = pair_family == fam
            if not rows.any():
                continue
            cells = [_fmt(ladder_credit(sign * v, n_ladders, n_levels)[rows], False) for _, v, sign in cols]
            lines.append(f"| {mark(fam)} | " + " | ".join(cells) + f" | {jumps[rows].mean():.2f} |")
        lines.append("")
    if worst is not None:
        lines.append(f"Lowest family of the first column: {worst[1]} ({worst[0]:.3f}).")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from _paths import name_checkout_shared

    name_checkout_shared()
    raise SystemExit(main())
