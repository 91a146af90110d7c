"""Constructed 2.5D volume pairs (mild vs strong copies of a real volume) and their scoring.

The library side of ``benchmarks/volume25d_table.py`` (its page, written with
:mod:`kcross_metric.evaluation.volume25d_table`, is ``docs/results-25d.md``):

* :func:`load_validation_volumes`: the BraTS 2023 validation case of
  :data:`kcross_metric.train.splits.VALIDATION_CASES`, loaded with
  :func:`kcross_metric.train.data.load_case`, mean-pooled ``factor`` x per axis and cropped to the
  brain's bounding box plus ``margin`` voxels;
* :data:`FAMILIES`: the distortion families with their mild and strong severity ranges
  (slice-wise k-space ``undersample`` and ``motion``; 3-D ``blur`` (:func:`blur3d`), ``noise``,
  ``bias`` (:func:`bias3d`) and ``contrast``);
* :func:`build_pairs`: for each family, fake contrast and replicate, two distorted copies of the
  real volume, one with a severity drawn from the mild range and one from the strong range, each
  with its own random seed; the mild copy is better by construction and its side (a/b) is random;
  everything follows ``seed``;
* :func:`evaluate_pairs`: every pair scored with every metric on each plane (every ``stride``-th
  slice, :func:`plane_scores` through :func:`kcross_metric.evaluation.volume25d.score_25d`) and in
  2.5D (the mean of the three plane values), through the per-pair score cache of
  :mod:`.score_cache` (``scores_<metric>.csv``, keyed by pair id, :func:`volume_pair_digest` and
  the metric's settings plus the stride); 2AFC accuracy (ties 0.5) with seeded percentile
  bootstrap 95 % CIs over pairs.

These are constructed orderings, not radiologist ratings.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.metric import KCross
from ..data import distortions as D
from ..errors import ConfigError, ShapeError
from ..registry import create_metric, metric_info
from .agreement import bootstrap_ci, two_afc_per_pair
from .score_cache import cached_scores, metric_settings, tensors_digest
from .volume25d import PLANES, score_25d

__all__ = [
    "DEFAULT_CONTRASTS",
    "DEFAULT_METRICS",
    "FAMILIES",
    "SLICE_AXIS",
    "VIEWS",
    "Family",
    "Volume",
    "VolumePair",
    "VolumePairResults",
    "bias3d",
    "blur3d",
    "build_metrics",
    "build_pairs",
    "evaluate_pairs",
    "load_validation_volumes",
    "plane_scores",
    "volume_pair_digest",
]

#: The views of a pair's scores: the three planes and their mean.
VIEWS: tuple[str, ...] = PLANES + ("2.5D",)
#: Metrics of the benchmark (registry names; ``kcross`` is K-CROSS with the given weights).
DEFAULT_METRICS: tuple[str, ...] = (
    "psnr", "ssim", "lpips_alex", "dists", "dfd_vgg16", "dfd_random", "dfd_ssfd", "kcross",
)  # fmt: skip
#: fake contrast -> source contrast given to K-CROSS (names of kcross_metric.train.data)
DEFAULT_CONTRASTS: dict[str, str] = {"t2": "t1", "flair": "t1"}
#: Axis of a (1, 1, D, H, W) volume that indexes the slices of each plane.
SLICE_AXIS: dict[str, int] = {"axial": 2, "coronal": 3, "sagittal": 4}

Volume = torch.Tensor  # (1, 1, D, H, W) in [0, 1]


# ----------------------------------------------------------------------------- 3-D distortions


def _axial(x: Volume, fn: Callable[[torch.Tensor], torch.Tensor]) -> Volume:
    """Apply a (B,1,H,W) distortion to every axial slice of a (1,1,D,H,W) volume."""
    slices = x[0].movedim(1, 0)  # (D, 1, H, W)
    return fn(slices).movedim(0, 1)[None]


def _gauss1d(sigma: float) -> torch.Tensor:
    r = max(1, math.ceil(4.0 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def blur3d(x: Volume, sigma: float) -> Volume:
    """Separable isotropic 3-D Gaussian (sigma in voxels, replicate padding); sigma 0 = identity."""
    if sigma <= 0:
        return x
    k = _gauss1d(sigma)
    r = k.numel() // 2
    y = x
    for axis in (2, 3, 4):
        shape = [1, 1, 1, 1, 1]
        shape[axis] = k.numel()
        pad = [0] * 6  # (W_l, W_r, H_l, H_r, D_l, D_r)
        pad[2 * (4 - axis)] = pad[2 * (4 - axis) + 1] = r
        y = F.conv3d(F.pad(y, pad, mode="replicate"), k.view(shape))
    return y.clamp(0.0, 1.0)


def bias3d(x: Volume, amplitude: float, seed: int) -> Volume:
    """``x * exp(amplitude * s)``, s a random mix of 3-D cosines of total order 1..2 scaled to max|s| = 1."""
    gen = torch.Generator().manual_seed(seed)
    d, h, w = x.shape[-3:]
    u = torch.linspace(0, 1, d).view(d, 1, 1)
    v = torch.linspace(0, 1, h).view(1, h, 1)
    z = torch.linspace(0, 1, w).view(1, 1, w)
    basis = [torch.cos(math.pi * p * u) * torch.cos(math.pi * q * v) * torch.cos(math.pi * r * z)
             for p in range(3) for q in range(3) for r in range(3) if 1 <= p + q + r <= 2]
    coef = torch.randn(len(basis), generator=gen)
    s = sum(c * bsis for c, bsis in zip(coef, basis))
    s = s / s.abs().max().clamp_min(1e-12)
    return (x * torch.exp(amplitude * s)).clamp(0.0, 1.0)


@dataclass(frozen=True)
class Family:
    """A distortion family: ``apply(volume, severity, seed)`` and its mild/strong severity ranges."""

    name: str
    apply: Callable[[Volume, float, int], Volume]
    mild: tuple[float, float]
    strong: tuple[float, float]
    kind: str  # "slice-wise k-space" | "3-D"


def _contrast(x: Volume, s: float, seed: int) -> Volume:
    # severity = |log gamma|; the direction (darker or brighter mid-tones) is drawn from the seed
    sign = 1.0 if torch.rand(1, generator=torch.Generator().manual_seed(seed)).item() < 0.5 else -1.0
    return D.contrast_change(x.flatten(0, 2)[:, None], gamma=math.exp(sign * s)).view_as(x)


#: The distortion families of the benchmark by name; severities are drawn uniformly from ``mild`` / ``strong``.
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("undersample", lambda x, s, seed: _axial(x, lambda t: D.undersample(t, s, 0.08, generator=seed)),
               (2.0, 3.0), (4.0, 6.0), "slice-wise k-space"),
        Family("motion", lambda x, s, seed: _axial(x, lambda t: D.motion(t, 0.3, s, generator=seed)),
               (0.8, 1.2), (1.4, 2.0), "slice-wise k-space"),
        Family("blur", lambda x, s, seed: blur3d(x, s), (0.6, 0.8), (0.9, 1.2), "3-D"),
        Family("noise", lambda x, s, seed: _axial(x, lambda t: D.rician_noise(t, s, generator=seed)),
               (0.015, 0.025), (0.03, 0.04), "3-D"),
        Family("bias", lambda x, s, seed: bias3d(x, s, seed), (0.1, 0.15), (0.18, 0.25), "3-D"),
        Family("contrast", _contrast, (0.1, 0.15), (0.18, 0.25), "3-D"),
    )
}


# ----------------------------------------------------------------------------- pairs


@dataclass
class VolumePair:
    """Two distorted copies of ``contrast``'s real volume; ``better`` ("a"/"b") is the milder one."""

    pair_id: str
    family: str
    contrast: str
    severity_a: float
    severity_b: float
    better: str
    a: Volume
    b: Volume


