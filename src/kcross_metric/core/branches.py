"""Branch feature vectors of K-CROSS: how fake differs from real in k-space, lesion and structure.

Each branch turns network features of the fake and the reference into a per-channel *relative RMS
difference* (``relative_rms``): ``sqrt(mean|F-G|^2 / (mean(|F|^2 + |G|^2)/2 + eps))``, in [0, 2],
zero when the inputs are identical, invariant to the overall scale of a channel, and computed from
each sample alone (never from the batch). For complex features the vector is complex: its modulus
is the relative RMS and its phase the angle of the error-reference correlation, so the complex
score network sees both amplitude and phase disagreement (paper Sec. III-C1).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .kspace import radial_band_index
from .nets.autoencoders import StructureAutoencoder, TumorAutoencoder
from .nets.complex_unet import ComplexUNet

__all__ = [
    "BRANCHES",
    "FEATURE_BRANCHES",
    "LESION_AREA_FLOOR",
    "N_KSPACE_BANDS",
    "StructureReference",
    "complex_branch_features",
    "complex_relative_rms",
    "kspace_band_features",
    "lesion_change_features",
    "relative_rms",
    "structure_branch_features",
    "structure_reference",
    "tumor_branch_features",
]

#: The three branches of paper Sec. III, whose feature vectors this module computes; the parts of
#: a score's shortfall that :meth:`~kcross_metric.core.metric.KCrossResult.shares` splits.
FEATURE_BRANCHES = ("complex", "tumor", "structure")
#: Keys of :attr:`KCrossResult.branches <kcross_metric.core.metric.KCrossResult.branches>`, in the order
#: reports show them: the feature branches, then ``natural``, the natural score network's quality
#: of tumor and structure together.
BRANCHES = (*FEATURE_BRANCHES, "natural")

N_KSPACE_BANDS = 16
_EPS = 1e-6


def _resize_weight(weight: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor | None:
    if weight is None:
        return None
    return F.adaptive_avg_pool2d(weight, size) if weight.shape[-2:] != size else weight


def relative_rms(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-channel relative RMS difference of real feature maps (B,C,H,W) -> (B,C)."""
    w = _resize_weight(weight, (a.shape[-2], a.shape[-1]))
    diff2, energy = (a - b).square(), 0.5 * (a.square() + b.square())
    if w is None:
        num, den = diff2.mean(dim=(-2, -1)), energy.mean(dim=(-2, -1))
    else:
        wsum = w.sum(dim=(-2, -1)).clamp_min(_EPS)
        num, den = (diff2 * w).sum(dim=(-2, -1)) / wsum, (energy * w).sum(dim=(-2, -1)) / wsum
    return torch.sqrt(num / (den + _EPS) + 1e-12) - 1e-6


