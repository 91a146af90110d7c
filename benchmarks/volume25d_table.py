"""2AFC accuracy of 2-D metrics on single planes vs 2.5D on constructed volume pairs.

    python benchmarks/volume25d_table.py --out docs/results-25d.md

Data: the BraTS 2023 validation case of :data:`kcross_metric.train.splits.VALIDATION_CASES`
(``BraTS-GLI-00001-000``: T1 = ``t1n``, T2 = ``t2w``, FLAIR = ``t2f``), loaded and normalized with
:func:`kcross_metric.train.data.load_case`. To keep the CPU cost low every contrast is
downsampled 2x per axis (2x2x2 mean pooling, 155x240x240 -> 78x120x120 at 2 mm) and cropped to
the bounding box of the brain plus 2 voxels (``--downsample``, ``--margin``).

Pairs: for each distortion family, each fake contrast (T2 and FLAIR; the real T1 is K-CROSS's
source) and each replicate, two distorted copies of the real volume are made, one with a severity
drawn from the family's mild range and one from its strong range, each with its own random seed;
the mild copy is better by construction. Which side (a/b) is the mild one is random. Everything
follows ``--seed``. Families (severity ranges in :data:`FAMILIES`):

* ``undersample`` (slice-wise k-space): every axial slice is undersampled along its last in-plane
  axis (left-right, the phase-encoding columns of :mod:`kcross_metric.data.distortions`) with its own
  equispaced cartesian mask, zero-filled magnitude reconstruction;
* ``motion`` (slice-wise k-space): per axial slice, 30 % of the phase-encoding lines acquired
  with a random rigid in-plane shift;
* ``blur`` (3-D isotropic Gaussian), ``noise`` (3-D Rician), ``bias`` (smooth 3-D multiplicative
  field from low-order cosines), ``contrast`` (gamma change, voxel-wise).

Scoring: :func:`kcross_metric.evaluation.volume25d.score_25d` one plane at a time, so that only every
``--stride``-th slice of that plane is scored (default 3, offset ``stride // 2``; brain mask from
the real volume as in ``score_25d``); "2.5D" is the mean of the three plane values, as
``score_25d`` computes it. With ``--stride 1`` every slice is scored. Accuracy: 2AFC credit per
pair (ties 0.5), seeded percentile bootstrap 95 % CIs over pairs
(:func:`kcross_metric.evaluation.bootstrap_ci`). These are constructed orderings, not
radiologist ratings. Per-plane sensitivity: the mean, over a family's pairs, of each plane's
oriented margin (score of the mild copy minus score of the strong copy, sign-flipped for
lower-is-better metrics) divided by the 2.5D margin.

Score cache: per-pair, per-view scores of every metric are kept in ``<cache-dir>/scores_<metric>.csv``
(default ``runs/volume25d``; ``--no-cache`` disables it), keyed by pair id, a SHA-1 of the pair's
arrays (a, b, real, source) and the metric's settings plus the stride, with the logic of
``benchmarks/twoafc_table.py``; a re-run (e.g. to change the page text) only scores what changed.

Runtime: about 0.5 min of CPU per volume with 8 metrics on one thread (the three VGG16-based
metrics, DISTS and the two DFD presets, take most of it); timings are printed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kcross_metric.data import distortions as D
from kcross_metric.errors import ConfigError, ShapeError
from kcross_metric.evaluation import bootstrap_ci, two_afc_per_pair
from kcross_metric.evaluation.volume25d import PLANES, score_25d

sys.path.insert(0, str(Path(__file__).resolve().parent))
from twoafc_table import cached_scores, metric_settings

VIEWS: tuple[str, ...] = PLANES + ("2.5D",)
DEFAULT_METRICS: tuple[str, ...] = (
    "psnr", "ssim", "lpips_alex", "dists", "dfd_vgg16", "dfd_random", "dfd_ssfd", "kcross",
)  # fmt: skip
#: fake contrast -> source contrast given to K-CROSS (names of kcross_metric.train.data)
DEFAULT_CONTRASTS: dict[str, str] = {"t2": "t1", "flair": "t1"}
_SLICE_AXIS = {"axial": 2, "coronal": 3, "sagittal": 4}

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
        axis = _SLICE_AXIS[plane]
        idx = torch.arange(stride // 2, real.shape[axis], stride)
        src = source.index_select(axis, idx) if source is not None else None
        with torch.no_grad():
            res = score_25d(metric, fake.index_select(axis, idx), real.index_select(axis, idx), src, planes=(plane,))
        out[plane] = float(res.planes[plane][0])
    out["2.5D"] = float(np.mean([out[p] for p in PLANES]))
    return out


@dataclass
class Results:
    """Scores and accuracies of :func:`evaluate`."""

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
        sa, sb = self.scores[metric][view]
        better = np.array([p.better for p in self.pairs])
        return two_afc_per_pair(sa, sb, better, higher_is_better=self.higher_is_better[metric])

    def margins(self, metric: str, view: str) -> np.ndarray:
        """Oriented margin per pair: score(mild) - score(strong), positive = correct for this metric."""
        sa, sb = self.scores[metric][view]
        mild_is_a = np.array([p.better == "a" for p in self.pairs])
        m = np.where(mild_is_a, sa - sb, sb - sa)
        return m if self.higher_is_better[metric] else -m


def pair_digest(pair: VolumePair, real: Volume, source: Volume | None) -> str:
    """SHA-1 (hex) of everything a metric sees for a pair: a, b, the real volume and the source."""
    h = hashlib.sha1()
    for name, t in (("a", pair.a), ("b", pair.b), ("real", real), ("source", source)):
        h.update(name.encode())
        if t is None:
            h.update(b"none")
            continue
        arr = np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)
        h.update(repr(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def evaluate(
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
) -> Results:
    """Score every pair with every metric on each plane and in 2.5D; 2AFC accuracy with bootstrap CIs.

    ``metrics`` maps a name to (module with ``reduction="none"``, higher_is_better);
    ``volumes[contrast]`` is the real (1,1,D,H,W) volume, ``sources[contrast]`` the source given to
    metrics that take one (K-CROSS) or None. With ``cache_dir``, scores are read from and added to
    ``cache_dir/scores_<metric>.csv`` (see the module docstring).
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
    res = Results(list(pairs))
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    ids = [p.pair_id for p in pairs]
    digests = [pair_digest(p, volumes[p.contrast], sources.get(p.contrast)) for p in pairs]
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


