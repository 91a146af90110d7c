"""Deterministic 2.5D (tri-planar) scoring of 3-D volumes with any 2-D metric.

The evaluation-time counterpart of the cyclic 2.5D perceptual loss (Sun et al., arXiv:2406.12632):
instead of cycling planes over epochs, a volume pair (B, 1, D, H, W) is cut into ALL its axial,
coronal and sagittal slices, every slice that holds brain is scored with a 2-D metric, and the
per-plane means and their average are returned.

Axes follow :mod:`kcross_metric.data.io` (``D`` inferior->superior, ``H`` posterior->anterior, ``W``
left->right), so the planes are::

    axial    = volume[:, :, k, :, :]  -> slices (H, W), one per k in D
    coronal  = volume[:, :, :, k, :]  -> slices (D, W), one per k in H
    sagittal = volume[:, :, :, :, k]  -> slices (D, H), one per k in W

Design decisions (see ``docs/dfd-and-25d.md``):

* A slice is scored when the brain mask has at least one voxel in it; the mask is taken from the
  REAL volume (default ``real > low + mask_threshold * (high - low)`` for ``data_range=(low, high)``,
  ``real > mask_threshold * data_range`` for a number), so the fake cannot choose which
  slices count. A sample with no brain voxel at all raises :class:`InputError`.
* Anisotropic voxels: with ``spacing=(s_D, s_H, s_W)`` (mm), each slice is resampled in-plane to
  square pixels at the finer of its two in-plane spacings (bilinear; equivalently trilinear
  interpolation that leaves the slice axis untouched, so no slice is invented). Without
  ``spacing`` voxels are assumed isotropic.
* Slices smaller than the metric's ``min_size`` are padded with the range's lower bound (0, the
  background of a skull-stripped [0, data_range] slice; -1 for ``data_range=(-1, 1)``)
  symmetrically up to it when ``pad_small=True``;
  otherwise :class:`ImageTooSmallError` is raised. Padding changes mean-type metrics (more
  background), which is why it can be switched off.
* Per-plane value of a sample = unweighted mean over its scored slices; overall value = mean of
  the plane values (each plane weighs the same, whatever its slice count).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._util.checks import (
    DataRange,
    IntensityRange,
    check_data_range,
    check_pair,
    check_tensor,
    intensity_range,
    single_channel,
)
from ..errors import ConfigError, ImageTooSmallError, InputError, ShapeError

__all__ = ["PLANES", "Volume25DResult", "plane_slices", "score_25d"]

PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")
# Axis of (B, 1, D, H, W) that indexes the slices of each plane.
_SLICE_AXIS = {"axial": 2, "coronal": 3, "sagittal": 4}


@dataclass
class Volume25DResult:
    """Result of :func:`score_25d`.

    Attributes:
        value: (B,) mean of the per-plane values.
        planes: plane name -> (B,) mean over that plane's scored slices.
        n_slices: plane name -> (B,) number of slices scored.
        metric: name of the metric (registry name or class name).
        higher_is_better: direction of the metric.
    """

    value: torch.Tensor
    planes: dict[str, torch.Tensor] = field(default_factory=dict)
    n_slices: dict[str, torch.Tensor] = field(default_factory=dict)
    metric: str = ""
    higher_is_better: bool = False


def plane_slices(volume: torch.Tensor, plane: str) -> torch.Tensor:
    """(B, C, D, H, W) -> (B, S, C, h, w): all slices of ``plane`` in index order."""
    if plane not in _SLICE_AXIS:
        raise ConfigError(f"plane must be one of {PLANES}, got {plane!r}")
    axis = _SLICE_AXIS[plane]
    return volume.movedim(axis, 1)


def _in_plane_spacing(plane: str, spacing: tuple[float, float, float]) -> tuple[float, float]:
    sd, sh, sw = spacing
    return {"axial": (sh, sw), "coronal": (sd, sw), "sagittal": (sd, sh)}[plane]


def _resample_isotropic(x: torch.Tensor, sp: tuple[float, float]) -> torch.Tensor:
    """(N, C, h, w) with pixel spacing ``sp`` -> square pixels at ``min(sp)`` (bilinear)."""
    if sp[0] == sp[1]:
        return x
    target = min(sp)
    size = (max(1, round(x.shape[-2] * sp[0] / target)), max(1, round(x.shape[-1] * sp[1] / target)))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _pad_to(x: torch.Tensor, min_size: int, value: float = 0.0) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = max(0, min_size - h), max(0, min_size - w)
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=value)


def _resolve_metric(metric: str | nn.Module, data_range: DataRange,
                    metric_kwargs: dict[str, Any] | None) -> tuple[nn.Module, str, bool, bool]:
    """(module, name, higher_is_better, uses_source)."""
    from ..registry import create_metric, metric_info

    if isinstance(metric, str):
        info = metric_info(metric)
        module = create_metric(metric, data_range=data_range, reduction="none", **(metric_kwargs or {}))
        return module, info.name, info.higher_is_better, info.uses_source
    if not isinstance(metric, nn.Module) or not callable(metric):
        raise ConfigError(f"metric must be a registry name or an nn.Module, got {type(metric).__name__}")
    if metric_kwargs:
        raise ConfigError("metric_kwargs only apply when the metric is given by name")
    if getattr(metric, "reduction", "none") != "none":
        raise ConfigError(f"the metric module must use reduction='none' (per-slice values), got {metric.reduction!r}")
    mdr = getattr(metric, "data_range", None)
    if mdr is not None and intensity_range(mdr) != intensity_range(data_range):
        raise ConfigError(f"the metric module has data_range={mdr} but score_25d got data_range={data_range}")
    from ..core.metric import KCross

    uses_source = isinstance(metric, KCross)
    return metric, type(metric).__name__, bool(getattr(metric, "higher_is_better", False)), uses_source


def _metric_min_size(module: nn.Module) -> int:
    """The metric's ``min_size`` attribute, else its module's ``_MIN_SIZE`` constant (NLPD, GMSD), else 1."""
    import sys

    value = getattr(module, "min_size", None)
    if value is None:
        value = getattr(sys.modules.get(type(module).__module__), "_MIN_SIZE", None)
    return int(value) if isinstance(value, (int, float)) and value >= 1 else 1


def _size_from_message(message: str) -> int | None:
    """The N of ``check_min_size``'s "needs every spatial dimension >= N" message."""
    import re

    match = re.search(r">= (\d+)", message)
    return int(match.group(1)) if match else None