def _complex_difference(err: torch.Tensor, energy: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
    """Complex entry: modulus = relative RMS ``sqrt(err / (energy + eps))``, phase = angle of ``corr``."""
    modulus = torch.sqrt(err / (energy + _EPS) + 1e-12) - 1e-6
    unit = corr / torch.sqrt(corr.real.square() + corr.imag.square() + 1e-12)
    return modulus * unit


def complex_relative_rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Complex per-channel difference (B,C,H,W) complex -> (B,C) complex (see module doc)."""
    d = a - b
    err = (d.real.square() + d.imag.square()).mean(dim=(-2, -1))
    energy = 0.5 * (a.real.square() + a.imag.square() + b.real.square() + b.imag.square()).mean(dim=(-2, -1))
    return _complex_difference(err, energy, (d * b.conj()).mean(dim=(-2, -1)))


@functools.lru_cache(maxsize=16)
def _band_indicator(
    height: int, width: int, n_bands: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """(HW, n_bands) one-hot band membership and (n_bands,) cell counts; built once per size."""
    bands = radial_band_index(height, width, n_bands, device=device)
    onehot = F.one_hot(bands.flatten(), n_bands).to(dtype)
    return onehot, onehot.sum(0).clamp_min(1.0)


def kspace_band_features(kf: torch.Tensor, kr: torch.Tensor, n_bands: int = N_KSPACE_BANDS) -> torch.Tensor:
    """Complex relative difference per radial k-space band: (B,1,H,W) complex x2 -> (B,n_bands)."""
    h, w = kf.shape[-2:]
    onehot, counts = _band_indicator(h, w, n_bands, kf.device, kf.real.dtype)
    d = (kf - kr).flatten(1)  # (B, HW)
    err = (d.real.square() + d.imag.square()) @ onehot / counts
    energy = 0.5 * ((kf.real.square() + kf.imag.square() + kr.real.square() + kr.imag.square()).flatten(1)) @ onehot / counts
    prod = d * kr.flatten(1).conj()
    # the phase comes from the band *sum* of the correlation (not the mean), as the weights were trained
    return _complex_difference(err, energy, torch.complex(prod.real @ onehot, prod.imag @ onehot))


def complex_branch_features(
    unet: ComplexUNet, kf: torch.Tensor, kr: torch.Tensor, feats_r: list[torch.Tensor] | None = None
) -> torch.Tensor:
    """512-long complex vector: 16 k-space bands + per-channel differences of every encoder level.

    ``feats_r``: ``unet.encode(kr)`` if already computed (the reference side, reused across calls).
    """
    feats_f = unet.encode(kf)
    feats_r = unet.encode(kr) if feats_r is None else feats_r
    parts = [kspace_band_features(kf, kr)]
    parts += [complex_relative_rms(a, b) for a, b in zip(feats_f, feats_r)]
    return torch.cat(parts, dim=1)


def tumor_branch_features(
    tumor: TumorAutoencoder,
    fake: torch.Tensor,
    real: torch.Tensor | None,
    mask: torch.Tensor,
    feats_r: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """256-long vector of lesion-region differences; rows with an empty mask are zero.

    ``feats_r``: ``tumor.encode(real, mask)`` if already computed (then ``real`` may be None).
    """
    feats_f = tumor.encode(fake, mask)
    if feats_r is None:
        if real is None:
            raise ConfigError("tumor_branch_features needs real or feats_r")
        feats_r = tumor.encode(real, mask)
    vec = torch.cat([relative_rms(a, b, mask) for a, b in zip(feats_f, feats_r)], dim=1)
    present = (mask.flatten(1).amax(dim=1) > 0).to(vec.dtype)
    return vec * present[:, None]


@dataclass
class StructureReference:
    """The reference side of the structure branch: encoder features of the real image and of the
    source, and their distance ``d(real, source)`` (computed once, reused for every fake)."""

    feats_real: list[torch.Tensor]
    feats_source: list[torch.Tensor] | None
    real_to_source: torch.Tensor | None


def structure_reference(
    structure: StructureAutoencoder, real: torch.Tensor, source: torch.Tensor | None
) -> StructureReference:
    feats_r = structure.encode(real)
    if source is None:
        return StructureReference(feats_r, None, None)
    feats_s = structure.encode(source)
    d_rs = torch.cat([relative_rms(b, s) for b, s in zip(feats_r, feats_s)], dim=1)
    return StructureReference(feats_r, feats_s, d_rs)


def structure_branch_features(
    structure: StructureAutoencoder,
    fake: torch.Tensor,
    real: torch.Tensor | None,
    source: torch.Tensor | None,
    reference: StructureReference | None = None,
) -> torch.Tensor:
    """256-long vector: differences fake-vs-real, then the excess distance to the source anatomy.

    The second half is ``relu(d(fake, source) - d(real, source))``: how much farther the fake is from
    the source's anatomy than the real target is. Without a source it is zero (fake vs real only).
    ``reference``: :func:`structure_reference` of ``real`` and ``source`` if already computed (then
    ``real`` and ``source`` are not read).
    """
    if reference is None:
        if real is None:
            raise ConfigError("structure_branch_features needs real or reference")
        reference = structure_reference(structure, real, source)
    feats_f = structure.encode(fake)
    vs_real = torch.cat([relative_rms(a, b) for a, b in zip(feats_f, reference.feats_real)], dim=1)
    if reference.feats_source is None or reference.real_to_source is None:
        return torch.cat([vs_real, torch.zeros_like(vs_real)], dim=1)
    d_fs = torch.cat([relative_rms(a, s) for a, s in zip(feats_f, reference.feats_source)], dim=1)
    return torch.cat([vs_real, F.relu(d_fs - reference.real_to_source)], dim=1)


#: Lesion areas are measured against the real lesion's area plus this fraction of the slice
#: (0.003 of 256x256 = 197 px, about 2 cm^2 at 1 mm): a few pixels of segmenter noise on a slice
#: without lesion do not become a large relative change.
LESION_AREA_FLOOR = 0.003


def lesion_change_features(prob_fake: torch.Tensor, prob_real: torch.Tensor) -> torch.Tensor:
    """Lesion area added and removed in the fake, (N,1,H,W) lesion probabilities x2 -> (N,2).

    ``added = sum(relu(p_fake - p_real)) / A`` and ``removed = sum(relu(p_real - p_fake)) / A`` with
    ``A = sum(p_real) + LESION_AREA_FLOOR * H * W``: an invented lesion raises ``added``, an erased or
    shrunk one ``removed``, a moved one both. Soft probabilities (not thresholded masks), so the
    features change continuously with the image; both are 0 when the fake equals the real image.
    """
    area = prob_real.flatten(1).sum(dim=1) + LESION_AREA_FLOOR * prob_real.shape[-1] * prob_real.shape[-2]
    diff = (prob_fake - prob_real).flatten(1)
    return torch.stack([F.relu(diff).sum(dim=1) / area, F.relu(-diff).sum(dim=1) / area], dim=1)
