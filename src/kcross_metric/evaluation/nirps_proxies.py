"""Which constructed label agrees with the NIRPS radiologists? (``benchmarks/nirps_proxies.py``)

The synthesized set of this project has no ratings, so its tables use two constructed labels:
*epoch pairs ordered by squared error* (rule ``synthesized_epochs``) and *the training epoch*. The
published NIRPS scores rate real GAN outputs of every epoch and list each slice's MAE, PSNR and
SSIM, so both labels can be checked against radiologists there: for every two epochs of one
generator on one slice whose ratings differ (:func:`epoch_pairs`), does the label pick the slice
the radiologists rated higher (:func:`label_agreement`)?

A *label* is a function ``(columns, i, j) -> decision`` over index pairs: +1 when item ``i`` is
better, -1 when ``j`` is, 0 when it makes no decision (inside its margin). :data:`LABELS` holds
the ones of the page; :func:`proxy_rows` scores each against the ratings, overall and per
generator, with 95 % percentile bootstrap CIs over slices (:func:`bootstrap_over_slices`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .agreement import srocc
from .tables import ScoreTable

__all__ = [
    "MSE_MARGIN_DB",
    "LABELS",
    "PREFILL_LABEL",
    "Label",
    "ProxyRow",
    "EpochSrocc",
    "later_epoch_label",
    "psnr_margin_label",
    "mae_margin_label",
    "higher_label",
    "epoch_pairs",
    "label_agreement",
    "bootstrap_over_slices",
    "proxy_rows",
    "epoch_srocc_rows",
]

#: PSNR difference equal to a 10 % lower MSE when both slices share the data range (0.458 dB).
MSE_MARGIN_DB: float = 10.0 * math.log10(1.0 / 0.9)

#: a label: (columns, indices i, indices j) -> +1 i better, -1 j better, 0 no decision, per pair
Label = Callable[[dict[str, np.ndarray], np.ndarray, np.ndarray], np.ndarray]


def later_epoch_label(cols: dict[str, np.ndarray], i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The later epoch is better (column ``epoch``)."""
    return np.sign(cols["epoch"][i] - cols["epoch"][j])


def psnr_margin_label(cols: dict[str, np.ndarray], i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Higher PSNR by at least :data:`MSE_MARGIN_DB` is better (MSE >= 10 % lower); else no decision."""
    d = cols["psnr"][i] - cols["psnr"][j]
    return np.where(np.abs(d) >= MSE_MARGIN_DB, np.sign(d), 0.0)


def mae_margin_label(cols: dict[str, np.ndarray], i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """MAE lower by at least 10 % is better; else no decision."""
    a, b = cols["mae"][i], cols["mae"][j]
    return np.where(np.minimum(a, b) <= 0.9 * np.maximum(a, b), np.sign(b - a), 0.0)


def higher_label(name: str) -> Label:
    """The label "higher column ``name`` is better" (no margin)."""

    def label(cols: dict[str, np.ndarray], i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return np.sign(cols[name][i] - cols[name][j])

    return label


#: The labels checked on every table, by their name on the page.
LABELS: dict[str, Label] = {
    "later epoch": later_epoch_label,
    "MSE >= 10 % lower (rule synthesized_epochs)": psnr_margin_label,
    "MAE >= 10 % lower": mae_margin_label,
    "SSIM higher": higher_label("ssim"),
}

#: Name of the label added when the pre-fill scores are given (the authors' L2-based score).
PREFILL_LABEL = "pre-fill (L2-based, shown to the readers)"


class ProxyRow(NamedTuple):
    """Agreement of one label with the radiologists on one group of epoch pairs."""

    label: str
    group: str  #: a generator, or ``"all"``
    n_decided: int  #: pairs on which the label makes a decision
    agreement: float  #: share of the decided pairs on which it agrees with the ratings
    ci_low: float
    ci_high: float


class EpochSrocc(NamedTuple):
    """SROCC of the radiologist score with the training epoch in one (generator, dataset) group."""

    model: str
    dataset: str
    n_slices: int
    srocc: float


def epoch_pairs(table: ScoreTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)`` of two different epochs of one generator on one slice whose ratings
    differ, and each pair's slice id (an int per (dataset, target, model, slice)) for the bootstrap.

    ``table`` needs the key columns ``dataset``, ``target``, ``model``, ``slice_id``; rows of one
    group are paired in table order (``i < j``).
    """
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


def label_agreement(label: np.ndarray, ratings_i: np.ndarray, ratings_j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: whether the label decides (``label != 0``), and whether it agrees with the ratings."""
    decided = label != 0
    return decided, decided & (np.sign(ratings_i - ratings_j) == label)


def bootstrap_over_slices(correct: np.ndarray, slices: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """95 % percentile CI of the mean of ``correct`` when whole slices are resampled (seeded)."""
    uniq, inv = np.unique(slices, return_inverse=True)
    hits = np.bincount(inv, weights=correct.astype(np.float64), minlength=uniq.size)
    counts = np.bincount(inv, minlength=uniq.size).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, uniq.size, size=(n_boot, uniq.size))
    means = hits[draws].sum(1) / np.maximum(counts[draws].sum(1), 1.0)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def proxy_rows(table: ScoreTable, n_boot: int = 1000, seed: int = 0,
               prefill: np.ndarray | None = None) -> list[ProxyRow]:
    """One :class:`ProxyRow` per label of :data:`LABELS` (then :data:`PREFILL_LABEL` if ``prefill``,
    one value per table row, is given) and group: ``"all"``, then each generator in sorted order;
    groups in which the label decides no pair are left out.

    ``table`` needs the key column ``epoch`` and the metrics ``psnr``, ``mae``, ``ssim``.
    """
    i, j, slices = epoch_pairs(table)
    cols = {"epoch": table.keys["epoch"].astype(np.float64), **{k: v for k, v in table.metrics.items()}}
    labels = dict(LABELS)
    if prefill is not None:
        cols["prefill"] = prefill
        labels[PREFILL_LABEL] = higher_label("prefill")
    model = table.keys["model"][i]
    out = []
    for name, fn in labels.items():
        decided, correct = label_agreement(fn(cols, i, j), table.ratings[i], table.ratings[j])
        for group in ["all", *sorted(set(model))]:
            sel = decided & ((model == group) if group != "all" else True)
            if not sel.any():
                continue
            low, high = bootstrap_over_slices(correct[sel], slices[sel], n_boot, seed)
            out.append(ProxyRow(name, group, int(sel.sum()), float(correct[sel].mean()), low, high))
    return out


def epoch_srocc_rows(table: ScoreTable) -> list[EpochSrocc]:
    """SROCC of the rating with the epoch (later = higher) per (generator, dataset) group, in the
    order of :meth:`ScoreTable.group_by`."""
    out = []
    for group, sub in table.group_by(("model", "dataset")):
        g = dict(group)
        value = srocc(sub.keys["epoch"].astype(np.float64), sub.ratings, higher_is_better=True)
        out.append(EpochSrocc(g["model"], g["dataset"], len(sub), value))
    return out