def score_25d(
    metric: str | nn.Module,
    fake: torch.Tensor,
    real: torch.Tensor,
    source: torch.Tensor | None = None,
    *,
    planes: Sequence[str] = PLANES,
    brain_mask: torch.Tensor | None = None,
    spacing: Sequence[float] | None = None,
    data_range: DataRange = 1.0,
    mask_threshold: float = 0.01,
    pad_small: bool = True,
    slice_batch_size: int = 32,
    metric_kwargs: dict[str, Any] | None = None,
) -> Volume25DResult:
    """Tri-planar 2.5D score of volume pairs with a 2-D metric (registry name or module).

    Args:
        metric: a registry name (``kcross_metric.list_metrics()``; built with ``data_range`` and
            ``reduction="none"``, plus ``metric_kwargs``) or a 2-D metric module with
            ``reduction="none"`` whose ``forward(fake, real[, source])`` returns (N,).
        fake, real: (B, 1, D, H, W) in ``[0, data_range]`` (or ``[low, high]``); 3 identical
            channels (grayscale saved as RGB) are reduced to one.
        source: (B, 1, D, H, W) source-modality volume, passed to metrics that use one (K-CROSS).
        planes: any of ``"axial"``, ``"coronal"``, ``"sagittal"``.
        brain_mask: (B, 1, D, H, W) bool/0-1; default ``real > mask_threshold * data_range``
            (``real > low + mask_threshold * (high - low)`` for ``data_range=(low, high)``).
        data_range: a number R for ``[0, R]`` or a pair ``(low, high)`` such as ``(-1, 1)``; slices
            go to the metric in these units and the metric maps them once (a metric module passed
            in must have the same range).
        spacing: voxel size (s_D, s_H, s_W) in mm; None = isotropic.
        pad_small: zero-pad slices below the metric's ``min_size`` (else ImageTooSmallError).
        slice_batch_size: slices per metric call (memory bound); results do not depend on it.

    Returns:
        :class:`Volume25DResult` with (B,) tensors; no sampling, so results are deterministic.
    """
    dr = check_data_range(data_range)
    rng: IntensityRange = intensity_range(dr)
    fake = check_tensor(fake, "fake", ndims=(5,), channels=1, data_range=rng, gray_rgb=True)
    real = check_tensor(real, "real", ndims=(5,), channels=1, data_range=rng, gray_rgb=True)
    check_pair(fake, real)
    if source is not None:
        source = check_tensor(source, "source", ndims=(5,), channels=1, data_range=rng, gray_rgb=True)
        check_pair(source, real, ("source", "real"))
    planes = tuple(planes)
    if not planes or any(p not in PLANES for p in planes) or len(set(planes)) != len(planes):
        raise ConfigError(f"planes must be distinct names from {PLANES}, got {planes}")
    if int(slice_batch_size) < 1:
        raise ConfigError(f"slice_batch_size must be >= 1, got {slice_batch_size}")
    sp: tuple[float, float, float] | None = None
    if spacing is not None:
        sizes = tuple(float(s) for s in spacing)
        if len(sizes) != 3 or not all(0 < s < float("inf") for s in sizes):
            raise ConfigError(f"spacing must be three positive voxel sizes (s_D, s_H, s_W), got {spacing!r}")
        sp = (sizes[0], sizes[1], sizes[2])
    if brain_mask is None:
        mask = real.detach() > rng.low + mask_threshold * rng.span
    else:
        if isinstance(brain_mask, torch.Tensor) and brain_mask.dim() == 5:
            brain_mask = single_channel(brain_mask, "brain_mask")
        if not isinstance(brain_mask, torch.Tensor) or brain_mask.shape != real.shape:
            raise ShapeError(f"brain_mask must be a tensor of shape {tuple(real.shape)}, got "
                             f"{getattr(brain_mask, 'shape', type(brain_mask).__name__)}")
        mask = brain_mask.to(device=real.device) != 0
    empty = ~mask.flatten(1).any(dim=1)
    if bool(empty.any()):
        raise InputError(f"the brain mask of sample(s) {empty.nonzero().flatten().tolist()} is empty: "
                         f"no slice to score (pass brain_mask= or lower mask_threshold={mask_threshold})")

    module, name, hib, uses_source = _resolve_metric(metric, dr, metric_kwargs)
    min_size = _metric_min_size(module)
    b = fake.shape[0]
    per_plane: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}
    for plane in planes:
        keep = plane_slices(mask, plane).flatten(2).any(dim=2)  # (B, S)
        sample_idx, slice_idx = keep.nonzero(as_tuple=True)
        vols = [plane_slices(fake, plane), plane_slices(real, plane)]
        if uses_source and source is not None:
            vols.append(plane_slices(source, plane))
        values = []
        for start in range(0, sample_idx.numel(), int(slice_batch_size)):
            si, ki = sample_idx[start:start + slice_batch_size], slice_idx[start:start + slice_batch_size]
            batch = [v[si, ki] for v in vols]  # each (n, 1, h, w)
            if sp is not None:
                batch = [rng.clamp(_resample_isotropic(t, _in_plane_spacing(plane, sp))) for t in batch]
            if min(batch[0].shape[-2:]) < min_size:
                if not pad_small:
                    raise ImageTooSmallError(
                        f"{name} needs slices of at least {min_size}x{min_size} but the {plane} slices are "
                        f"{tuple(batch[0].shape[-2:])}; pass pad_small=True to zero-pad them")
                batch = [_pad_to(t, min_size, rng.low) for t in batch]
            try:
                out = module(*batch)
            except ImageTooSmallError as exc:
                # Metrics without a min_size attribute (e.g. SSIM's window) say the size they need.
                need = _size_from_message(str(exc))
                if not pad_small or need is None or need <= min(batch[0].shape[-2:]):
                    raise
                min_size = need
                out = module(*[_pad_to(t, min_size, rng.low) for t in batch])
            values.append(out.reshape(-1))
        vals = torch.cat(values)
        total = vals.new_zeros(b).index_add(0, sample_idx.to(vals.device), vals)
        n = torch.bincount(sample_idx, minlength=b)
        per_plane[plane] = total / n.to(total.dtype)
        counts[plane] = n
    value = torch.stack([per_plane[p] for p in planes]).mean(dim=0)
    return Volume25DResult(value=value, planes=per_plane, n_slices=counts, metric=name, higher_is_better=hib)
