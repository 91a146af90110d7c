"""NIRPS agreement tables of MAE/PSNR/SSIM compared with the paper's Table II (``benchmarks/nirps_tables.py``).

The agreement rows themselves come from :func:`~kcross_metric.evaluation.tables.agreement_table`
on the published scores grouped by :data:`GROUPS`; this module adds what the comparison with the
K-CROSS paper's Table II needs:

* :func:`table_ii_cells`: per (generator, dataset, metric) the paper's value, our statistics and the
  prototype's ``legacy`` inconsistency over the four listing orders of :data:`LISTING_ORDERS`
  (:func:`legacy_over_orders`: the legacy defect's value depends on the order of the slices);
* :func:`table_ii_findings`: the facts quoted in the page's notes (how many cells equal the
  prototype's logged output, lie near chance, inside the legacy range, ...), computed so the notes
  cannot drift from the numbers;
* :func:`prefill_anchoring`: how close the final ratings stay to the pre-filled L2-based score;
* :func:`pooling_cost`: how much pooling target modalities lowers the SROCC.

Cell keys are ``(metric, model, dataset)``, as in :data:`~kcross_metric.evaluation.nirps.PAPER_TABLE_II`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .agreement import MetricAgreement, evaluate_metric, inconsistency
from .nirps import NIRPS_METRICS, PAPER_TABLE_II
from .tables import AgreementRow, ScoreTable

__all__ = [
    "GROUPS",
    "TARGET_GROUPS",
    "MODELS",
    "DATASETS",
    "MODEL_NAMES",
    "DATASET_NAMES",
    "PROTOTYPE_REGRESSION_UNIT",
    "PROTOTYPE_RANKING_LOG",
    "LISTING_ORDERS",
    "CellKey",
    "TableIICell",
    "TableIIFindings",
    "PrefillAnchoring",
    "PoolingCost",
    "legacy_over_orders",
    "rows_by_cell",
    "table_ii_cells",
    "table_ii_findings",
    "prefill_anchoring",
    "pooling_cost",
]

#: The groups of the paper's Table II: generator x dataset.
GROUPS: tuple[str, ...] = ("dataset", "model")
#: The finer groups of the per-target tables.
TARGET_GROUPS: tuple[str, ...] = ("dataset", "target", "model")
#: Generators and datasets in the order of the tables.
MODELS: tuple[str, ...] = ("cyclegan", "munit", "unit")
DATASETS: tuple[str, ...] = ("ixi", "brats2021")
MODEL_NAMES: dict[str, str] = {"cyclegan": "CycleGAN", "munit": "MUNIT", "unit": "UNIT"}
DATASET_NAMES: dict[str, str] = {"ixi": "IXI", "brats2021": "BraTS"}

#: ``(metric, model, dataset)``
CellKey = tuple[str, str, str]

#: The prototype's logged "regression" output for UNIT (the only generator it logged in that mode),
#: epochs 1-40, keyed by ``(dataset, metric)``: the check that our regression mode and the published
#: CSV match the prototype's run.
PROTOTYPE_REGRESSION_UNIT: dict[tuple[str, str], float] = {
    ("ixi", "mae"): 0.3301, ("ixi", "psnr"): 0.2169, ("ixi", "ssim"): 0.3614,
    ("brats2021", "mae"): 0.3544, ("brats2021", "psnr"): 0.2089, ("brats2021", "ssim"): 0.4965,
}

#: The prototype's logged rank-mode ("--uniform-mode ranking") output for MAE/PSNR/SSIM, epochs 1-40,
#: keyed by (metric, model, dataset): the authors' public repository M-3LAB/K-CROSS,
#: documents/kaid_result/log_kaid_ranking_40_epochs.txt (regression: log_kaid_regression_40_epochs.txt).
PROTOTYPE_RANKING_LOG: dict[CellKey, float] = {
    ("mae", "cyclegan", "ixi"): 0.3127, ("psnr", "cyclegan", "ixi"): 0.3387, ("ssim", "cyclegan", "ixi"): 0.3333,
    ("mae", "cyclegan", "brats2021"): 0.3335, ("psnr", "cyclegan", "brats2021"): 0.2060,
    ("ssim", "cyclegan", "brats2021"): 0.1927,
    ("mae", "munit", "ixi"): 0.1807, ("psnr", "munit", "ixi"): 0.1832, ("ssim", "munit", "ixi"): 0.1957,
    ("mae", "munit", "brats2021"): 0.2368, ("psnr", "munit", "brats2021"): 0.2515,
    ("ssim", "munit", "brats2021"): 0.2437,
    ("mae", "unit", "ixi"): 0.2462, ("psnr", "unit", "ixi"): 0.2387, ("ssim", "unit", "ixi"): 0.2523,
    ("mae", "unit", "brats2021"): 0.2462, ("psnr", "unit", "brats2021"): 0.2585,
    ("ssim", "unit", "brats2021"): 0.2645,
}

#: Listing orders for the legacy defect's order sensitivity: file order plus three natural sorts
#: (key columns, most significant first; ``None`` = the order of the table).
LISTING_ORDERS: dict[str, tuple[str, ...] | None] = {
    "file": None,
    "target, slice, epoch": ("target", "slice_id", "epoch"),
    "target, epoch, slice": ("target", "epoch", "slice_id"),
    "epoch, target, slice": ("epoch", "target", "slice_id"),
}

#: Two values closer than this are "equal to 4 decimals".
_SAME_4DP = 5e-5


def legacy_over_orders(sub: ScoreTable, metric: str, higher_is_better: bool) -> list[float]:
    """The ``legacy`` inconsistency of ``metric`` on ``sub`` with the rows listed in each order of
    :data:`LISTING_ORDERS` (``epoch`` sorted numerically), in that order."""
    out = []
    for keys in LISTING_ORDERS.values():
        if keys is None:
            s = sub
        else:
            cols = [sub.keys[k].astype(int) if k == "epoch" else sub.keys[k] for k in keys]
            s = sub.subset(np.lexsort(cols[::-1]))
        out.append(inconsistency(s.metrics[metric], s.ratings, higher_is_better=higher_is_better, mode="legacy"))
    return out


def rows_by_cell(rows: Sequence[AgreementRow]) -> dict[CellKey, AgreementRow]:
    """Agreement rows grouped by :data:`GROUPS`, keyed by ``(metric, model, dataset)``."""
    return {(r.metric, dict(r.group)["model"], dict(r.group)["dataset"]): r for r in rows}


@dataclass(frozen=True)
class TableIICell:
    """One cell of the paper's Table II beside our statistics of the same (generator, dataset, metric)."""

    metric: str
    model: str
    dataset: str
    paper: float  #: the paper's Table II value
    result: MetricAgreement  #: our statistics (rank, regression, file-order legacy, chance, ...)
    legacy_orders: tuple[float, ...]  #: legacy inconsistency per listing order of :data:`LISTING_ORDERS`

    @property
    def key(self) -> CellKey:
        return (self.metric, self.model, self.dataset)

    @property
    def legacy_min(self) -> float:
        return min(self.legacy_orders)

    @property
    def legacy_max(self) -> float:
        return max(self.legacy_orders)


