"""Agreement between a metric and human ratings: inconsistency, SROCC, PLCC, KROCC, bootstrap CIs, 2AFC.

Every function takes the metric's values and the ratings as 1-D arrays of the same length ``N``
(one entry per rated item) plus the metric's direction (``higher_is_better``). Correlations are
computed on the *oriented* metric (negated when lower is better), so a positive correlation always
means "agrees with the raters", whatever the metric's direction.

Inconsistency (K-CROSS paper, Algorithm 4; see ``docs/evaluation.md``) has three modes:

``"rank"`` (the intended algorithm)
    Count how many items the raters put at each level; sort the items from worst to best by the
    metric (respecting its direction); give the worst ``count[level_0]`` items level 0, the next
    ``count[level_1]`` items level 1, and so on; return ``mean |assigned - rating|``. This equals
    giving the ``k``-th worst item the ``k``-th smallest rating, which also covers ratings that
    are not on a level grid (e.g. means of several readers). Items tied on the metric are handled
    by averaging: the result is the exact expectation over all orders of the tied items, so it is
    deterministic and does not depend on the order the items are listed in. Lower is better; 0
    means the metric orders the items exactly as the raters do.
``"regression"`` (the public prototype's second variant)
    Min-max normalize the metric over the set to ``[0, 1]``, flip it if lower is better, return
    ``mean |normalized - rating|``. Only meaningful when ratings are on a ``[0, 1]`` scale; it
    mixes calibration with ordering. Reproduces the prototype's logged "regression" numbers.
``"legacy"`` (the public prototype's defect, for comparison only)
    ``assigned = sort(ratings)[argsort(values)]``: the *argsort* of the metric (the item index
    holding the ``k``-th smallest value) is used where the *rank* of each item was needed, and the
    metric's direction is ignored. The assignment is a scrambled permutation of the levels that
    depends on the order the items are listed in: for an order unrelated to quality the result
    sits near chance level (:func:`chance_inconsistency`); for an order that correlates with
    quality (e.g. sorted by training epoch) it can land far from chance in either direction.
    Never use it to judge a metric.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..errors import ConfigError, InputError, NonFiniteError, ShapeError

__all__ = [
    "INCONSISTENCY_MODES",
    "CI",
    "PLCCResult",
    "MetricAgreement",
    "orient",
    "inconsistency",
    "assigned_levels",
    "chance_inconsistency",
    "srocc",
    "krocc",
    "plcc",
    "logistic4",
    "fit_logistic4",
    "bootstrap_ci",
    "two_afc_accuracy",
    "two_afc_per_pair",
    "evaluate_metric",
]

Mode = Literal["rank", "regression", "legacy"]
INCONSISTENCY_MODES: tuple[str, ...] = ("rank", "regression", "legacy")


# --------------------------------------------------------------------------------------------
# input checks


def _as_1d(x: object, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"{name} must be a 1-D sequence of numbers: {exc}") from exc
    if arr.ndim != 1:
        raise ShapeError(f"{name} must be 1-D (one value per item), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise NonFiniteError(f"{name} has {bad} NaN/Inf value(s); drop or fix those items first")
    return arr


def _pair(values: object, ratings: object, *, min_items: int = 2) -> tuple[np.ndarray, np.ndarray]:
    v = _as_1d(values, "values")
    r = _as_1d(ratings, "ratings")
    if v.shape != r.shape:
        raise ShapeError(f"values and ratings must have the same length, got {v.size} and {r.size}")
    if v.size < min_items:
        raise ShapeError(f"need at least {min_items} items, got {v.size}")
    return v, r


def orient(values: object, *, higher_is_better: bool) -> np.ndarray:
    """Return the metric values as float64 with "higher = better" (negated if lower is better)."""
    v = _as_1d(values, "values")
    return v if higher_is_better else -v


# --------------------------------------------------------------------------------------------
# inconsistency


def _tie_groups(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and size of each run of equal values in an ascending array."""
    n = sorted_values.size
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    counts = np.diff(np.r_[starts, n])
    return starts, counts


