"""Reader-study helpers: pooling several readers' scores and measuring how much readers agree.

Reader scores are a 2-D array of shape ``(R, N)``: ``R`` readers (rows) by ``N`` items (columns),
higher = better. Two protocols from the literature are covered:

* NIRPS (K-CROSS paper, Sec. IV-3): ten radiologists per item, the highest and the lowest score
  dropped, the other eight averaged -> :func:`trimmed_reader_mean` with ``trim=1``.
* Deep-feature-distance reader study: metric quality = ``|SROCC|`` between the metric and the
  mean of the readers (:func:`correlation_with_reader_mean`); the ceiling a metric can hope for
  is the inter-reader variability, the mean over readers of SROCC(reader, mean of the *other*
  readers) (:func:`inter_reader_variability`).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, NonFiniteError, ShapeError
from .agreement import krocc, plcc, srocc

__all__ = [
    "trimmed_reader_mean",
    "correlation_with_reader_mean",
    "leave_one_out_correlations",
    "inter_reader_variability",
]

_METHODS = ("srocc", "plcc", "krocc")


def _readers(scores: object, *, min_readers: int) -> np.ndarray:
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"reader scores must be a numeric (readers, items) array: {exc}") from exc
    if arr.ndim != 2:
        raise ShapeError(f"reader scores must be 2-D (readers, items), got shape {arr.shape}")
    if arr.shape[0] < min_readers:
        raise ShapeError(f"need at least {min_readers} readers (rows), got {arr.shape[0]}")
    if arr.shape[1] < 3:
        raise ShapeError(f"need at least 3 items (columns), got {arr.shape[1]}")
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError("reader scores contain NaN/Inf; every reader must score every item")
    return arr


def _corr(values: np.ndarray, target: np.ndarray, method: str, higher_is_better: bool) -> float:
    if method == "srocc":
        return srocc(values, target, higher_is_better=higher_is_better)
    if method == "krocc":
        return krocc(values, target, higher_is_better=higher_is_better)
    if method == "plcc":
        return plcc(values, target, higher_is_better=higher_is_better).value
    raise ConfigError(f"method must be one of {_METHODS}, got {method!r}")


def trimmed_reader_mean(scores: object, trim: int = 1) -> np.ndarray:
    """Per-item mean after dropping the ``trim`` highest and ``trim`` lowest reader scores.

    Args:
        scores: ``(R, N)`` reader scores with ``R > 2 * trim``.
        trim: how many scores to drop at each end (NIRPS: 1 of 10).

    Returns:
        ``(N,)`` pooled scores.
    """
    if isinstance(trim, bool) or not isinstance(trim, (int, np.integer)) or trim < 0:
        raise ConfigError(f"trim must be a non-negative integer, got {trim!r}")
    arr = _readers(scores, min_readers=2 * int(trim) + 1)
    s = np.sort(arr, axis=0)
    return s[trim : arr.shape[0] - trim].mean(axis=0)


def correlation_with_reader_mean(
    values: object,
    scores: object,
    *,
    higher_is_better: bool,
    method: str = "srocc",
    absolute: bool = False,
) -> float:
    """Correlation between a metric and the mean of the readers.

    Args:
        values: metric value per item, shape (N,).
        scores: ``(R, N)`` reader scores (``R >= 1``).
        higher_is_better: the metric's direction (the correlation is of the oriented metric).
        method: ``"srocc"``, ``"plcc"`` (logistic-fitted) or ``"krocc"``.
        absolute: return ``|corr|`` (the DFD paper reports |SROCC|).
    """
    arr = _readers(scores, min_readers=1)
    r = _corr(np.asarray(values, dtype=np.float64), arr.mean(axis=0), method, higher_is_better)
    return abs(r) if absolute else r


def leave_one_out_correlations(scores: object, *, method: str = "srocc") -> np.ndarray:
    """``(R,)``: correlation of each reader with the mean of the other readers."""
    arr = _readers(scores, min_readers=2)
    total = arr.sum(axis=0)
    n_other = arr.shape[0] - 1
    return np.array(
        [_corr(arr[i], (total - arr[i]) / n_other, method, True) for i in range(arr.shape[0])]
    )


def inter_reader_variability(scores: object, *, method: str = "srocc") -> float:
    """Mean over readers of corr(reader, mean of the other readers); a ceiling for metric agreement.

    Readers whose scores are constant give ``nan`` and are left out of the mean (``nan`` if all are).
    """
    loo = leave_one_out_correlations(scores, method=method)
    ok = loo[np.isfinite(loo)]
    return float(ok.mean()) if ok.size else float("nan")