def table_ii_cells(
    table: ScoreTable,
    rows: Sequence[AgreementRow],
    directions: Mapping[str, bool],
    metrics: Sequence[str] = NIRPS_METRICS,
) -> list[TableIICell]:
    """The cells of Table II, generators (:data:`MODELS`), then datasets (:data:`DATASETS`), then
    ``metrics`` in order; ``rows`` are the agreement rows of ``table`` grouped by :data:`GROUPS`."""
    by_key = rows_by_cell(rows)
    groups = dict(table.group_by(GROUPS))
    out = []
    for model in MODELS:
        for ds in DATASETS:
            for m in metrics:
                vals = legacy_over_orders(groups[(("dataset", ds), ("model", model))], m, directions[m])
                out.append(TableIICell(m, model, ds, PAPER_TABLE_II[(m, model, ds)], by_key[(m, model, ds)].result,
                                       tuple(vals)))
    return out


@dataclass(frozen=True)
class TableIIFindings:
    """The facts the notes of the Table II comparison quote (cell keys ``(metric, model, dataset)``)."""

    #: Table II cells equal to 4 decimals to the prototype's logged rank-mode output, and the others
    from_log: tuple[CellKey, ...]
    not_from_log: tuple[CellKey, ...]
    #: Table II cells within 0.05 of their group's chance inconsistency; the others with paper - chance
    near_chance: int
    far_from_chance: tuple[tuple[CellKey, float], ...]
    #: largest |file-order legacy - chance| over the rows
    legacy_max_dev: float
    #: lowest and highest legacy value over all cells and listing orders; the cell with the widest range
    legacy_low: float
    legacy_high: float
    widest: TableIICell
    #: Table II cells inside their legacy range (+- 5e-5)
    paper_inside_legacy: int
    #: rank-mode range over the rows; rows below chance, the others, rows whose 95 % CI is below chance
    rank_min: float
    rank_max: float
    below_chance: tuple[AgreementRow, ...]
    not_below_chance: tuple[AgreementRow, ...]
    rank_ci_below: int
    #: groups in which our rank-mode order of the metrics (or only the best metric) equals Table II's
    same_order: int
    same_best: int
    #: largest |our regression mode - the prototype's logged regression output| (UNIT, 6 cells)
    regression_max_dev: float
    #: our inconsistencies of MAE for UNIT on IXI and on BraTS (Table II repeats one value)
    unit_mae_ixi: dict[str, float]
    unit_mae_brats: dict[str, float]