def build_pairs(
    volumes: Mapping[str, Volume],
    *,
    families: Sequence[str] = tuple(FAMILIES),
    contrasts: Sequence[str] | None = None,
    replicates: int = 1,
    seed: int = 0,
) -> list[VolumePair]:
    """Mild-vs-strong pairs for every (family, contrast, replicate); deterministic given ``seed``."""
    contrasts = tuple(contrasts) if contrasts is not None else tuple(DEFAULT_CONTRASTS)
    bad = [f for f in families if f not in FAMILIES]
    if bad:
        raise ConfigError(f"unknown families {bad}; available: {list(FAMILIES)}")
    missing = [c for c in contrasts if c not in volumes]
    if missing:
        raise ConfigError(f"no volume for contrasts {missing}; have {list(volumes)}")
    rng = np.random.default_rng(seed)
    pairs: list[VolumePair] = []
    for fam_name in families:
        fam = FAMILIES[fam_name]
        for contrast in contrasts:
            real = volumes[contrast]
            for _ in range(int(replicates)):
                s_mild = float(rng.uniform(*fam.mild))
                s_strong = float(rng.uniform(*fam.strong))
                seed_mild, seed_strong = (int(v) for v in rng.integers(0, 2**31 - 1, size=2))
                mild = fam.apply(real, s_mild, seed_mild)
                strong = fam.apply(real, s_strong, seed_strong)
                if bool(rng.random() < 0.5):
                    a, b, sa, sb, better = mild, strong, s_mild, s_strong, "a"
                else:
                    a, b, sa, sb, better = strong, mild, s_strong, s_mild, "b"
                pairs.append(VolumePair(f"v{len(pairs):03d}", fam_name, contrast, sa, sb, better, a, b))
    return pairs


