"""Reader-study helpers against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kcross_metric.errors import ConfigError, NonFiniteError, ShapeError
from kcross_metric.evaluation.readers import (
    correlation_with_reader_mean,
    inter_reader_variability,
    leave_one_out_correlations,
    trimmed_reader_mean,
)

# three readers x four items
READERS = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 4.0, 3.0], [2.0, 1.0, 3.0, 4.0]])


def test_trimmed_mean_drops_highest_and_lowest() -> None:
    scores = np.array([[1, 5, 0], [2, 4, 1], [3, 3, 9], [10, 2, 1]], dtype=float)
    # item 0: [1, 2, 3, 10] -> mean(2, 3); item 1: [5, 4, 3, 2] -> mean(4, 3); item 2: [0, 1, 9, 1] -> mean(1, 1)
    np.testing.assert_allclose(trimmed_reader_mean(scores, trim=1), [2.5, 3.5, 1.0])
    np.testing.assert_allclose(trimmed_reader_mean(scores, trim=0), scores.mean(axis=0))


def test_trimmed_mean_needs_enough_readers() -> None:
    with pytest.raises(ShapeError):
        trimmed_reader_mean(np.ones((2, 5)), trim=1)
    with pytest.raises(ConfigError):
        trimmed_reader_mean(np.ones((3, 5)), trim=-1)


def test_leave_one_out_by_hand() -> None:
    # reader 0 [1,2,3,4] vs mean of others [1.5,1.5,3.5,3.5]: 4 / sqrt(5 * 4)
    # reader 1 [1,2,4,3] vs [1.5,1.5,3,4]: centred ranks [-1.5,-.5,1.5,.5] . [-1,-1,.5,1.5] = 3.5,
    # squared norms 5 and 4.5; reader 2 [2,1,3,4] vs [1,2,3.5,3.5] gives the same numbers
    expected = [4 / math.sqrt(20), 3.5 / math.sqrt(22.5), 3.5 / math.sqrt(22.5)]
    np.testing.assert_allclose(leave_one_out_correlations(READERS), expected, atol=1e-12)
    assert inter_reader_variability(READERS) == pytest.approx(np.mean(expected), abs=1e-12)


def test_identical_readers_agree_perfectly() -> None:
    same = np.tile(np.array([0.1, 0.5, 0.3, 0.9, 0.7]), (4, 1))
    assert inter_reader_variability(same) == pytest.approx(1.0)
    assert inter_reader_variability(same, method="krocc") == pytest.approx(1.0)


def test_correlation_with_reader_mean() -> None:
    # mean of readers: [4/3, 5/3, 10/3, 11/3] -> perfectly ordered like [1, 2, 3, 4]
    assert correlation_with_reader_mean([1, 2, 3, 4], READERS, higher_is_better=True) == pytest.approx(1.0)
    # a distance (lower is better) ordered the other way also agrees perfectly
    assert correlation_with_reader_mean([4, 3, 2, 1], READERS, higher_is_better=False) == pytest.approx(1.0)
    assert correlation_with_reader_mean([4, 3, 2, 1], READERS, higher_is_better=True) == pytest.approx(-1.0)
    assert correlation_with_reader_mean([4, 3, 2, 1], READERS, higher_is_better=True, absolute=True) == pytest.approx(1.0)
    assert correlation_with_reader_mean([1, 2, 4, 3], READERS, higher_is_better=True, method="krocc") == pytest.approx(4 / 6)


def test_bad_inputs() -> None:
    with pytest.raises(ShapeError):
        inter_reader_variability(np.ones(5))
    with pytest.raises(ShapeError):
        inter_reader_variability(np.ones((1, 5)))
    with pytest.raises(NonFiniteError):
        inter_reader_variability(np.array([[1.0, 2.0, np.nan], [1.0, 2.0, 3.0]]))
    with pytest.raises(ConfigError):
        inter_reader_variability(READERS, method="cosine")
