"""Which constructed label agrees with the NIRPS radiologists? Regenerates docs/nirps-proxies.md.

    python benchmarks/nirps_proxies.py [--n-boot 1000] [--out docs/nirps-proxies.md]

The synthesized set of this project (docs/datasets/synthesized.md) has no ratings, so its tables
use two constructed labels: (1) *epoch pairs ordered by squared error* (rule ``synthesized_epochs``:
of two epochs of one generator on one slice, the one with >= 10 % lower MSE is better) and (2) *the
training epoch* (later = better). The published NIRPS scores have radiologist ratings of real GAN
outputs of every epoch together with the MAE, PSNR and SSIM of each slice, so both labels can be
checked against radiologists there: for every two epochs of one generator on one slice whose
ratings differ, does the label pick the slice the radiologists rated higher?

Labels checked (each as a 2AFC "judge" on the same pairs):

* ``later epoch``: the later epoch is better (pairs of different epochs);
* ``MSE >= 10 % lower``: PSNR higher by >= 10*log10(1/0.9) = 0.458 dB, which is MSE >= 10 % lower
  when both slices share the data range (same real slice); pairs within the margin are left out;
* ``MAE >= 10 % lower`` and ``SSIM higher``, for comparison; ``pre-fill`` = the authors' L2-based
  score the radiologists saw before adjusting it (the anchoring caveat in docs/nirps-tables.md).

CIs: 95 % percentile bootstrap over slices (a slice's pairs are resampled together), seeded.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kcross_metric import __version__
from kcross_metric.evaluation.tables import ScoreTable

ROOT = Path(__file__).resolve().parents[1]
MSE_MARGIN_DB = 10.0 * math.log10(1.0 / 0.9)

#: a label: (values of item i, values of item j) -> +1 i better, -1 j better, 0 no decision
Label = Callable[[dict[str, np.ndarray], np.ndarray, np.ndarray], np.ndarray]


def _later_epoch(cols: dict[str, np.ndarray], i: np.ndarray, j: np.ndarray) -> np.ndarray:
    return np.sign(cols["epoch"][i] - cols["epoch"][j])


def _psnr_margin(cols: dict[str, np.ndarray], i: np.ndarray, j: np.ndarray) -> np.ndarray:
    d = cols["psnr"][i] - cols["psnr"][j]
    return np.where(np.abs(d) >= MSE_MARGIN_DB, np.sign(d), 0.0)


def _mae_margin(cols: dict[str, np.ndarray], i: np.ndarray, j: np.ndarray) -> np.ndarray:
    a, b = cols["mae"][i], cols["mae"][j]
    return np.where(np.minimum(a, b) <= 0.9 * np.maximum(a, b), np.sign(b - a), 0.0)


def _higher(name: str) -> Label:
    def label(cols: dict[str, np.ndarray], i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return np.sign(cols[name][i] - cols[name][j])

    return label


LABELS: dict[str, Label] = {
    "later epoch": _later_epoch,
    "MSE >= 10 % lower (rule synthesized_epochs)": _psnr_margin,
    "MAE >= 10 % lower": _mae_margin,
    "SSIM higher": _higher("ssim"),
}


def epoch_pairs(table: ScoreTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs (i, j) of two different epochs of one generator on one slice whose ratings differ,
    and each pair's slice id (an int per (dataset, target, model, slice)) for the bootstrap."""
    group = np.array(["|".join(t) for t in zip(table.keys["dataset"], table.keys["target"],
                                                 table.keys["model"], table.keys["slice_id"])])
    _, slice_of = np.unique(group, return_inverse=True)
    order = np.argsort(slice_of, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(slice_of[order]) != 0])
    ends = np.r_[starts[1:], order.size]
    ii, jj = [], []
    for s, e in zip(starts, ends):
        idx = order[s:e]
        a, b = np.triu_indices(idx.size, k=1)
        ii.append(idx[a])
        jj.append(idx[b])
    i, j = np.concatenate(ii), np.concatenate(jj)
    keep = table.ratings[i] != table.ratings[j]
    return i[keep], j[keep], slice_of[i[keep]]