def _rank_inconsistency_terms(oriented: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-item expected |assigned level - rating| and mean assigned level, in input order.

    Items are sorted worst -> best by the oriented metric; the ascending sorted ratings are the
    levels handed out. A run of ``k`` tied items occupying positions ``s..s+k-1`` receives those
    ``k`` levels in every possible order with equal probability, so each tied item's expected
    error is ``mean_j |L_j - r_i|`` over the run's levels. Because the levels are globally sorted
    and the run is contiguous, that sum is computed with prefix sums and one binary search per
    item: O(N log N), no O(k^2) pair table.
    """
    n = oriented.size
    order = np.argsort(oriented, kind="stable")
    sv = oriented[order]
    sr = ratings[order]
    levels = np.sort(ratings)
    prefix = np.r_[0.0, np.cumsum(levels)]
    starts, counts = _tie_groups(sv)
    s = np.repeat(starts, counts)
    k = np.repeat(counts, counts).astype(np.float64)
    e = s + np.repeat(counts, counts)
    cut = np.clip(np.searchsorted(levels, sr, side="right"), s, e)
    n_le = cut - s
    sum_le = prefix[cut] - prefix[s]
    sum_all = prefix[e] - prefix[s]
    total = sr * n_le - sum_le + (sum_all - sum_le) - sr * (k - n_le)
    # guard the tiny negative values float cancellation can leave when all terms are equal
    err_sorted = np.maximum(total, 0.0) / k
    mean_level_sorted = sum_all / k
    err = np.empty(n)
    lvl = np.empty(n)
    err[order] = err_sorted
    lvl[order] = mean_level_sorted
    return err, lvl


def assigned_levels(values: object, ratings: object, *, higher_is_better: bool) -> np.ndarray:
    """Rank-mode level handed to each item (input order); tied items get the mean of their run's levels.

    Args:
        values: metric value per item, shape (N,).
        ratings: rating per item, shape (N,) (e.g. NIRPS levels 0.0..0.9).
        higher_is_better: the metric's direction.
    """
    v, r = _pair(values, ratings)
    _, lvl = _rank_inconsistency_terms(v if higher_is_better else -v, r)
    return lvl


def inconsistency(
    values: object,
    ratings: object,
    *,
    higher_is_better: bool,
    mode: Mode | str = "rank",
) -> float:
    """Inconsistency between a metric and ratings (K-CROSS Algorithm 4); lower is better.

    Args:
        values: metric value per item, shape (N,), N >= 2.
        ratings: rating per item, shape (N,), on the raters' scale (NIRPS: levels 0.0..0.9).
        higher_is_better: the metric's direction (ignored by ``mode="legacy"``, as in the prototype).
        mode: ``"rank"`` (intended algorithm), ``"regression"`` or ``"legacy"``; see the module
            docstring.

    Returns:
        Mean absolute difference between the level the metric implies and the rating, in rating
        units. Chance level is :func:`chance_inconsistency`.

    Raises:
        ConfigError: unknown mode. ShapeError / NonFiniteError: bad inputs.
        InputError (``"regression"`` only): the metric is constant over the set.
    """
    v, r = _pair(values, ratings)
    if mode == "rank":
        err, _ = _rank_inconsistency_terms(v if higher_is_better else -v, r)
        return float(err.mean())
    if mode == "regression":
        lo, hi = float(v.min()), float(v.max())
        if not hi > lo:
            raise InputError(
                "regression inconsistency needs a metric that is not constant over the set "
                f"(all {v.size} values equal {lo})"
            )
        norm = (v - lo) / (hi - lo)
        if not higher_is_better:
            norm = 1.0 - norm
        return float(np.abs(norm - r).mean())
    if mode == "legacy":
        order = np.argsort(v, kind="stable")
        assigned = np.sort(r)[order]  # the prototype's defect: indices used as ranks
        return float(np.abs(assigned - r).mean())
    raise ConfigError(f"mode must be one of {INCONSISTENCY_MODES}, got {mode!r}")


def chance_inconsistency(ratings: object) -> float:
    """Expected rank-mode inconsistency of a metric that orders the items at random.

    Under a uniformly random order every item receives every level with probability ``1/N``,
    so the expectation is ``mean_{i,j} |r_i - r_j|`` over all ordered pairs (including i = j).
    """
    r = np.sort(_as_1d(ratings, "ratings"))
    n = r.size
    if n == 0:
        raise ShapeError("ratings is empty")
    # sum_{i,j} |r_i - r_j| = 2 * sum_k r_(k) * (2k - n + 1) for ascending r (k from 0)
    k = np.arange(n, dtype=np.float64)
    return float(2.0 * np.sum(r * (2.0 * k - n + 1.0)) / (n * n))


# --------------------------------------------------------------------------------------------
# correlations


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r (``nan`` when either side is constant); plain numpy, no per-call overhead."""
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    if not den > 0.0:
        return math.nan
    return max(-1.0, min(1.0, float(a @ b) / den))


def _nan_if_constant(*arrays: np.ndarray) -> bool:
    return any(float(a.max()) == float(a.min()) for a in arrays)


def srocc(values: object, ratings: object, *, higher_is_better: bool = True) -> float:
    """Spearman rank-order correlation of the oriented metric with the ratings (``nan`` if constant)."""
    from scipy.stats import spearmanr

    v, r = _pair(values, ratings)
    v = v if higher_is_better else -v
    if _nan_if_constant(v, r):
        return math.nan
    return float(spearmanr(v, r).statistic)


def krocc(values: object, ratings: object, *, higher_is_better: bool = True) -> float:
    """Kendall rank-order correlation (tau-b, tie-corrected) of the oriented metric with the ratings."""
    from scipy.stats import kendalltau

    v, r = _pair(values, ratings)
    v = v if higher_is_better else -v
    if _nan_if_constant(v, r):
        return math.nan
    return float(kendalltau(v, r, variant="b").statistic)


def logistic4(x: np.ndarray, lower: float, amplitude: float, center: float, scale: float) -> np.ndarray:
    """Monotonic 4-parameter logistic ``lower + amplitude / (1 + exp(-(x - center) / scale))``.

    This is the VQEG mapping ``(b1 - b2) / (1 + exp(-(x - b3)/|b4|)) + b2`` with ``b2 = lower``,
    ``b1 = lower + amplitude``, ``b3 = center``, ``b4 = scale``; fits keep ``amplitude >= 0`` and
    ``scale > 0`` so the mapping never reverses the oriented metric.
    """
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        z = np.clip(-(np.asarray(x, dtype=np.float64) - center) / scale, -500.0, 500.0)
        return lower + amplitude / (1.0 + np.exp(z))


#: Smallest logistic scale in z-scored metric units: keeps the fit from collapsing to a step.
_MIN_SCALE = 1e-3


def _logistic_z(xs: np.ndarray, lower: float, log_amp: float, center: float, log_scale: float) -> np.ndarray:
    # amplitude = exp(.) > 0 and scale = _MIN_SCALE + exp(.) keep LM (MINPACK) unconstrained
    s = _MIN_SCALE + math.exp(min(log_scale, 700.0))
    with np.errstate(over="ignore", under="ignore"):
        z = np.clip(-(xs - center) / s, -500.0, 500.0)
        return lower + math.exp(min(log_amp, 700.0)) / (1.0 + np.exp(z))


def _logistic_z_jac(xs: np.ndarray, lower: float, log_amp: float, center: float, log_scale: float) -> np.ndarray:
    e = math.exp(min(log_scale, 700.0))
    s = _MIN_SCALE + e
    a = math.exp(min(log_amp, 700.0))
    with np.errstate(over="ignore", under="ignore"):
        sig = 1.0 / (1.0 + np.exp(np.clip(-(xs - center) / s, -500.0, 500.0)))
    d = sig * (1.0 - sig)
    return np.stack([np.ones_like(xs), a * sig, -a * d / s, -a * d * (xs - center) * e / (s * s)], axis=1)


_GRID_Q = np.linspace(0.02, 0.98, 17)
_GRID_LOG_SCALE = np.log(np.array([0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2]))


def _grid_start(xs: np.ndarray, y: np.ndarray) -> tuple[list[float], float] | None:
    """Best (lower, log_amp, center, log_scale) on a grid of centres x scales; linear parts solved exactly.

    For fixed centre and scale the model is linear in (lower, amplitude), so each grid point costs
    one regression; amplitude is clamped at 0 (a non-increasing fit is no fit). Starting LM from
    the grid's best point avoids the poor local optima a single fixed start can fall into.
    """
    centers = np.quantile(xs, _GRID_Q)
    scales = np.exp(_GRID_LOG_SCALE)
    sig = 1.0 / (1.0 + np.exp(np.clip(-(xs[None, None, :] - centers[:, None, None]) / scales[None, :, None],
                                      -500.0, 500.0)))
    sig_c = sig - sig.mean(axis=2, keepdims=True)
    yc = y - y.mean()
    var_sig = (sig_c * sig_c).sum(axis=2)
    cov = (sig_c * yc).sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        amp = np.where(var_sig > 0, cov / var_sig, 0.0)
    amp = np.maximum(amp, 0.0)
    sse = float((yc * yc).sum()) - amp * amp * var_sig
    i, j = np.unravel_index(int(np.argmin(sse)), sse.shape)
    if not amp[i, j] > 0.0:
        return None
    lower = float(y.mean() - amp[i, j] * sig[i, j].mean())
    log_scale = float(np.log(scales[j] - _MIN_SCALE))
    return [lower, float(np.log(amp[i, j])), float(centers[i]), log_scale], float(sse[i, j])


def fit_logistic4(
    x: np.ndarray, y: np.ndarray, p0: Sequence[float] | None = None
) -> tuple[float, float, float, float] | None:
    """Least-squares fit of :func:`logistic4` (amplitude > 0, scale > 0) to ``(x, y)``; ``None`` if none.

    ``x`` is the oriented metric. The fit runs on z-scored ``x`` (better conditioned; same curve
    family): a grid over centre and scale with the linear parameters solved exactly gives the
    start, then Levenberg-Marquardt (MINPACK, analytic Jacobian) refines it. With ``p0`` (e.g. the
    full-sample fit when bootstrapping) LM starts there and the grid is only the fallback.
    Returns ``(lower, amplitude, center, scale)`` for the original ``x``.
    """
    from scipy.optimize import leastsq

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mu = float(x.mean())
    sd = float(x.std())
    if not sd > 0.0 or float(y.max()) == float(y.min()):
        return None
    xs = (x - mu) / sd

    def sse(params: np.ndarray) -> float:
        resid = _logistic_z(xs, *params) - y
        value = float(resid @ resid)
        return value if math.isfinite(value) else math.inf

    def refine(start: np.ndarray | Sequence[float]) -> tuple[np.ndarray, float]:
        # leastsq keeps its last iterate when it hits maxfev (e.g. a near-linear relation whose
        # optimum drifts to an infinite scale), so a capped run still improves on the start
        x0 = np.asarray(start, dtype=np.float64)
        best = (x0, sse(x0))
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                params = leastsq(lambda p: _logistic_z(xs, *p) - y, x0,
                                 Dfun=lambda p: _logistic_z_jac(xs, *p), maxfev=200)[0]
            except (ValueError, FloatingPointError, TypeError):
                return best
        if np.all(np.isfinite(params)):
            value = sse(params)
            if value < best[1]:
                best = (params, value)
        return best

    found: tuple[np.ndarray, float] | None = None
    if p0 is not None and p0[1] > 0.0 and p0[3] > 0.0:
        found = refine([p0[0], math.log(p0[1]), (p0[2] - mu) / sd, math.log(max(p0[3] / sd - _MIN_SCALE, 1e-12))])
    if found is None or not math.isfinite(found[1]):
        grid = _grid_start(xs, y)
        if grid is None:
            return None
        found = refine(grid[0])
        if not math.isfinite(found[1]):
            return None
    lower, log_amp, center, log_scale = (float(v) for v in found[0])
    if log_amp < -700.0 or not math.isfinite(log_amp):
        return None
    return lower, math.exp(log_amp), center * sd + mu, (_MIN_SCALE + math.exp(min(log_scale, 700.0))) * sd


@dataclass(frozen=True)
class PLCCResult:
    """PLCC and how it was obtained: ``method`` is ``"logistic"`` or ``"pearson"`` (fallback)."""

    value: float
    method: str
    params: tuple[float, float, float, float] | None = None


def plcc(
    values: object,
    ratings: object,
    *,
    higher_is_better: bool = True,
    fit: bool = True,
    p0: Sequence[float] | None = None,
) -> PLCCResult:
    """Pearson correlation between the ratings and the logistic-mapped oriented metric.

    The usual IQA protocol: fit the monotonic 4-parameter logistic :func:`logistic4` from the
    oriented metric to the ratings, then take Pearson's r between the fitted predictions and the
    ratings. When the fit fails (no convergence, degenerate data, or a flat fit whose predictions
    are constant, which happens for metrics that anti-correlate with the ratings) the raw Pearson
    r of the oriented metric is returned instead and ``method`` says ``"pearson"``.
    """
    v, r = _pair(values, ratings, min_items=3)
    v = v if higher_is_better else -v
    if _nan_if_constant(v, r):
        return PLCCResult(math.nan, "pearson")
    if fit:
        params = fit_logistic4(v, r, p0)
        if params is not None:
            pred = logistic4(v, *params)
            if float(pred.max()) - float(pred.min()) > 1e-12 * max(1.0, abs(float(pred.max()))):
                value = _pearson(pred, r)
                if math.isfinite(value):
                    return PLCCResult(value, "logistic", params)
    return PLCCResult(_pearson(v, r), "pearson")


# --------------------------------------------------------------------------------------------
# bootstrap


@dataclass(frozen=True)
class CI:
    """Percentile bootstrap confidence interval; ``n_valid`` resamples gave a finite statistic."""

    low: float
    high: float
    level: float
    n_boot: int
    n_valid: int


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: object,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> CI:
    """Seeded percentile bootstrap CI of ``statistic(*arrays)``, resampling items with replacement.

    All arrays are resampled with the same item indices. Resamples whose statistic is not finite
    (e.g. a constant resample for a correlation) are dropped and counted out of ``n_valid``.
    The same ``seed`` and ``N`` always give the same resamples, so several statistics of one set
    are bootstrapped on identical resamples.
    """
    if n_boot < 1:
        raise ConfigError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    arrs = [np.asarray(a) for a in arrays]
    if not arrs:
        raise ConfigError("bootstrap_ci needs at least one array")
    n = arrs[0].shape[0]
    if any(a.shape[0] != n for a in arrs):
        raise ShapeError("all arrays must have the same number of items")
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    stats = np.array([statistic(*(a[i] for a in arrs)) for i in idx], dtype=np.float64)
    return _percentile_ci(stats, alpha, n_boot)


def _percentile_ci(stats: np.ndarray, alpha: float, n_boot: int) -> CI:
    ok = stats[np.isfinite(stats)]
    if ok.size == 0:
        return CI(math.nan, math.nan, 1.0 - alpha, n_boot, 0)
    lo, hi = np.percentile(ok, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return CI(float(lo), float(hi), 1.0 - alpha, n_boot, int(ok.size))


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (a * b).sum(axis=1) / den
    out[~(den > 0)] = np.nan
    return out


# --------------------------------------------------------------------------------------------
# 2AFC


def _better_to_prob(better: object, n: int) -> np.ndarray:
    if isinstance(better, np.ndarray):
        items = better.tolist()
    elif isinstance(better, Iterable):
        items = list(better)
    else:
        raise ShapeError(f"better must be a 1-D sequence with one entry per pair ({n}), got {type(better).__name__}")
    if len(items) != n:
        raise ShapeError(f"better must have one entry per pair ({n}), got {len(items)}")
    out = np.empty(n)
    for i, b in enumerate(items):
        if isinstance(b, str):
            key = b.strip().lower()
            if key not in ("a", "b"):
                raise ConfigError(f"better[{i}] must be 'a' or 'b', got {b!r}")
            out[i] = 1.0 if key == "a" else 0.0
        else:
            try:
                p = float(b)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"better[{i}] must be 'a', 'b' or a fraction in [0, 1], got {b!r}") from exc
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"better[{i}] as a fraction must be in [0, 1], got {p}")
            out[i] = p
    return out


