"""A built-in multi-contrast brain-like MR phantom with a lesion (no data files needed).

Anatomy: fractional (partial-volume) tissue maps built from ellipsoids in normalized coordinates
``[-1, 1]`` per axis, warped by a smooth random deformation: an intracranial ellipsoid with a thin
outer CSF layer, a folded cortical grey-matter ribbon, white matter, deep grey nuclei and two
lateral ventricles. A lesion (necrotic core, enhancing rim, surrounding edema) with a lumpy outline
is placed in hemispheric white matter and replaces white/grey matter only, so it always lies inside
the brain. Axis convention matches :mod:`kcross_metric.data.io`: 2-D ``(H, W)`` is an axial slice
(rows posterior->anterior, columns left->right); 3-D ``(D, H, W)`` adds inferior->superior.

Signal: closed-form magnitude equations at **1.5 T**,

* spin echo: ``S = PD (1 - exp(-TR/T1)) exp(-TE/T2)``,
* inversion recovery: ``S = PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)``,

summed over tissue fractions per voxel (signed, before the magnitude), multiplied by an optional
smooth bias field, with optional Rician noise, divided by a fixed per-contrast constant (the
brightest pure tissue maps to about 0.9) and clipped to ``[0, 1]``. Healthy-tissue T1/T2 values
follow Stanisz et al., MRM 54:507 (2005) at 1.5 T (WM 884/72 ms, GM 1124/95 ms); CSF uses the
commonly quoted ~4 s / ~2 s; lesion values and the gadolinium effect (``r1 = 4 /mM/s``, 0.2 mM in
the enhancing rim) are illustrative, chosen to give the textbook appearance, not measured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..errors import ConfigError, ShapeError

__all__ = [
    "CONTRASTS",
    "SEQUENCES",
    "TISSUES",
    "TISSUE_PARAMS",
    "make_pair",
    "make_phantom",
    "signal",
    "tissue_maps",
]

#: Tissue classes of :func:`tissue_maps`; fractions sum to 1 in every voxel.
TISSUES = ("background", "csf", "gm", "wm", "edema", "enhancing", "necrosis")

#: (T1 ms, T2 ms, relative proton density) at 1.5 T. Background is air (PD 0).
TISSUE_PARAMS: dict[str, tuple[float, float, float]] = {
    "background": (1000.0, 100.0, 0.0),
    "csf": (4000.0, 2000.0, 1.00),
    "gm": (1124.0, 95.0, 0.80),
    "wm": (884.0, 72.0, 0.70),
    "edema": (1300.0, 180.0, 0.90),
    "enhancing": (1300.0, 120.0, 0.85),
    "necrosis": (2500.0, 300.0, 0.95),
}

_GD_R1 = 4.0e-3  # relaxivity, 1/(ms mM)
_GD_CONC = 0.2  # mM in the enhancing rim after contrast

_CSF_T1 = TISSUE_PARAMS["csf"][0]
_FLAIR_TR = 9000.0
# TI nulling CSF for the given TR: 1 - 2 exp(-TI/T1) + exp(-TR/T1) = 0
_FLAIR_TI = _CSF_T1 * math.log(2.0 / (1.0 + math.exp(-_FLAIR_TR / _CSF_T1)))

#: Sequence parameters (ms). "t1"/"t1c" are IR-prepared T1-weighted (MPRAGE-like contrast).
SEQUENCES: dict[str, dict[str, float | str]] = {
    "t1": {"kind": "ir", "TR": 2000.0, "TI": 800.0, "TE": 10.0},
    "t1c": {"kind": "ir", "TR": 2000.0, "TI": 800.0, "TE": 10.0, "gd": 1.0},
    "t2": {"kind": "se", "TR": 4000.0, "TE": 100.0},
    "pd": {"kind": "se", "TR": 5000.0, "TE": 15.0},
    "flair": {"kind": "ir", "TR": _FLAIR_TR, "TI": _FLAIR_TI, "TE": 120.0},
}
CONTRASTS = tuple(SEQUENCES)

#: Brightest pure tissue maps to this value, leaving headroom for bias and noise.
_PEAK = 0.9


def _tissue_signal(contrast: str, tissue: str) -> float:
    """Signed (pre-magnitude) signal of a pure tissue."""
    seq = SEQUENCES[contrast]
    t1, t2, pd = TISSUE_PARAMS[tissue]
    if seq.get("gd") and tissue == "enhancing":
        t1 = 1.0 / (1.0 / t1 + _GD_R1 * _GD_CONC)
    tr, te = float(seq["TR"]), float(seq["TE"])
    if seq["kind"] == "se":
        mz = 1.0 - math.exp(-tr / t1)
    else:
        mz = 1.0 - 2.0 * math.exp(-float(seq["TI"]) / t1) + math.exp(-tr / t1)
    return pd * mz * math.exp(-te / t2)


_SCALE = {c: _PEAK / max(abs(_tissue_signal(c, t)) for t in TISSUES) for c in CONTRASTS}


# ------------------------------------------------------------------------------------ anatomy


def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shp = tuple(int(s) for s in shape)
    except TypeError as exc:
        raise ShapeError(f"shape must be (H, W) or (D, H, W), got {shape!r}") from exc
    if len(shp) not in (2, 3) or any(s < 16 for s in shp) or any(s != t for s, t in zip(shp, shape)):
        raise ShapeError(f"shape must be (H, W) or (D, H, W) with every size >= 16, got {tuple(shape)}")
    return shp


def _grid(shape: tuple[int, ...], dtype: type = np.float32) -> list[np.ndarray]:
    """Normalized coordinates (z, y, x) in [-1, 1]; in 2-D z is a constant plane through the ventricles."""
    axes: list[np.ndarray] = [np.linspace(-1.0, 1.0, n, dtype=dtype) for n in shape]
    if len(shape) == 2:
        y, x = np.meshgrid(*axes, indexing="ij", sparse=True)
        return [np.full((1, 1), 0.12, dtype=dtype), y, x]
    return list(np.meshgrid(*axes, indexing="ij", sparse=True))


def _smooth_field(rng: np.random.Generator, coords: list[np.ndarray], n_terms: int, freq: tuple[float, float],
                  amp: float) -> np.ndarray:
    """Sum of random plane waves: a cheap smooth random scalar field."""
    out = np.zeros(np.broadcast_shapes(*(c.shape for c in coords)), dtype=np.float32)
    arg = np.empty_like(out)
    for _ in range(n_terms):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        k = (direction * rng.uniform(*freq) * math.pi).astype(np.float32)
        phase = np.float32(rng.uniform(0, 2 * math.pi))
        a = np.float32(amp * rng.uniform(0.5, 1.0) / math.sqrt(n_terms))
        # float32 throughout: float64 scalars would silently upcast the whole volume
        np.multiply(coords[0], k[0], out=arg)
        arg += k[1] * coords[1]
        arg += k[2] * coords[2]
        arg += phase
        np.sin(arg, out=arg)
        arg *= a
        out += arg
    return out


def _ellipsoid_sdf(coords: list[np.ndarray], center: Sequence[float], radii: Sequence[float],
                   angle: float = 0.0) -> np.ndarray:
    """Approximate signed distance (normalized units) to an ellipsoid, optionally rotated in the axial plane."""
    center = [float(c) for c in center]
    radii = [float(r) for r in radii]
    z = coords[0] - center[0]
    y = coords[1] - center[1]
    x = coords[2] - center[2]
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        x, y = c * x + s * y, -s * x + c * y
    r = np.sqrt((z / radii[0]) ** 2 + (y / radii[1]) ** 2 + (x / radii[2]) ** 2)
    return (r - 1.0) * np.float32(min(radii))


def _frac(sdf: np.ndarray, half_size: float) -> np.ndarray:
    """Partial-volume fraction inside a boundary (logistic edge about one voxel wide)."""
    return (1.0 / (1.0 + np.exp(np.clip(sdf * np.float32(half_size) * 2.5, -30, 30)))).astype(np.float32)


def tissue_maps(
    shape: Sequence[int] = (256, 256),
    seed: int = 0,
    *,
    lesion: bool = True,
) -> dict[str, np.ndarray]:
    """Fractional tissue maps of a random brain-like phantom.

    Args:
        shape: ``(H, W)`` axial slice or ``(D, H, W)`` volume, every size >= 16.
        seed: anatomy and lesion are deterministic given the seed; the anatomy does not depend on
            ``lesion``, so ``lesion=False`` gives the healthy version of the same brain.
        lesion: add a tumour (necrosis + enhancing rim + edema) in white matter.

    Returns:
        dict ``tissue -> float32 array of shape`` with keys :data:`TISSUES`; fractions in ``[0, 1]``
        summing to 1 per voxel (lesion classes are all zero when ``lesion=False``).
    """
    shp = _check_shape(shape)
    ss = np.random.SeedSequence(int(seed))
    anat_rng, lesion_rng = (np.random.default_rng(s) for s in ss.spawn(2))
    coords = _grid(shp)
    half = float(np.mean(shp)) / 2.0

    # smooth random deformation of the whole anatomy
    warped = [c + _smooth_field(anat_rng, coords, 4, (0.5, 1.5), 0.05) for c in coords]
    scale = anat_rng.uniform(0.95, 1.05, size=3)
    brain_r = [float(r) for r in np.array([0.72, 0.86, 0.70]) * scale]  # (S-I, A-P, L-R)
    # gyral folding: a smooth field on the direction from the centre
    rad = np.sqrt(sum((w / r) ** 2 for w, r in zip(warped, brain_r))) + np.float32(1e-6)
    unit = [w / r / rad for w, r in zip(warped, brain_r)]
    fold = _smooth_field(anat_rng, unit, 12, (3.0, 5.0), 1.0)
    fold = fold / np.float32(max(float(np.abs(fold).max()), 1e-6))

    r_min = min(brain_r)
    intracranial = _frac((rad - 1.0) * r_min, half)
    pial = _frac((rad - (0.955 + 0.02 * fold)) * r_min, half)  # CSF between pial surface and skull
    white = _frac((rad - (0.80 + 0.06 * fold)) * r_min, half)  # GM/WM boundary follows the gyri

    vent_scale = float(anat_rng.uniform(0.8, 1.25))
    vent_r = [0.24 * vent_scale, 0.30 * vent_scale, 0.075 * vent_scale]
    vent = np.zeros_like(intracranial)
    deep_gm = np.zeros_like(intracranial)
    for side in (-1.0, 1.0):
        v = _frac(_ellipsoid_sdf(warped, (0.12, 0.04, side * 0.10 * vent_scale), vent_r, side * 0.25), half)
        vent = np.maximum(vent, v)
        t = _frac(_ellipsoid_sdf(warped, (0.02, -0.12, side * 0.22), (0.16, 0.13, 0.10), -side * 0.3), half)
        deep_gm = np.maximum(deep_gm, t)

    csf = intracranial - pial + pial * vent
    parenchyma = pial * (1.0 - vent)
    gm = parenchyma * (1.0 - white + white * deep_gm)
    wm = parenchyma * white * (1.0 - deep_gm)

    zeros = np.zeros_like(intracranial)
    maps = {"background": 1.0 - intracranial, "csf": csf, "gm": gm, "wm": wm,
            "edema": zeros, "enhancing": zeros.copy(), "necrosis": zeros.copy()}
    if lesion:
        _add_lesion(maps, lesion_rng, coords, half, is_2d=len(shp) == 2)
    return {k: np.clip(v, 0.0, 1.0).astype(np.float32, copy=False) for k, v in maps.items()}


def _add_lesion(maps: dict[str, np.ndarray], rng: np.random.Generator, coords: list[np.ndarray],
                half: float, *, is_2d: bool) -> None:
    side = float(rng.choice([-1.0, 1.0]))
    center = (
        0.12 if is_2d else rng.uniform(0.0, 0.3),
        rng.uniform(-0.30, 0.30),
        side * rng.uniform(0.30, 0.38),
    )
    r_edema = rng.uniform(0.17, 0.22)
    r_core = r_edema * rng.uniform(0.50, 0.62)
    r_necro = r_core * rng.uniform(0.45, 0.60)
    rel = [c - m for c, m in zip(coords, center)]
    dist = np.sqrt(sum(r * r for r in rel)) + np.float32(1e-6)
    unit = [r / dist for r in rel]
    lump = 1.0 + _smooth_field(rng, unit, 6, (1.0, 2.5), 0.25)
    d = dist / lump
    edema = _frac(d - r_edema, half)
    core = _frac(d - r_core, half)
    necro = _frac(d - r_necro, half)
    tissue = maps["wm"] + maps["gm"]
    maps["necrosis"] = necro * tissue
    maps["enhancing"] = (core - necro) * tissue
    maps["edema"] = (edema - core) * tissue
    maps["wm"] = maps["wm"] * (1.0 - edema)
    maps["gm"] = maps["gm"] * (1.0 - edema)


# ------------------------------------------------------------------------------------- signal


def signal(
    maps: Mapping[str, np.ndarray],
    contrast: str,
    *,
    noise: float = 0.0,
    bias: float = 0.0,
    seed: int | None = 0,
) -> np.ndarray:
    """Simulated magnitude image of one contrast from :func:`tissue_maps`, float32 in ``[0, 1]``.

    Args:
        maps: tissue fractions (keys :data:`TISSUES`; missing lesion keys count as zero).
        contrast: one of ``"t1"``, ``"t1c"``, ``"t2"``, ``"pd"``, ``"flair"`` (see :data:`SEQUENCES`).
        noise: Rician noise standard deviation on the ``[0, 1]`` output scale (0 = none).
        bias: peak relative amplitude of a smooth multiplicative bias field (0 = none, 0.2 = +-20 %).
        seed: seed of the noise and bias field.

    The normalization constant is fixed per contrast (independent of the image), so intensities
    are comparable across seeds and shapes.
    """
    if contrast not in SEQUENCES:
        raise ConfigError(f"unknown contrast {contrast!r}; expected one of {CONTRASTS}")
    for name, value in (("noise", noise), ("bias", bias)):
        if not (math.isfinite(value) and 0.0 <= value):
            raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    if bias >= 1.0:
        raise ConfigError(f"bias must be < 1 (relative amplitude), got {bias!r}")
    unknown = set(maps) - set(TISSUES)
    if unknown:
        raise ConfigError(f"unknown tissue map(s) {sorted(unknown)}; expected keys from {TISSUES}")
    if "background" not in maps:
        raise ConfigError("maps must contain 'background' (use tissue_maps())")
    shape = maps["background"].shape
    s = np.zeros(shape, dtype=np.float32)
    for tissue, frac in maps.items():
        w = _tissue_signal(contrast, tissue) * _SCALE[contrast]
        if w != 0.0:
            s += np.float32(w) * frac
    s = np.abs(s)
    rng = np.random.default_rng(np.random.SeedSequence([0 if seed is None else int(seed), CONTRASTS.index(contrast)]))
    if bias > 0.0:
        field = _smooth_field(rng, _grid(tuple(shape)), 3, (0.3, 0.8), 1.0)
        field /= np.float32(max(float(np.abs(field).max()), 1e-6))
        s *= 1.0 + np.float32(bias) * field
    if noise > 0.0:
        n1 = rng.normal(0.0, noise, size=shape).astype(np.float32)
        n2 = rng.normal(0.0, noise, size=shape).astype(np.float32)
        s = np.sqrt((s + n1) ** 2 + n2**2)
    return np.clip(s, 0.0, 1.0).astype(np.float32, copy=False)


def _lesion_mask(maps: Mapping[str, np.ndarray]) -> np.ndarray:
    total = maps["edema"] + maps["enhancing"] + maps["necrosis"]
    return (total >= 0.5).astype(np.float32)


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None, None]


def make_phantom(
    shape: Sequence[int] = (256, 256),
    contrasts: Sequence[str] = ("t1", "t2", "flair"),
    seed: int = 0,
    lesion: bool = True,
    noise: float = 0.0,
    bias: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Co-registered multi-contrast phantom images as tensors.

    Returns:
        dict ``contrast -> float32 tensor (1, 1, H, W)`` or ``(1, 1, D, H, W)`` in ``[0, 1]``
        (``data_range=1``), plus ``"mask"``: whole-lesion mask (necrosis + enhancing + edema
        fraction >= 0.5) as a 0/1 float32 tensor of the same shape (all zeros when ``lesion=False``).
    """
    if isinstance(contrasts, str):
        contrasts = (contrasts,)
    bad = [c for c in contrasts if c not in SEQUENCES]
    if bad or not contrasts:
        raise ConfigError(f"unknown or missing contrasts {bad or list(contrasts)}; expected from {CONTRASTS}")
    maps = tissue_maps(shape, seed, lesion=lesion)
    out = {c: _to_tensor(signal(maps, c, noise=noise, bias=bias, seed=seed)) for c in contrasts}
    out["mask"] = _to_tensor(_lesion_mask(maps))
    return out