# ----------------------------------------------------------------------------- scoring


def plane_scores(
    metric: nn.Module,
    fake: Volume,
    real: Volume,
    source: Volume | None,
    *,
    stride: int = 1,
) -> dict[str, float]:
    """Per-plane values (every ``stride``-th slice, offset ``stride // 2``) and their mean "2.5D"."""
    out: dict[str, float] = {}
    for plane in PLANES:
        axis = SLICE_AXIS[plane]
        idx = torch.arange(stride // 2, real.shape[axis], stride)
        src = source.index_select(axis, idx) if source is not None else None
        with torch.no_grad():
            res = score_25d(metric, fake.index_select(axis, idx), real.index_select(axis, idx), src, planes=(plane,))
        out[plane] = float(res.planes[plane][0])
    out["2.5D"] = float(np.mean([out[p] for p in PLANES]))
    return out


@dataclass
class VolumePairResults:
    """Scores and accuracies of :func:`evaluate_pairs`."""

    pairs: list[VolumePair]
    #: metric -> view -> (scores of a, scores of b) over pairs
    scores: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    #: metrics whose scores all came from the cache
    from_cache: list[str] = field(default_factory=list)
    #: metric -> view -> (accuracy, CI low, CI high)
    accuracy: dict[str, dict[str, tuple[float, float, float]]] = field(default_factory=dict)

    def credit(self, metric: str, view: str) -> np.ndarray:
        """2AFC credit per pair (1 correct, 0 wrong, 0.5 tie) of ``metric`` in ``view``."""
        sa, sb = self.scores[metric][view]
        better = np.array([p.better for p in self.pairs])
        return two_afc_per_pair(sa, sb, better, higher_is_better=self.higher_is_better[metric])

    def margins(self, metric: str, view: str) -> np.ndarray:
        """Oriented margin per pair: score(mild) - score(strong), positive = correct for this metric."""
        sa, sb = self.scores[metric][view]
        mild_is_a = np.array([p.better == "a" for p in self.pairs])
        m = np.where(mild_is_a, sa - sb, sb - sa)
        return m if self.higher_is_better[metric] else -m


def volume_pair_digest(pair: VolumePair, real: Volume, source: Volume | None) -> str:
    """SHA-1 (hex) of everything a metric sees for a pair: a, b, the real volume and the source."""
    return tensors_digest((("a", pair.a), ("b", pair.b), ("real", real), ("source", source)))


def evaluate_pairs(
    pairs: Sequence[VolumePair],
    volumes: Mapping[str, Volume],
    sources: Mapping[str, Volume | None],
    metrics: Mapping[str, tuple[nn.Module, bool]],
    *,
    stride: int = 1,
    n_boot: int = 1000,
    seed: int = 0,
    cache_dir: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> VolumePairResults:
    """Score every pair with every metric on each plane and in 2.5D; 2AFC accuracy with bootstrap CIs.

    ``metrics`` maps a name to (module with ``reduction="none"``, higher_is_better);
    ``volumes[contrast]`` is the real (1,1,D,H,W) volume, ``sources[contrast]`` the source given to
    metrics that take one (K-CROSS) or None. With ``cache_dir``, scores are read from and added to
    ``cache_dir/scores_<metric>.csv`` (:func:`~.score_cache.cached_scores`; the folder is created).
    ``log`` is called with one progress line per metric (pairs scored, wall and CPU seconds).
    """
    if not pairs:
        raise ConfigError("no pairs to evaluate")
    if int(stride) < 1:
        raise ConfigError(f"stride must be >= 1, got {stride}")
    for p in pairs:
        real = volumes[p.contrast]
        if p.a.shape != real.shape or p.b.shape != real.shape:
            raise ShapeError(f"pair {p.pair_id}: a {tuple(p.a.shape)} / b {tuple(p.b.shape)} do not match the "
                             f"real {p.contrast} volume {tuple(real.shape)}")
    res = VolumePairResults(list(pairs))
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    ids = [p.pair_id for p in pairs]
    digests = [volume_pair_digest(p, volumes[p.contrast], sources.get(p.contrast)) for p in pairs]
    for name, (module, hib) in metrics.items():
        t0, c0 = time.perf_counter(), time.process_time()

        def compute(idx: np.ndarray, module: nn.Module = module) -> dict[str, tuple[np.ndarray, np.ndarray]]:
            per_view: dict[str, tuple[list[float], list[float]]] = {v: ([], []) for v in VIEWS}
            for i in idx:
                p = pairs[int(i)]
                real, src = volumes[p.contrast], sources.get(p.contrast)
                for side, fake in ((0, p.a), (1, p.b)):
                    vals = plane_scores(module, fake, real, src, stride=int(stride))
                    for v in VIEWS:
                        per_view[v][side].append(vals[v])
            return {v: (np.array(sa), np.array(sb)) for v, (sa, sb) in per_view.items()}

        settings = f"{metric_settings(module)} stride={int(stride)}"
        path = None if cache_dir is None else cache_dir / f"scores_{name}.csv"
        res.scores[name], n_new = cached_scores(path, ids, digests, settings, VIEWS, compute)
        res.higher_is_better[name] = bool(hib)
        if n_new == 0:
            res.from_cache.append(name)
        res.seconds[name] = time.perf_counter() - t0
        res.cpu_seconds[name] = time.process_time() - c0
        if log is not None:
            log(f"{name}: {n_new} of {len(pairs)} pairs scored, {res.seconds[name]:.1f} s "
                f"(CPU {res.cpu_seconds[name]:.1f} s)")
    for name in metrics:
        res.accuracy[name] = {}
        for v in VIEWS:
            c = res.credit(name, v)
            ci = bootstrap_ci(np.mean, c, n_boot=n_boot, seed=seed)
            res.accuracy[name][v] = (float(c.mean()), ci.low, ci.high)
    return res


# ----------------------------------------------------------------------------- data


def load_validation_volumes(
    factor: int = 2, margin: int = 2, contrasts: Mapping[str, str] = DEFAULT_CONTRASTS
) -> tuple[str, dict[str, Volume], tuple[int, ...]]:
    """(case id, contrast -> (1,1,D,H,W) downsampled and brain-cropped volume, original shape).

    The first BraTS case of :data:`~kcross_metric.train.splits.VALIDATION_CASES`; every contrast
    named in ``contrasts`` (keys and values) is mean-pooled ``factor`` x per axis (``ceil_mode``)
    and cropped to the bounding box of the pooled brain mask plus ``margin`` voxels.
    """
    from ..train.data import load_case
    from ..train.splits import VALIDATION_CASES

    case_id = next(c for c in VALIDATION_CASES if c.startswith("BraTS-"))
    case = load_case(case_id)
    names = sorted(set(contrasts) | set(contrasts.values()))
    pooled = {c: F.avg_pool3d(torch.from_numpy(case.contrasts[c])[None, None].float(), factor, ceil_mode=True)
              for c in names}
    brain = F.max_pool3d(torch.from_numpy(case.brain)[None, None].float(), factor, ceil_mode=True)[0, 0] > 0
    box = []
    for axis in range(3):
        nz = torch.nonzero(brain.any(dim=tuple(j for j in range(3) if j != axis))).flatten()
        box.append(slice(max(0, int(nz[0]) - margin), min(brain.shape[axis], int(nz[-1]) + margin + 1)))
    vols = {c: v[:, :, box[0], box[1], box[2]].clamp(0.0, 1.0).contiguous() for c, v in pooled.items()}
    return case_id, vols, tuple(case.brain.shape)


def build_metrics(names: Sequence[str], weights: Path | None = None) -> dict[str, tuple[nn.Module, bool]]:
    """name -> (module in eval mode, higher_is_better) for :func:`evaluate_pairs`: ``kcross`` is
    :class:`~kcross_metric.core.metric.KCross` with ``weights``, every other name a registered
    metric with ``data_range=1.0, reduction="none"``."""
    out: dict[str, tuple[nn.Module, bool]] = {}
    for n in names:
        module = KCross(weights) if n == "kcross" else create_metric(n, data_range=1.0, reduction="none")
        out[n] = (module.eval(), metric_info(n).higher_is_better)
    return out