def two_afc_per_pair(
    scores_a: object, scores_b: object, better: object, *, higher_is_better: bool
) -> np.ndarray:
    """Per-pair 2AFC credit in ``[0, 1]``.

    ``better`` holds ``"a"``/``"b"`` (which item the judges found better) or the fraction of judges
    preferring ``a``. A pair earns that fraction if the metric prefers ``a``, one minus it if the
    metric prefers ``b``, and half a point if the metric ties.
    """
    a = _as_1d(scores_a, "scores_a")
    b = _as_1d(scores_b, "scores_b")
    if a.shape != b.shape:
        raise ShapeError(f"scores_a and scores_b must have the same length, got {a.size} and {b.size}")
    if a.size == 0:
        raise ShapeError("no pairs")
    p = _better_to_prob(better, a.size)
    if not higher_is_better:
        a, b = -a, -b
    prefers_a = (a > b).astype(np.float64)
    prefers_b = (b > a).astype(np.float64)
    ties = 1.0 - prefers_a - prefers_b
    return p * prefers_a + (1.0 - p) * prefers_b + 0.5 * ties


def two_afc_accuracy(scores_a: object, scores_b: object, better: object, *, higher_is_better: bool) -> float:
    """2AFC accuracy: mean of :func:`two_afc_per_pair` (1 = always agrees with the judges, 0.5 = chance)."""
    return float(two_afc_per_pair(scores_a, scores_b, better, higher_is_better=higher_is_better).mean())


