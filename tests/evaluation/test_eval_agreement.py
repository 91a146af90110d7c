"""Agreement statistics against hand-computed values (worked examples in the comments)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr

from kcross_metric.errors import ConfigError, InputError, NonFiniteError, ShapeError
from kcross_metric.evaluation.agreement import (
    assigned_levels,
    bootstrap_ci,
    chance_inconsistency,
    evaluate_metric,
    fit_logistic4,
    inconsistency,
    krocc,
    logistic4,
    plcc,
    srocc,
    two_afc_accuracy,
    two_afc_per_pair,
)

# Six items. Ratings r, metric values v (higher = better by default).
#   sorted levels L = [0, 0, 0.2, 0.5, 0.5, 0.9]
#   ascending ranks of v = [1, 5, 0, 4, 2, 3]   argsort(v) = [2, 0, 4, 5, 3, 1]
R6 = [0.2, 0.9, 0.0, 0.5, 0.0, 0.5]
V6 = [2.0, 6.0, 1.0, 5.0, 3.0, 4.0]


class TestInconsistencyByHand:
    def test_rank_mode_six_items(self) -> None:
        # assigned = L[rank] = [0, 0.9, 0, 0.5, 0.2, 0.5]; |assigned - r| = [.2, 0, 0, 0, .2, 0]
        assert inconsistency(V6, R6, higher_is_better=True, mode="rank") == pytest.approx(0.4 / 6, abs=1e-12)
        np.testing.assert_allclose(
            assigned_levels(V6, R6, higher_is_better=True), [0.0, 0.9, 0.0, 0.5, 0.2, 0.5], atol=1e-12
        )

    def test_rank_mode_respects_direction(self) -> None:
        # lower is better: ranks become 5 - rank = [4, 0, 5, 1, 3, 2]
        # assigned = [.5, 0, .9, 0, .5, .2]; |assigned - r| = [.3, .9, .9, .5, .5, .3] -> 3.4 / 6
        assert inconsistency(V6, R6, higher_is_better=False, mode="rank") == pytest.approx(3.4 / 6, abs=1e-12)

    def test_regression_mode(self) -> None:
        # min-max: (v - 1) / 5 = [.2, 1, 0, .8, .4, .6]; |.| vs r = [0, .1, 0, .3, .4, .1] -> 0.9 / 6
        assert inconsistency(V6, R6, higher_is_better=True, mode="regression") == pytest.approx(0.15, abs=1e-12)
        # flipped: [.8, 0, 1, .2, .6, .4]; |.| vs r = [.6, .9, 1, .3, .6, .1] -> 3.5 / 6
        assert inconsistency(V6, R6, higher_is_better=False, mode="regression") == pytest.approx(3.5 / 6, abs=1e-12)

    def test_legacy_mode_reproduces_the_argsort_defect(self) -> None:
        # assigned = L[argsort(v)] = [L2, L0, L4, L5, L3, L1] = [.2, 0, .5, .9, .5, 0]
        # |assigned - r| = [0, .9, .5, .4, .5, .5] -> 2.8 / 6; direction is ignored
        assert inconsistency(V6, R6, higher_is_better=True, mode="legacy") == pytest.approx(2.8 / 6, abs=1e-12)
        assert inconsistency(V6, R6, higher_is_better=False, mode="legacy") == pytest.approx(2.8 / 6, abs=1e-12)

    def test_legacy_depends_on_item_order_rank_does_not(self) -> None:
        perm = [3, 0, 5, 1, 4, 2]
        v = np.asarray(V6)[perm]
        r = np.asarray(R6)[perm]
        assert inconsistency(v, r, higher_is_better=True) == pytest.approx(0.4 / 6, abs=1e-12)
        assert inconsistency(v, r, higher_is_better=True, mode="legacy") != pytest.approx(2.8 / 6, abs=1e-9)

    def test_perfect_and_inverted_rankings(self) -> None:
        r = np.array([0.0, 0.1, 0.1, 0.4, 0.7, 0.9])
        v = np.array([10.0, 20.0, 21.0, 30.0, 40.0, 50.0])
        assert inconsistency(v, r, higher_is_better=True) == 0.0
        assert inconsistency(-v, r, higher_is_better=False) == 0.0
        # inverted: assigned = [.9, .7, .4, .1, .1, 0] vs r -> [.9, .6, .3, .3, .6, .9] -> 3.6 / 6
        assert inconsistency(v, r, higher_is_better=False) == pytest.approx(0.6, abs=1e-12)

    def test_ties_are_averaged(self) -> None:
        # items 0 and 1 tie and share levels {0, .5}: expected errors .25 and .25; item 2 gets .5 exactly
        v, r = [1.0, 1.0, 2.0], [0.0, 0.5, 0.5]
        assert inconsistency(v, r, higher_is_better=True) == pytest.approx(0.5 / 3, abs=1e-12)
        np.testing.assert_allclose(assigned_levels(v, r, higher_is_better=True), [0.25, 0.25, 0.5])
        # listing order does not matter
        assert inconsistency([2.0, 1.0, 1.0], [0.5, 0.5, 0.0], higher_is_better=True) == pytest.approx(0.5 / 3)

    def test_ties_equal_expectation_over_tie_orders(self) -> None:
        rng = np.random.default_rng(0)
        for _ in range(60):
            n = int(rng.integers(2, 7))
            v = rng.integers(0, 3, n).astype(float)
            r = rng.integers(0, 10, n) / 10.0
            levels = np.sort(r)
            results = []
            for tiebreak in itertools.permutations(range(n)):
                order = sorted(range(n), key=lambda i: (v[i], tiebreak[i]))
                assigned = np.empty(n)
                assigned[order] = levels
                results.append(np.abs(assigned - r).mean())
            assert inconsistency(v, r, higher_is_better=True) == pytest.approx(np.mean(results), abs=1e-12)

    def test_constant_metric_scores_chance(self) -> None:
        r = np.array(R6)
        assert inconsistency(np.zeros(6), r, higher_is_better=True) == pytest.approx(chance_inconsistency(r))

    def test_chance_by_hand(self) -> None:
        # sum_{i<j} |r_i - r_j| over sorted [0, 0, .2, .5, .5, .9] = 2.1 + 2.1 + 1.3 + .4 + .4 = 6.3
        # ordered pairs: 12.6 / 36 = 0.35
        assert chance_inconsistency(R6) == pytest.approx(0.35, abs=1e-12)

    def test_errors(self) -> None:
        with pytest.raises(ConfigError):
            inconsistency(V6, R6, higher_is_better=True, mode="bogus")
        with pytest.raises(ShapeError):
            inconsistency([1.0, 2.0], [0.1], higher_is_better=True)
        with pytest.raises(ShapeError):
            inconsistency([1.0], [0.1], higher_is_better=True)
        with pytest.raises(ShapeError):
            inconsistency([[1.0, 2.0]], [[0.1, 0.2]], higher_is_better=True)
        with pytest.raises(NonFiniteError):
            inconsistency([1.0, float("nan")], [0.1, 0.2], higher_is_better=True)
        with pytest.raises(InputError):
            inconsistency([3.0, 3.0, 3.0], [0.1, 0.2, 0.3], higher_is_better=True, mode="regression")


class TestCorrelations:
    def test_srocc_by_hand(self) -> None:
        # rank differences [0, 1, -1, 0]: 1 - 6 * 2 / (4 * 15) = 0.8
        assert srocc([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
        assert srocc([1, 2, 3, 4], [1, 3, 2, 4], higher_is_better=False) == pytest.approx(-0.8)
        assert srocc([4, 3, 2, 1], [1, 2, 3, 4], higher_is_better=False) == pytest.approx(1.0)

    def test_krocc_tau_b_by_hand(self) -> None:
        # 5 concordant, 1 discordant pair: (5 - 1) / 6
        assert krocc([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
        # one tie in x: tau_b = 5 / sqrt((6 - 1) * 6)
        assert krocc([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(30))
        assert krocc([1, 2, 2, 3], [1, 2, 3, 4], higher_is_better=False) == pytest.approx(-5 / math.sqrt(30))

    def test_constant_input_gives_nan(self) -> None:
        assert math.isnan(srocc([1, 1, 1], [0.1, 0.2, 0.3]))
        assert math.isnan(krocc([1, 2, 3], [0.5, 0.5, 0.5]))
        assert math.isnan(plcc([1, 1, 1], [0.1, 0.2, 0.3]).value)

    def test_plcc_logistic_recovers_a_logistic_relation(self) -> None:
        x = np.linspace(10.0, 40.0, 60)
        y = logistic4(x, 0.05, 0.8, 25.0, 3.0)
        res = plcc(x, y)
        assert res.method == "logistic"
        assert res.value == pytest.approx(1.0, abs=1e-6)
        assert res.params == pytest.approx((0.05, 0.8, 25.0, 3.0), rel=1e-3)
        raw = np.corrcoef(x, y)[0, 1]
        assert raw < 0.99  # the mapping matters
        # lower-is-better metric: the same relation seen through -x
        assert plcc(-x, y, higher_is_better=False).value == pytest.approx(1.0, abs=1e-6)

    def test_plcc_falls_back_to_pearson_for_an_anticorrelated_metric(self) -> None:
        # a monotonic increasing logistic cannot fit y = -x: no fit, raw Pearson r = -1
        x = np.arange(10.0)
        res = plcc(x, -x)
        assert res.method == "pearson"
        assert res.value == pytest.approx(-1.0)

    def test_fit_logistic4_none_on_degenerate_data(self) -> None:
        assert fit_logistic4(np.ones(5), np.arange(5.0)) is None
        assert fit_logistic4(np.arange(5.0), np.ones(5)) is None


class TestBootstrap:
    def test_matches_manual_percentile_bootstrap(self) -> None:
        x = np.array([0.1, 0.4, 0.35, 0.8, 0.9, 0.2, 0.55])
        ci = bootstrap_ci(np.mean, x, n_boot=200, alpha=0.1, seed=7)
        idx = np.random.default_rng(7).integers(0, x.size, size=(200, x.size))
        means = x[idx].mean(axis=1)
        assert (ci.low, ci.high) == pytest.approx(tuple(np.percentile(means, [5.0, 95.0])))
        assert ci.level == pytest.approx(0.9) and ci.n_valid == 200

    def test_seeded_and_brackets_the_statistic(self) -> None:
        rng = np.random.default_rng(1)
        v = rng.normal(size=200)
        r = v + rng.normal(scale=1.0, size=200)
        a = evaluate_metric(v, r, higher_is_better=True, n_boot=40, seed=3)
        b = evaluate_metric(v, r, higher_is_better=True, n_boot=40, seed=3)
        assert a == b
        for key, value in (("srocc", a.srocc), ("plcc", a.plcc), ("krocc", a.krocc), ("rank", a.inconsistency["rank"])):
            assert a.ci[key].low <= value <= a.ci[key].high, key
        assert a.srocc == pytest.approx(spearmanr(v, r).statistic)
        assert a.krocc == pytest.approx(kendalltau(v, r).statistic)

    def test_constant_resamples_are_dropped(self) -> None:
        ci = bootstrap_ci(lambda a, b: srocc(a, b), np.array([1.0, 2.0]), np.array([0.0, 1.0]), n_boot=50, seed=0)
        assert 0 < ci.n_valid < 50  # resamples picking one item twice are constant -> nan -> dropped
        assert ci.low == pytest.approx(1.0) and ci.high == pytest.approx(1.0)

    def test_bad_arguments(self) -> None:
        with pytest.raises(ConfigError):
            bootstrap_ci(np.mean, np.arange(3.0), n_boot=0)
        with pytest.raises(ConfigError):
            bootstrap_ci(np.mean, np.arange(3.0), alpha=1.5)


class TestTwoAFC:
    def test_by_hand(self) -> None:
        a = [1.0, 2.0, 3.0, 4.0]
        b = [2.0, 2.0, 1.0, 0.0]
        better = ["a", "a", "b", "b"]
        # higher is better: metric prefers b, tie, a, a -> credits 0, .5, 0, 0
        np.testing.assert_allclose(two_afc_per_pair(a, b, better, higher_is_better=True), [0, 0.5, 0, 0])
        assert two_afc_accuracy(a, b, better, higher_is_better=True) == pytest.approx(0.125)
        # lower is better (distances): prefers a, tie, b, b -> 1, .5, 1, 1
        assert two_afc_accuracy(a, b, better, higher_is_better=False) == pytest.approx(0.875)

    def test_judge_fractions(self) -> None:
        # 75% of judges preferred a; the metric prefers a -> .75, prefers b -> .25
        assert two_afc_accuracy([1.0, 0.0], [0.0, 1.0], [0.75, 0.75], higher_is_better=True) == pytest.approx(0.5)
        assert two_afc_accuracy([1.0], [0.0], ["A"], higher_is_better=True) == 1.0

    def test_errors(self) -> None:
        with pytest.raises(ConfigError):
            two_afc_accuracy([1.0], [0.0], ["c"], higher_is_better=True)
        with pytest.raises(ConfigError):
            two_afc_accuracy([1.0], [0.0], [1.5], higher_is_better=True)
        with pytest.raises(ShapeError):
            two_afc_accuracy([1.0, 2.0], [0.0], ["a"], higher_is_better=True)