def make_pair(
    shape: Sequence[int] = (256, 256),
    source: str = "t1",
    target: str = "t2",
    seed: int = 0,
    *,
    blur_sigma: float = 1.5,
    lesion_fade: float = 0.6,
    noise: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A (fake, real, source, mask) quadruple for demos of cross-modality synthesis scoring.

    ``real`` is the ``target`` contrast and ``source`` the ``source`` contrast of the same phantom
    (with lesion). ``fake`` imitates a typical synthesis failure: the real image is Gaussian-blurred
    (``blur_sigma`` voxels) and the lesion is faded toward the healthy tissue, i.e.
    ``fake = blur((1 - a m) real + a m healthy)`` with ``m`` the soft lesion fraction, ``a =
    lesion_fade`` and ``healthy`` the same brain without lesion. All tensors are
    ``(1, 1, *shape)`` float32 in ``[0, 1]``; ``mask`` is the whole-lesion 0/1 mask.
    """
    from scipy.ndimage import gaussian_filter

    if not (math.isfinite(blur_sigma) and blur_sigma >= 0.0):
        raise ConfigError(f"blur_sigma must be >= 0, got {blur_sigma!r}")
    if not (0.0 <= lesion_fade <= 1.0):
        raise ConfigError(f"lesion_fade must be in [0, 1], got {lesion_fade!r}")
    for c in (source, target):
        if c not in SEQUENCES:
            raise ConfigError(f"unknown contrast {c!r}; expected one of {CONTRASTS}")
    maps = tissue_maps(shape, seed, lesion=True)
    healthy_maps = tissue_maps(shape, seed, lesion=False)
    real = signal(maps, target, noise=noise, seed=seed)
    src = signal(maps, source, noise=noise, seed=seed)
    healthy = signal(healthy_maps, target, seed=seed)
    m = np.float32(lesion_fade) * (maps["edema"] + maps["enhancing"] + maps["necrosis"])
    fake = (1.0 - m) * real + m * healthy
    if blur_sigma > 0.0:
        fake = gaussian_filter(fake, blur_sigma, mode="nearest")
    fake = np.clip(fake, 0.0, 1.0)
    return _to_tensor(fake), _to_tensor(real), _to_tensor(src), _to_tensor(_lesion_mask(maps))