# --------------------------------------------------------------------------------------------
# one-call summary


@dataclass(frozen=True)
class MetricAgreement:
    """All agreement statistics of one metric on one set of rated items."""

    n: int
    higher_is_better: bool
    inconsistency: dict[str, float]
    chance: float
    srocc: float
    plcc: float
    plcc_method: str
    krocc: float
    ci: dict[str, CI] = field(default_factory=dict)  #: keys: "rank", "srocc", "plcc", "krocc"


def evaluate_metric(
    values: object,
    ratings: object,
    *,
    higher_is_better: bool,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    modes: Sequence[str] = INCONSISTENCY_MODES,
) -> MetricAgreement:
    """Inconsistency in every mode, SROCC, PLCC (logistic), KROCC and their bootstrap CIs.

    With ``n_boot=0`` no CIs are computed. All statistics are bootstrapped on the same resamples
    (one ``seed``), so their CIs are comparable. Bootstrapped PLCC refits the logistic on every
    resample (warm-started from the full-sample fit) and falls back to Pearson per resample.
    """
    from scipy.stats import kendalltau, rankdata

    v, r = _pair(values, ratings, min_items=3)
    for m in modes:
        if m not in INCONSISTENCY_MODES:
            raise ConfigError(f"mode must be one of {INCONSISTENCY_MODES}, got {m!r}")
    o = v if higher_is_better else -v
    inc = {m: inconsistency(v, r, higher_is_better=higher_is_better, mode=m) for m in modes}
    s = srocc(o, r)
    p = plcc(o, r)
    k = krocc(o, r)
    ci: dict[str, CI] = {}
    if n_boot:
        if n_boot < 0:
            raise ConfigError(f"n_boot must be >= 0, got {n_boot}")
        if not 0.0 < alpha < 1.0:
            raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
        idx = np.random.default_rng(seed).integers(0, v.size, size=(n_boot, v.size))
        ob, rb = o[idx], r[idx]
        ci["rank"] = _percentile_ci(
            np.array([_rank_inconsistency_terms(ob[i], rb[i])[0].mean() for i in range(n_boot)]), alpha, n_boot
        )
        ci["srocc"] = _percentile_ci(
            _rowwise_pearson(rankdata(ob, axis=1), rankdata(rb, axis=1)), alpha, n_boot
        )

        def _kt(i: int) -> float:
            if float(ob[i].max()) == float(ob[i].min()) or float(rb[i].max()) == float(rb[i].min()):
                return math.nan
            return float(kendalltau(ob[i], rb[i], variant="b").statistic)

        ci["krocc"] = _percentile_ci(np.array([_kt(i) for i in range(n_boot)]), alpha, n_boot)

        def _pl(i: int) -> float:
            try:
                return plcc(ob[i], rb[i], p0=p.params).value
            except ShapeError:
                return math.nan

        ci["plcc"] = _percentile_ci(np.array([_pl(i) for i in range(n_boot)]), alpha, n_boot)
    return MetricAgreement(
        n=int(v.size),
        higher_is_better=higher_is_better,
        inconsistency=inc,
        chance=chance_inconsistency(r),
        srocc=s,
        plcc=p.value,
        plcc_method=p.method,
        krocc=k,
        ci=ci,
    )