# ----------------------------------------------------------------------------- tables


def accuracy_markdown(res: Results) -> str:
    """| metric | axial | coronal | sagittal | 2.5D | with "acc [low, high]" cells."""
    lines = ["| metric | " + " | ".join(VIEWS) + " |", "|---|" + "---|" * len(VIEWS)]
    for name, acc in res.accuracy.items():
        lines.append(f"| {name} | " + " | ".join(f"{acc[v][0]:.3f} [{acc[v][1]:.3f}, {acc[v][2]:.3f}]"
                                                 for v in VIEWS) + " |")
    return "\n".join(lines) + "\n"


def family_markdown(res: Results) -> str:
    """Per family: correct pairs per view (a x/y c x/y s x/y 2.5D x/y) for every metric."""
    fams = list(dict.fromkeys(p.family for p in res.pairs))
    fam_of = np.array([p.family for p in res.pairs])
    lines = ["| family | " + " | ".join(res.accuracy) + " |", "|---|" + "---|" * len(res.accuracy)]
    for f in fams:
        sel = fam_of == f
        cells = []
        for name in res.accuracy:
            parts = [f"{res.credit(name, v)[sel].sum():g}" for v in VIEWS]
            cells.append("/".join(parts))
        lines.append(f"| {f} (n={int(sel.sum())}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sensitivity_markdown(res: Results) -> str:
    """Per family: mean plane margin / mean 2.5D margin (ax/cor/sag) for every metric."""
    fams = list(dict.fromkeys(p.family for p in res.pairs))
    fam_of = np.array([p.family for p in res.pairs])
    lines = ["| family | " + " | ".join(res.accuracy) + " |", "|---|" + "---|" * len(res.accuracy)]
    for f in fams:
        sel = fam_of == f
        cells = []
        for name in res.accuracy:
            ref = res.margins(name, "2.5D")[sel].mean()
            if not np.isfinite(ref) or abs(ref) < 1e-12:
                cells.append("n/a")
                continue
            cells.append("/".join(f"{res.margins(name, pl)[sel].mean() / ref:.2f}" for pl in PLANES))
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- data


def load_volumes(
    factor: int = 2, margin: int = 2, contrasts: Mapping[str, str] = DEFAULT_CONTRASTS
) -> tuple[str, dict[str, Volume], tuple[int, ...]]:
    """(case id, contrast -> (1,1,D,H,W) downsampled and brain-cropped volume, original shape)."""
    from kcross_metric.train.data import load_case
    from kcross_metric.train.splits import VALIDATION_CASES

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
    from kcross_metric import KCross, create_metric, metric_info

    out: dict[str, tuple[nn.Module, bool]] = {}
    for n in names:
        module = KCross(weights) if n == "kcross" else create_metric(n, data_range=1.0, reduction="none")
        out[n] = (module.eval(), metric_info(n).higher_is_better)
    return out


# ----------------------------------------------------------------------------- report


def _summary(res: Results) -> str:
    """Measured headline sentences, derived from the numbers (no hand-written claims)."""
    acc = res.accuracy
    out = []
    best_single = {n: max(acc[n][p][0] for p in PLANES) for n in acc}
    worse = [n for n in acc if acc[n]["2.5D"][0] < best_single[n] - 1e-9]
    better = [n for n in acc if acc[n]["2.5D"][0] > best_single[n] + 1e-9]
    out.append(
        f"2.5D beats the best single plane for {', '.join(better) or 'no metric'}; it is below the best "
        f"single plane for {', '.join(worse) or 'no metric'}; for the others it ties.")
    spread = {n: max(acc[n][p][0] for p in PLANES) - min(acc[n][p][0] for p in PLANES) for n in acc}
    planes_differ = [f"{n} ({', '.join(f'{p} {acc[n][p][0]:.2f}' for p in PLANES)})" for n in acc if spread[n] > 1e-9]
    out.append("Single planes disagree for " + ("; ".join(planes_differ) if planes_differ else "no metric") + ".")
    if "kcross" in acc:
        k = acc["kcross"]["2.5D"][0]
        above = [n for n in acc if n != "kcross" and acc[n]["2.5D"][0] > k + 1e-9]
        out.append(f"K-CROSS reaches {k:.3f} in 2.5D; " + (
            f"{', '.join(above)} score higher." if above else "no other metric scores higher."))
    fams = list(dict.fromkeys(p.family for p in res.pairs))
    fam_of = np.array([p.family for p in res.pairs])
    missed = []
    for f in fams:
        sel = fam_of == f
        bad = [n for n in acc if res.credit(n, "2.5D")[sel].mean() < 1.0]
        if bad:
            counts = [f"{n} ({res.credit(n, '2.5D')[sel].sum():g}/{int(sel.sum())})" for n in bad]
            missed.append(f"`{f}`: {', '.join(counts)}")
    out.append("Families with 2.5D errors (correct/total): " + ("; ".join(missed) if missed else "none") + ".")
    return " ".join(out)


def sensitivity_notes(res: Results) -> str:
    """One line per family: which plane separates the pair most, per metric (ratio > 1.1 only)."""
    fams = list(dict.fromkeys(p.family for p in res.pairs))
    fam_of = np.array([p.family for p in res.pairs])
    lines = []
    for f in fams:
        sel = fam_of == f
        by_plane: dict[str, list[str]] = {pl: [] for pl in PLANES}
        for name in res.accuracy:
            ref = res.margins(name, "2.5D")[sel].mean()
            if not np.isfinite(ref) or abs(ref) < 1e-12 or ref < 0:
                continue
            ratios = {pl: res.margins(name, pl)[sel].mean() / ref for pl in PLANES}
            top = max(ratios, key=lambda pl: ratios[pl])
            if ratios[top] > 1.1:
                by_plane[top].append(f"{name} {ratios[top]:.2f}")
        parts = [f"{pl}: {', '.join(v)}" for pl, v in by_plane.items() if v]
        kind = FAMILIES[f].kind if f in FAMILIES else ""
        lines.append(f"- `{f}` ({kind}): " + ("; ".join(parts) if parts else "no plane above 1.1 for any metric")
                     + ".")
    return "\n".join(lines) + "\n"


_TIMING_COLUMNS = ("metric", "settings", "wall_s", "cpu_s", "n_pairs")


def _read_timing(path: Path) -> dict[str, tuple[str, float, float, int]]:
    """metric -> (settings, wall s, CPU s, pairs) of the last run that scored every pair."""
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != _TIMING_COLUMNS:
            return {}
        return {r["metric"]: (r["settings"], float(r["wall_s"]), float(r["cpu_s"]), int(r["n_pairs"]))
                for r in reader}


def _write_timing(path: Path, rows: dict[str, tuple[str, float, float, int]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(_TIMING_COLUMNS)
        for name, (settings, wall, cpu, n) in rows.items():
            w.writerow([name, settings, f"{wall:.1f}", f"{cpu:.1f}", n])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help="write the markdown page here")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS))
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--replicates", type=int, default=1, help="pairs per (family, contrast)")
    p.add_argument("--downsample", type=int, default=2)
    p.add_argument("--margin", type=int, default=2)
    p.add_argument("--stride", type=int, default=3, help="score every stride-th slice of each plane")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--weights", type=Path, default=None, help="K-CROSS weights (default: bundled)")
    p.add_argument("--cache-dir", type=Path, default=Path("runs/volume25d"),
                   help="folder of the score caches scores_<metric>.csv (default: runs/volume25d)")
    p.add_argument("--no-cache", action="store_true", help="score everything, read and write no cache")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    t_start, c_start = time.perf_counter(), time.process_time()
    case_id, vols, orig_shape = load_volumes(args.downsample, args.margin)
    t_load = time.perf_counter() - t_start
    shape = tuple(vols["t2"].shape[-3:])
    print(f"loaded {case_id} in {t_load:.1f} s: {orig_shape} -> {shape}", flush=True)
    t0 = time.perf_counter()
    pairs = build_pairs(vols, families=[f for f in args.families.split(",") if f],
                        replicates=args.replicates, seed=args.seed)
    t_pairs = time.perf_counter() - t0
    print(f"{len(pairs)} pairs built in {t_pairs:.1f} s", flush=True)
    names = [n for n in args.metrics.split(",") if n]
    metrics = build_metrics(names, args.weights)
    sources = {c: vols[s] for c, s in DEFAULT_CONTRASTS.items()}
    cache_dir = None if args.no_cache else args.cache_dir
    res = evaluate(pairs, vols, sources, metrics, stride=args.stride, n_boot=args.n_boot, seed=args.seed,
                   cache_dir=cache_dir, log=lambda s: print(s, flush=True))
    total, cpu_total = time.perf_counter() - t_start, time.process_time() - c_start
    # Scoring cost per metric: this run's when it scored every pair, else the run that did (cache).
    timing = _read_timing(cache_dir / "timing.csv") if cache_dir is not None else {}
    cost = {}
    for n in names:
        computed = n not in res.from_cache
        settings = (f"downsample={args.downsample};margin={args.margin};stride={args.stride};"
                    f"replicates={args.replicates};seed={args.seed};pairs={len(pairs)}")
        if computed:
            timing[n] = (settings, res.seconds[n], res.cpu_seconds[n], len(pairs))
        if n in timing and timing[n][0] == settings:
            cost[n] = timing[n]
    if cache_dir is not None:
        _write_timing(cache_dir / "timing.csv", timing)
    cost_text = ", ".join(f"{n} {w:.0f}/{c:.0f}" for n, (_, w, c, _) in cost.items())
    scoring_wall = sum(w for _, w, _, _ in cost.values())
    scoring_cpu = sum(c for _, _, c, _ in cost.values())
    cached_text = (f" Metrics read from the score cache this run: {', '.join(res.from_cache)}."
                   if res.from_cache else "")
    n_mse = sum(
        float((q.b if q.better == "a" else q.a).sub(vols[q.contrast]).pow(2).mean())
        > float((q.a if q.better == "a" else q.b).sub(vols[q.contrast]).pow(2).mean()) for q in pairs)
    every = {1: "every slice", 2: "every 2nd slice", 3: "every 3rd slice"}.get(
        args.stride, f"every {args.stride}th slice")
    n_slices = {pl: len(range(args.stride // 2, shape[_SLICE_AXIS[pl] - 2], args.stride)) for pl in PLANES}
    cmd = "python benchmarks/volume25d_table.py" + (f" --out {args.out}" if args.out else "")
    fam_lines = "\n".join(
        f"| `{f.name}` | {f.kind} | {f.mild[0]:g}-{f.mild[1]:g} | {f.strong[0]:g}-{f.strong[1]:g} |"
        for f in FAMILIES.values() if f.name in {q.family for q in pairs})
    text = f"""# 2.5D results: single planes vs tri-planar mean

**Constructed orderings, not radiologist ratings.** Each pair holds two distorted copies of one
real volume; the copy with the milder severity is better by construction.

Command: `{cmd}` (seed {args.seed}, {args.n_boot} bootstrap resamples, {max(1, args.threads)} thread(s)).
Scoring cost on a shared 2-core CPU, wall/CPU seconds per metric for all {2 * len(pairs)} volumes:
{cost_text or "n/a"} (total {scoring_wall / 60:.1f} min wall-clock, {scoring_cpu / 60:.1f} min CPU).
This run: {total:.0f} s wall-clock, {cpu_total:.0f} s CPU, of which loading {t_load:.0f} s and
building the pairs {t_pairs:.0f} s.{cached_text}

Data: validation case `{case_id}` only (never used for fitting; `kcross_metric.train.splits`),
loaded with `kcross_metric.train.data.load_case`. Fakes are distorted T2 (`t2w`) and FLAIR
(`t2f`) volumes; the real T1 (`t1n`) is K-CROSS's source. To keep the CPU cost low the volumes
are downsampled {args.downsample}x per axis (mean pooling; {orig_shape[0]}x{orig_shape[1]}x{orig_shape[2]}
voxels of 1 mm become {args.downsample} mm voxels) and cropped to the brain's bounding box plus
{args.margin} voxels: D x H x W = {shape[0]} x {shape[1]} x {shape[2]}. Each plane is scored on
{every} (axial {n_slices['axial']}, coronal {n_slices['coronal']}, sagittal
{n_slices['sagittal']} slices; those without brain in the real volume are skipped) through
`kcross_metric.evaluation.volume25d.score_25d`; "2.5D" is the mean of the three plane values.
{len(pairs)} pairs = {len({q.family for q in pairs})} families x {len(DEFAULT_CONTRASTS)} fake
contrasts x {args.replicates} replicate(s), severities drawn uniformly from:

| family | applied | mild | strong |
|---|---|---|---|
{fam_lines}

`undersample`: acceleration R, 8 % central lines, one equispaced mask per axial slice along
left-right, zero-filled; `motion`: max shift (voxels) of 30 % of the phase-encoding lines of each
axial slice; `blur`: sigma (voxels); `noise`: Rician sigma; `bias`: log-amplitude; `contrast`:
|log gamma|, direction random. The strong copy has the larger MSE in {n_mse} of the {len(pairs)} pairs.
K-CROSS's networks were trained on axial slices of the native (about 1 mm) grids: 2 mm slices and
coronal or sagittal planes are outside their training distribution.

## 2AFC accuracy (95 % bootstrap CI over the {len(pairs)} pairs)

{accuracy_markdown(res)}
{_summary(res)}

With {len(pairs)} pairs a CI spans about +-{1.96 * math.sqrt(0.25 / len(pairs)):.2f} at 0.5 accuracy:
differences between views smaller than that are not resolved by this set.

## Correct pairs per family (axial/coronal/sagittal/2.5D)

{family_markdown(res)}
## Per-plane sensitivity (mean plane margin / mean 2.5D margin, axial/coronal/sagittal)

Margin = score of the mild copy minus score of the strong copy (sign-flipped for lower-is-better
metrics), averaged over the family's pairs and divided by the same average for the 2.5D value, so
the three numbers of a cell average to 1. A value above 1 marks the plane in which that metric
sees the severity difference most; a negative value, a plane that orders the pair the wrong way
on average; "n/a", a 2.5D margin of zero.

{sensitivity_markdown(res)}
Geometry of the slice-wise k-space families: each axial slice (H x W) is distorted along W
(left-right), so axial and coronal (D x W) slices contain the axis along which the aliasing and
motion copies are displaced, while sagittal slices (D x H) cut across it and see the artefact as
a mix of neighbouring sagittal positions; neighbouring axial slices got independent masks and
shifts, which shows as slice-to-slice inconsistency along D in coronal and sagittal slices only.

Plane with the largest margin ratio (> 1.1) per family and metric:

{sensitivity_notes(res)}"""
    print(text)
    print(f"total {total:.0f} s wall-clock, {cpu_total:.0f} s CPU", flush=True)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    from _paths import name_checkout_shared

    name_checkout_shared()
    sys.exit(main())
