"""kcross_metric.evaluation.nirps_tables (behind benchmarks/nirps_tables.py): listing orders of the
legacy defect, the cost of pooling targets, and the Table II facts on the published scores."""

from __future__ import annotations

import numpy as np
import pytest

from kcross_metric.evaluation.agreement import inconsistency
from kcross_metric.evaluation.nirps_tables import (
    GROUPS,
    LISTING_ORDERS,
    TARGET_GROUPS,
    legacy_over_orders,
    pooling_cost,
    table_ii_cells,
    table_ii_findings,
)
from kcross_metric.evaluation.tables import ScoreTable, agreement_table, resolve_directions


def _table(seed: int = 0) -> ScoreTable:
    # one generator on one dataset, two targets x 3 slices x 12 epochs; the metric orders the ratings
    # within each target, but its scale differs between the targets (t1 values are 10x larger)
    rng = np.random.default_rng(seed)
    keys: dict[str, list[str]] = {k: [] for k in ("dataset", "target", "model", "epoch", "slice_id")}
    ratings, values = [], []
    for target, scale in (("t1", 10.0), ("t2", 1.0)):
        for s in range(3):
            for epoch in range(1, 13):
                r = rng.integers(0, 10) / 10
                for k, v in zip(keys, ("ixi", target, "unit", str(epoch), f"s{s}")):
                    keys[k].append(v)
                ratings.append(r)
                values.append(scale * (r + 0.01 * rng.random()))
    return ScoreTable(keys={k: np.array(v) for k, v in keys.items()}, ratings=np.array(ratings),
                      metrics={"ssim": np.array(values)})


def test_legacy_over_orders_lists_the_rows_in_each_order():
    table = _table()
    got = legacy_over_orders(table, "ssim", True)
    assert len(got) == len(LISTING_ORDERS)
    assert got[0] == inconsistency(table.metrics["ssim"], table.ratings, higher_is_better=True, mode="legacy")
    # "epoch, target, slice", with the epoch sorted as a number (10 after 9)
    order = np.lexsort((table.keys["slice_id"], table.keys["target"], table.keys["epoch"].astype(int)))
    assert table.keys["epoch"][order][:6].tolist() == ["1"] * 6
    sub = table.subset(order)
    assert got[3] == inconsistency(sub.metrics["ssim"], sub.ratings, higher_is_better=True, mode="legacy")


def test_pooling_targets_of_different_scales_costs_agreement():
    table = _table()
    directions = resolve_directions(["ssim"])
    rows = agreement_table(table, ["ssim"], directions, group_by=GROUPS, n_boot=0)
    by_target = agreement_table(table, ["ssim"], directions, group_by=TARGET_GROUPS, n_boot=0)
    cost = pooling_cost(rows, by_target)
    assert (cost.n_worse, cost.n_cells) == (1, 1)
    assert cost.worst is rows[0]
    assert len(cost.worst_per_target) == 2 and min(cost.worst_per_target) > rows[0].result.srocc


@pytest.mark.shared_data
def test_table_ii_facts_on_the_published_scores():
    from conftest import need_shared
    from kcross_metric.evaluation.nirps import NIRPS_METRICS, load_nirps_scores

    need_shared("data", "nirps", "nirps_scores.csv")
    table = load_nirps_scores(None, max_epoch=40)
    directions = resolve_directions(NIRPS_METRICS)
    rows = agreement_table(table, NIRPS_METRICS, directions, group_by=GROUPS, n_boot=0)
    cells = table_ii_cells(table, rows, directions)
    facts = table_ii_findings(rows, cells)
    assert len(cells) == 18 and cells[0].key == ("mae", "cyclegan", "ixi")
    assert all(c.legacy_orders[0] == c.result.inconsistency["legacy"] for c in cells)
    # the page's findings (docs/nirps-tables.md), none of which depends on the bootstrap
    assert len(facts.from_log) == 17 and facts.not_from_log == (("ssim", "cyclegan", "brats2021"),)
    assert facts.near_chance == 16 and len(facts.far_from_chance) == 2
    assert facts.paper_inside_legacy == 7
    assert len(facts.below_chance) == 17 and facts.rank_ci_below == 0  # no CIs with n_boot=0
    assert (facts.same_order, facts.same_best) == (3, 4)
    assert facts.regression_max_dev < 5e-4
