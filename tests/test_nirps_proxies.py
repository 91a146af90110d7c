"""kcross_metric.evaluation.nirps_proxies (behind benchmarks/nirps_proxies.py): epoch pairs and
label agreement on a hand-made table."""

from __future__ import annotations

import numpy as np
import pytest

from kcross_metric.evaluation import nirps_proxies as proxies
from kcross_metric.evaluation.tables import ScoreTable


def _table() -> ScoreTable:
    # one slice, three epochs of one generator; ratings 0.2, 0.6, 0.4 (epoch 2 is best)
    # PSNR 20, 21, 20.2 dB: epoch pairs (1,2) and (2,3) are >= 0.458 dB apart, (1,3) is not
    keys = {"dataset": np.array(["d"] * 3), "target": np.array(["t2"] * 3), "model": np.array(["unit"] * 3),
            "epoch": np.array(["1", "2", "3"]), "slice_id": np.array(["s"] * 3)}
    return ScoreTable(keys=keys, ratings=np.array([0.2, 0.6, 0.4]),
                      metrics={"psnr": np.array([20.0, 21.0, 20.2]), "mae": np.array([0.10, 0.05, 0.095]),
                               "ssim": np.array([0.5, 0.4, 0.6])})


def test_pairs_and_agreements_have_the_hand_computed_values():
    i, j, _ = proxies.epoch_pairs(_table())
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 1), (0, 2), (1, 2)]
    got = {(name, group): (n, acc) for name, group, n, acc, _, _ in proxies.proxy_rows(_table(), n_boot=20)}
    # later epoch: (1<2) right, (1<3) right, (2<3) wrong
    assert got[("later epoch", "all")] == (3, pytest.approx(2 / 3))
    # MSE margin decides (1,2) and (2,3), both right (epoch 2 has the highest PSNR)
    assert got[("MSE >= 10 % lower (rule synthesized_epochs)", "unit")] == (2, 1.0)
    # MAE margin: 0.10 vs 0.095 is inside 10 %, so again two decided pairs, both right
    assert got[("MAE >= 10 % lower", "all")] == (2, 1.0)
    # SSIM ranks 3 > 1 > 2: (1,2) wrong, (1,3) right, (2,3) wrong
    assert got[("SSIM higher", "all")] == (3, pytest.approx(1 / 3))


def test_tied_ratings_give_no_pair():
    table = _table()
    table = ScoreTable(keys=table.keys, ratings=np.array([0.4, 0.4, 0.4]), metrics=table.metrics)
    i, _, _ = proxies.epoch_pairs(table)
    assert i.size == 0


def test_the_bootstrap_resamples_whole_slices():
    # two slices: one all right (4 pairs), one all wrong (1 pair); resampling slices gives 0, 0.8 or 1
    correct = np.array([1, 1, 1, 1, 0], dtype=bool)
    slices = np.array([0, 0, 0, 0, 1])
    low, high = proxies.bootstrap_over_slices(correct, slices, n_boot=200, seed=0)
    assert low == 0.0 and high == 1.0


@pytest.mark.shared_data
def test_on_the_published_scores():
    from conftest import need_shared
    from kcross_metric.evaluation.nirps import load_nirps_scores

    need_shared("data", "nirps", "nirps_scores.csv")
    rows = proxies.proxy_rows(load_nirps_scores(None, max_epoch=40), n_boot=50)
    got = {(name, group): (n, acc) for name, group, n, acc, _, _ in rows}
    n_all, later = got[("later epoch", "all")]
    assert n_all == sum(got[("later epoch", g)][0] for g in ("cyclegan", "munit", "unit"))
    n_mse, mse = got[("MSE >= 10 % lower (rule synthesized_epochs)", "all")]
    assert 0 < n_mse < n_all  # the margin leaves pairs undecided
    assert mse > later  # the page's finding: the squared-error rule beats the epoch label