def agreement(label: np.ndarray, ratings_i: np.ndarray, ratings_j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: whether the label decides (label != 0), and whether it agrees with the ratings."""
    decided = label != 0
    return decided, decided & (np.sign(ratings_i - ratings_j) == label)


def bootstrap_over_slices(correct: np.ndarray, slices: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """95 % percentile CI of the mean of ``correct`` when whole slices are resampled."""
    uniq, inv = np.unique(slices, return_inverse=True)
    hits = np.bincount(inv, weights=correct.astype(np.float64), minlength=uniq.size)
    counts = np.bincount(inv, minlength=uniq.size).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, uniq.size, size=(n_boot, uniq.size))
    means = hits[draws].sum(1) / np.maximum(counts[draws].sum(1), 1.0)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def proxy_rows(table: ScoreTable, n_boot: int = 1000, seed: int = 0,
               prefill: np.ndarray | None = None) -> list[tuple[str, str, int, float, float, float]]:
    """(label, group, n decided pairs, agreement, CI low, CI high) for every label and generator."""
    i, j, slices = epoch_pairs(table)
    cols = {"epoch": table.keys["epoch"].astype(np.float64), **{k: v for k, v in table.metrics.items()}}
    labels = dict(LABELS)
    if prefill is not None:
        cols["prefill"] = prefill
        labels["pre-fill (L2-based, shown to the readers)"] = _higher("prefill")
    model = table.keys["model"][i]
    out = []
    for name, fn in labels.items():
        decided, correct = agreement(fn(cols, i, j), table.ratings[i], table.ratings[j])
        for group in ["all", *sorted(set(model))]:
            sel = decided & ((model == group) if group != "all" else True)
            if not sel.any():
                continue
            low, high = bootstrap_over_slices(correct[sel], slices[sel], n_boot, seed)
            out.append((name, group, int(sel.sum()), float(correct[sel].mean()), low, high))
    return out


def main(argv: list[str] | None = None) -> int:
    from kcross_metric._util.shared_data import shared_path
    from kcross_metric.evaluation.agreement import srocc
    from kcross_metric.evaluation.nirps import attach_prefill, load_nirps_prefill, load_nirps_scores
    from kcross_metric.evaluation.tables import write_atomic

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "docs" / "nirps-proxies.md"))
    args = ap.parse_args(argv)
    t0 = time.time()
    table = load_nirps_scores(None, max_epoch=40)
    prefill = None
    prefill_path = shared_path("data", "nirps", "nirps_dataset_human.txt")
    if prefill_path is not None and prefill_path.is_file():
        table = attach_prefill(table, load_nirps_prefill(prefill_path))
        prefill = table.metrics.get("prefill")
    rows = proxy_rows(table, n_boot=args.n_boot, seed=args.seed, prefill=prefill)
    cmd = "python benchmarks/nirps_proxies.py" + (f" --n-boot {args.n_boot}" if args.n_boot != 1000 else "")
    n_pairs = max(r[2] for r in rows if r[0] == "later epoch" and r[1] == "all")
    out = [
        "# NIRPS: which constructed label agrees with the radiologists?", "",
        f"Generated by `{cmd}` (kcross-metric {__version__}); do not edit by hand.", "",
        "The synthesized set of this project carries no ratings; its tables "
        "([results-synthesized.md](results-synthesized.md)) use two constructed labels, *epoch pairs "
        "ordered by squared error* and *the training epoch*, and the K-CROSS score networks are fitted "
        "on the first ([training.md](training.md#refitting-the-score-networks-on-synthesized-outputs)). "
        "The published NIRPS scores rate real GAN outputs (CycleGAN, MUNIT, UNIT; epochs 1-40) and list each "
        "slice's MAE, PSNR and SSIM, so both labels can be checked against radiologists there. "
        f"Pairs: two epochs of one generator on one slice whose ratings differ ({n_pairs} pairs); a label "
        "that makes no decision on a pair (inside its margin) is scored on the pairs it decides. "
        f"95 % CIs: bootstrap over slices, {args.n_boot} resamples, seed {args.seed}.", "",
        "## 1. Agreement of each label with the radiologists on epoch pairs", "",
        "| label | generator | pairs decided | agreement with radiologists [95 % CI] |", "|---|---|---|---|",
    ]
    out += [f"| {name} | {group} | {n} | {acc:.3f} [{lo:.3f}, {hi:.3f}] |" for name, group, n, acc, lo, hi in rows]
    out += ["", "## 2. SROCC of the radiologist score with the epoch, per generator and dataset", "",
            "| generator | dataset | slices | SROCC(rating, epoch) |", "|---|---|---|---|"]
    for group, sub in table.group_by(("model", "dataset")):
        g = dict(group)
        value = srocc(sub.keys["epoch"].astype(np.float64), sub.ratings, higher_is_better=True)
        out.append(f"| {g['model']} | {g['dataset']} | {len(sub)} | {value:.2f} |")
    acc = {(r[0], r[1]): r[3] for r in rows}
    out += ["", "## What it says", "",
            f"- **The training epoch is not a reliable proxy of radiologist judgment on NIRPS**: the later epoch "
            f"was rated higher in {acc[('later epoch', 'all')]:.1%} of the epoch pairs (chance 50 %): "
            + ", ".join(f"{g} {acc[('later epoch', g)]:.3f}" for g in ("cyclegan", "munit", "unit") if ("later epoch", g) in acc)
            + "; for CycleGAN the radiologist score falls as training goes on (section 2).",
            f"- **The squared-error epoch-pair rule agrees with the radiologists in "
            f"{acc[('MSE >= 10 % lower (rule synthesized_epochs)', 'all')]:.1%}** of the pairs it decides. "
            "It is the better-founded of the two labels, which is why the K-CROSS score networks are "
            "refitted on it and why table 1 of the synthesized-set results carries more weight than table 2.",
            "- Caveat: the readers adjusted a pre-filled L2-based score, which favours pixel-error labels "
            "(docs/nirps-tables.md); NIRPS also has no lesion masks, so the rule's lesion criterion is not "
            "checked here, and these are other generators and datasets than the project's synthesized set.",
            "", f"_Computed in {time.time() - t0:.0f} s._", ""]
    write_atomic(Path(args.out), "\n".join(out), overwrite=True)  # this script regenerates that page
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from _paths import name_checkout_shared

    name_checkout_shared()
    sys.exit(main())
