"""Lesion segmenter evaluation: Dice per contrast and lesion-wise counts (``benchmarks/segmenter_dice.py``).

The segmenter K-CROSS uses (bundled weights or a segmenter run) is applied, ``sigmoid > 0.5``, to
axial slices of the validation subjects that have a lesion label, each contrast on its own, once
on the clean image and once after a fixed synthesis-like degradation (:func:`degrade`: Gaussian
blur sigma 1 px, then Rician noise sigma 0.02), since K-CROSS segments the fake image too.

Counting:

* **Dice** from voxel counts (:func:`overlap_counts`, :func:`dice_from_counts`): ``2 |P & G| /
  max(|P| + |G|, 1)``; pooled Dice adds the counts of every evaluated slice of every subject of a
  group (glioma or multiple sclerosis) before dividing (:class:`DicePool`).
* **Lesion-wise** (:func:`lesion_wise`): a reference lesion, a 3-D connected component
  (26-connectivity), is *detected* when a predicted voxel touches it, else *missed*; a predicted
  component touching no reference voxel is a *false positive*.

:func:`evaluate_segmenter` runs the whole evaluation and returns a :class:`SegmenterEvaluation`
(per-subject Dice, lesion-wise rows of the multiple-sclerosis subjects, pooled counts).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage

from ..core.nets.segmenter import LesionSegmenter, segmenter_channels_of, segmenter_norm_of
from ..data import distortions as D
from ..train.data import available_cases, build_slices
from ..train.splits import VALIDATION_CASES, subject

__all__ = [
    "DEGRADE_BLUR_SIGMA",
    "DEGRADE_NOISE_SIGMA",
    "LESION_GROUPS",
    "CONTRASTS",
    "LesionCounts",
    "CaseDice",
    "LesionWiseRow",
    "DicePool",
    "SegmenterEvaluation",
    "load_segmenter",
    "degrade",
    "predict_lesion_masks",
    "overlap_counts",
    "dice_from_counts",
    "lesion_wise",
    "lesion_group",
    "lesion_validation_cases",
    "evaluate_segmenter",
]

#: The synthesis-like degradation: Gaussian blur (pixels), then Rician noise (relative to range 1).
DEGRADE_BLUR_SIGMA: float = 1.0
DEGRADE_NOISE_SIGMA: float = 0.02
#: Lesion groups and contrasts in the order of the pooled table.
LESION_GROUPS: tuple[str, ...] = ("glioma", "ms")
CONTRASTS: tuple[str, ...] = ("flair", "t2", "t1c", "t1")


class LesionCounts(NamedTuple):
    """Lesion-wise counts of 3-D connected components."""

    detected: int  #: reference lesions touched by a predicted voxel
    missed: int  #: reference lesions touched by none
    false_positives: int  #: predicted components touching no reference voxel


class CaseDice(NamedTuple):
    """Dice of one subject in one contrast, clean and degraded input."""

    case: str
    lesion: str  #: the subject's lesion kind (:attr:`kcross_metric.train.splits.Subject.lesion`)
    contrast: str
    dice: float
    dice_degraded: float
    lesion_slices: int  #: evaluated slices with a lesion voxel


class LesionWiseRow(NamedTuple):
    """Lesion-wise counts and voxel Dice of one multiple-sclerosis subject, contrast and input."""

    case: str
    contrast: str
    degraded: bool
    counts: LesionCounts
    dice: float


def load_segmenter(run: str | os.PathLike[str] | None = None, weights: str | None = None) -> tuple[LesionSegmenter, str]:
    """The segmenter of a segmenter run folder (``model.safetensors``), else of a K-CROSS weight file
    (``weights``; ``None`` = the bundled one), in eval mode, with a short description of its source
    (``run `<run>``` or ``weights sha256 <first 16 hex digits>…``)."""
    if run is not None:
        from ..weights import load_safetensors

        state = load_safetensors(Path(run) / "model.safetensors")
        model = LesionSegmenter(segmenter_channels_of(state), segmenter_norm_of(state))
        model.load_state_dict(state)
        return model.eval(), f"run `{run}`"
    from ..core.metric import KCross

    kc = KCross(weights=weights)
    return kc.nets.segmenter.eval(), f"weights sha256 {str(kc.weights_info.get('weights_sha256'))[:16]}…"


def degrade(images: torch.Tensor, generator: int = 0) -> torch.Tensor:
    """The synthesis-like degradation of (B,1,H,W) images in [0,1]: blur, then seeded Rician noise."""
    return D.rician_noise(D.gaussian_blur(images, DEGRADE_BLUR_SIGMA), DEGRADE_NOISE_SIGMA, generator=generator)


def predict_lesion_masks(model: torch.nn.Module, images: torch.Tensor, *, degraded: bool = False,
                         batch_size: int = 16) -> torch.Tensor:
    """Bool masks ``sigmoid(model(x)) > 0.5`` of (N,1,H,W) images, in batches; with ``degraded``
    each batch is passed through :func:`degrade` first (seeded by the batch's first row index)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size]
            if degraded:
                x = degrade(x, generator=i)
            out.append(torch.sigmoid(model(x)) > 0.5)
    return torch.cat(out)


def overlap_counts(pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray) -> np.ndarray:
    """Voxel counts ``[|pred & gt|, |pred|, |gt|]`` (float64) of two bool masks of one shape."""
    return np.array([float((pred & gt).sum()), float(pred.sum()), float(gt.sum())])


def dice_from_counts(counts: np.ndarray) -> float:
    """Dice ``2 |P & G| / max(|P| + |G|, 1)`` from :func:`overlap_counts` (summed or not); 0 when both are empty."""
    return float(2 * counts[0] / max(counts[1] + counts[2], 1.0))


def lesion_wise(pred: np.ndarray, gt: np.ndarray) -> LesionCounts:
    """(detected, missed, false positives) of 3-D connected components (26-connectivity) of two
    bool volumes of one shape (slices along the first axis)."""
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    structure = np.ones((3, 3, 3), bool)
    gt_lab, n_gt = ndimage.label(gt, structure)
    pred_lab, n_pred = ndimage.label(pred, structure)
    detected = len(set(np.unique(gt_lab[pred & (gt_lab > 0)])) - {0})
    fp = n_pred - len(set(np.unique(pred_lab[gt & (pred_lab > 0)])) - {0})
    return LesionCounts(detected, n_gt - detected, fp)


@dataclass
class DicePool:
    """Voxel counts summed per key (e.g. ``(group, contrast, degraded)``); :meth:`dice` of the sums."""

    counts: dict[tuple[str, str, bool], np.ndarray] = field(default_factory=dict)

    def add(self, key: tuple[str, str, bool], counts: np.ndarray) -> None:
        self.counts[key] = self.counts.get(key, 0) + counts

    def __contains__(self, key: object) -> bool:
        return key in self.counts

    def dice(self, key: tuple[str, str, bool]) -> float:
        return dice_from_counts(self.counts[key])


def lesion_group(lesion: str) -> str:
    """``"ms"`` for multiple-sclerosis lesions, else ``"glioma"`` (every glioma grade)."""
    return "ms" if lesion == "ms" else "glioma"


def lesion_validation_cases(only: Sequence[str] | None = None, *, warn: bool = True) -> tuple[str, ...]:
    """The validation subjects with a lesion label whose files are on this machine (restricted to
    ``only`` if given), in the order of :data:`~kcross_metric.train.splits.VALIDATION_CASES`."""
    return available_cases(tuple(c for c in VALIDATION_CASES if subject(c).label != "none"
                                 and (only is None or c in only)), warn=warn)


@dataclass
class SegmenterEvaluation:
    """What :func:`evaluate_segmenter` found."""

    cases: tuple[str, ...]
    per_case: list[CaseDice] = field(default_factory=list)
    lesion_rows: list[LesionWiseRow] = field(default_factory=list)  #: multiple-sclerosis subjects only
    pooled: DicePool = field(default_factory=DicePool)  #: keyed by ``(group, contrast, degraded)``

    def pooled_rows(self) -> list[tuple[str, str, float, float]]:
        """``(group, contrast, pooled Dice, pooled Dice of the degraded input)`` in the order of
        :data:`LESION_GROUPS` and :data:`CONTRASTS`, for the evaluated (group, contrast) pairs."""
        return [(group, contrast, self.pooled.dice((group, contrast, False)), self.pooled.dice((group, contrast, True)))
                for group in LESION_GROUPS for contrast in CONTRASTS if (group, contrast, False) in self.pooled]


def evaluate_segmenter(model: torch.nn.Module, cases: Sequence[str], slice_range: tuple[int, int] = (20, 140),
                       *, batch_size: int = 16) -> SegmenterEvaluation:
    """Segment every contrast of ``cases`` (axial slices ``slice_range`` of the BraTS grid, shifted on
    other grids), clean and degraded, and count: Dice per subject and contrast, pooled counts per
    (group, contrast, degraded), and lesion-wise counts for the multiple-sclerosis subjects."""
    result = SegmenterEvaluation(tuple(cases))
    for case in cases:
        kind = subject(case).lesion
        for s in build_slices((case,), slice_range=(slice_range[0], slice_range[1])).values():
            gt = s.lesion > 0.5
            for contrast, images in s.images.items():
                dice = []
                for degraded in (False, True):
                    pred = predict_lesion_masks(model, images, degraded=degraded, batch_size=batch_size)
                    counts = overlap_counts(pred, gt)
                    result.pooled.add((lesion_group(kind), contrast, degraded), counts)
                    dice.append(dice_from_counts(counts))
                    if kind == "ms":
                        result.lesion_rows.append(LesionWiseRow(
                            case, contrast, degraded, lesion_wise(pred[:, 0].numpy(), gt[:, 0].numpy()), dice[-1]))
                result.per_case.append(CaseDice(case, kind, contrast, dice[0], dice[1],
                                                int(gt.flatten(1).any(1).sum())))
    return result
