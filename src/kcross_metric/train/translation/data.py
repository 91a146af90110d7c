"""Paired source/target slices for the translation models, from the case-level split.

Slices come from :func:`kcross_metric.train.data.build_slices` (the package's per-volume
normalization to [0, 1], axial slices), centre-cropped/padded to ``crop`` and average-pooled by
``crop // size`` (BraTS 1 mm -> 2 mm pixels at the defaults 256 -> 128), so a model trains in
minutes on a CPU. Lesion masks are pooled the same way and thresholded at 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ...errors import ConfigError
from ..data import CONTRASTS, available_cases, build_slices, case_contrasts

__all__ = ["PairedSlices", "parse_direction", "paired_slices"]


@dataclass
class PairedSlices:
    """``source``/``target`` (N,1,S,S) in [0,1]; ``lesion`` (N,1,S,S) 0/1 and ``has_lesion_label``
    (N,) -- False where the case has no segmentation (the mask is then all zeros, not "no lesion")."""

    source: torch.Tensor
    target: torch.Tensor
    lesion: torch.Tensor
    has_lesion_label: torch.Tensor
    case_ids: list[str]
    slice_index: list[int]

    def __len__(self) -> int:
        return int(self.source.shape[0])


def parse_direction(direction: str) -> tuple[str, str]:
    """``"t1-t2"`` -> ``("t1", "t2")``; both must be package contrasts and differ."""
    parts = direction.split("-")
    if len(parts) != 2 or parts[0] not in CONTRASTS or parts[1] not in CONTRASTS or parts[0] == parts[1]:
        raise ConfigError(
            f"direction must be '<source>-<target>' with two different contrasts of {CONTRASTS}, got {direction!r}"
        )
    return parts[0], parts[1]


def _pool(x: torch.Tensor, factor: int) -> torch.Tensor:
    return x if factor == 1 else F.avg_pool2d(x, factor)


def paired_slices(
    split: str | tuple[str, ...] | list[str],
    direction: str,
    *,
    crop: int = 256,
    size: int = 128,
    slice_range: tuple[int, int] | None = (40, 120),
    step: int = 1,
    root: str | Path | None = None,
) -> PairedSlices:
    """Source/target slices of every case of ``split`` (a split name or case ids) that has both contrasts.

    Raises:
        ConfigError: bad direction, ``crop`` not a multiple of ``size``, or no case with both contrasts.
    """
    source_c, target_c = parse_direction(direction)
    if crop % size:
        raise ConfigError(f"crop ({crop}) must be a multiple of size ({size})")
    if step < 1:
        raise ConfigError(f"step must be >= 1, got {step}")
    cases = available_cases(split, root, require=True) if isinstance(split, str) else tuple(split)
    usable = tuple(c for c in cases if source_c in case_contrasts(c) and target_c in case_contrasts(c))
    if not usable:
        raise ConfigError(f"no case of {cases} has both {source_c} and {target_c}")
    factor = crop // size
    groups = build_slices(usable, size=crop, slice_range=slice_range, root=root)
    src, tgt, les, lab, ids, ks = [], [], [], [], [], []
    for group in groups.values():
        if source_c not in group.images or target_c not in group.images:
            continue
        keep = []
        last: dict[str, int] = {}
        for i, (case_id, k) in enumerate(zip(group.case_ids, group.slice_index)):
            if case_id not in last or k - last[case_id] >= step:
                keep.append(i)
                last[case_id] = k
        idx = torch.tensor(keep, dtype=torch.long)
        src.append(_pool(group.images[source_c][idx], factor))
        tgt.append(_pool(group.images[target_c][idx], factor))
        les.append((_pool(group.lesion[idx], factor) >= 0.5).float())
        lab.append(group.has_lesion_label[idx])
        ids += [group.case_ids[i] for i in keep]
        ks += [group.slice_index[i] for i in keep]
    if not src:
        raise ConfigError(f"no case of {cases} has both {source_c} and {target_c}")
    return PairedSlices(torch.cat(src), torch.cat(tgt), torch.cat(les), torch.cat(lab), ids, ks)