def table_ii_findings(
    rows: Sequence[AgreementRow],
    cells: Sequence[TableIICell],
    metrics: Sequence[str] = NIRPS_METRICS,
) -> TableIIFindings:
    """Compute :class:`TableIIFindings` from the agreement rows and :func:`table_ii_cells`."""
    by_key = rows_by_cell(rows)
    chance = {k: r.result.chance for k, r in by_key.items()}
    paper_minus_chance = {k: v - chance[k] for k, v in PAPER_TABLE_II.items()}
    from_log = tuple(k for k in PAPER_TABLE_II if abs(PAPER_TABLE_II[k] - PROTOTYPE_RANKING_LOG[k]) < _SAME_4DP)
    below = tuple(r for r in rows if r.result.inconsistency["rank"] < r.result.chance)
    same_order = 0
    same_best = 0
    for model in MODELS:
        for ds in DATASETS:
            paper_order = sorted(metrics, key=lambda m: PAPER_TABLE_II[(m, model, ds)])
            ours_order = sorted(metrics, key=lambda m: by_key[(m, model, ds)].result.inconsistency["rank"])
            same_order += paper_order == ours_order
            same_best += paper_order[0] == ours_order[0]
    by_cell = {c.key: c for c in cells}
    return TableIIFindings(
        from_log=from_log,
        not_from_log=tuple(k for k in PAPER_TABLE_II if k not in from_log),
        near_chance=sum(abs(d) <= 0.05 for d in paper_minus_chance.values()),
        far_from_chance=tuple((k, d) for k, d in paper_minus_chance.items() if abs(d) > 0.05),
        legacy_max_dev=max(abs(r.result.inconsistency["legacy"] - r.result.chance) for r in rows),
        legacy_low=min(c.legacy_min for c in cells),
        legacy_high=max(c.legacy_max for c in cells),
        widest=max(cells, key=lambda c: c.legacy_max - c.legacy_min),
        paper_inside_legacy=sum(
            1 for k in PAPER_TABLE_II
            if by_cell[k].legacy_min - _SAME_4DP <= PAPER_TABLE_II[k] <= by_cell[k].legacy_max + _SAME_4DP
        ),
        rank_min=min(r.result.inconsistency["rank"] for r in rows),
        rank_max=max(r.result.inconsistency["rank"] for r in rows),
        below_chance=below,
        not_below_chance=tuple(r for r in rows if r not in below),
        rank_ci_below=sum(1 for r in rows if r.result.ci and r.result.ci["rank"].high < r.result.chance),
        same_order=same_order,
        same_best=same_best,
        regression_max_dev=max(
            abs(by_key[(m, "unit", ds)].result.inconsistency["regression"] - logged)
            for (ds, m), logged in PROTOTYPE_REGRESSION_UNIT.items()
        ),
        unit_mae_ixi=by_key[("mae", "unit", "ixi")].result.inconsistency,
        unit_mae_brats=by_key[("mae", "unit", "brats2021")].result.inconsistency,
    )


@dataclass(frozen=True)
class PrefillAnchoring:
    """How close the final ratings stay to the pre-filled L2-based score the readers adjusted."""

    n_slices: int
    srocc_with_ratings: float  #: SROCC of the pre-fill with the final ratings
    srocc_with_psnr: float  #: SROCC of PSNR with the pre-fill
    share_within_005: float  #: share of final ratings within 0.05 of the pre-fill


def prefill_anchoring(table: ScoreTable) -> PrefillAnchoring:
    """:class:`PrefillAnchoring` of a table with the ``prefill`` column attached
    (:func:`~kcross_metric.evaluation.nirps.attach_prefill`) and a ``psnr`` column."""
    prefill = table.metrics["prefill"]
    pre = evaluate_metric(prefill, table.ratings, higher_is_better=True, n_boot=0)
    psnr = evaluate_metric(table.metrics["psnr"], prefill, higher_is_better=True, n_boot=0)
    return PrefillAnchoring(
        n_slices=len(table),
        srocc_with_ratings=pre.srocc,
        srocc_with_psnr=psnr.srocc,
        share_within_005=float(np.mean(np.abs(prefill - table.ratings) < 0.05)),
    )


@dataclass(frozen=True)
class PoolingCost:
    """How pooling the target modalities of a (generator, dataset) group changes a metric's SROCC."""

    n_worse: int  #: cells whose pooled SROCC is below the SROCC of every single target
    n_cells: int
    worst: AgreementRow  #: the pooled row with the largest drop below its worst single target
    worst_per_target: tuple[float, ...]  #: that cell's SROCC per target


def pooling_cost(rows: Sequence[AgreementRow], by_target: Sequence[AgreementRow]) -> PoolingCost:
    """Compare the pooled ``rows`` (grouped by :data:`GROUPS`) with ``by_target`` (the same metrics
    grouped by :data:`TARGET_GROUPS`): a metric's scale can differ between modalities."""
    per_target = {(dict(r.group)["model"], dict(r.group)["dataset"], r.metric, dict(r.group)["target"]): r.result.srocc
                  for r in by_target}
    drops = []
    for r in rows:
        g = dict(r.group)
        vals = [v for (mo, ds, m, _), v in per_target.items() if (mo, ds, m) == (g["model"], g["dataset"], r.metric)]
        drops.append((min(vals) - r.result.srocc, r, vals))
    _, worst, vals = max(drops, key=lambda t: t[0])
    return PoolingCost(n_worse=sum(1 for d, _, _ in drops if d > 0), n_cells=len(rows), worst=worst,
                       worst_per_target=tuple(vals))
