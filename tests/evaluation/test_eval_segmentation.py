"""kcross_metric.evaluation.segmentation (behind benchmarks/segmenter_dice.py): Dice counting and
pooling, lesion-wise detected / missed / false positives, on synthetic masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kcross_metric.evaluation.segmentation import (
    DicePool,
    LesionCounts,
    SegmenterEvaluation,
    dice_from_counts,
    lesion_group,
    lesion_wise,
    overlap_counts,
    predict_lesion_masks,
)


def _cube(shape: tuple[int, int, int], *where: tuple[slice, slice, slice]) -> np.ndarray:
    out = np.zeros(shape, bool)
    for w in where:
        out[w] = True
    return out


def test_overlap_counts_and_dice():
    gt = _cube((1, 4, 4), (slice(None), slice(0, 2), slice(0, 2)))  # 4 voxels
    pred = _cube((1, 4, 4), (slice(None), slice(0, 2), slice(0, 3)))  # 6 voxels, 4 of them in gt
    counts = overlap_counts(pred, gt)
    assert counts.tolist() == [4.0, 6.0, 4.0]
    assert dice_from_counts(counts) == pytest.approx(0.8)
    # torch masks count the same
    assert overlap_counts(torch.from_numpy(pred), torch.from_numpy(gt)).tolist() == [4.0, 6.0, 4.0]
    # both empty: 0, not a division by zero
    assert dice_from_counts(overlap_counts(np.zeros((2, 2), bool), np.zeros((2, 2), bool))) == 0.0


def test_pooled_dice_adds_counts_before_dividing():
    # subject 1: Dice 1 on 2 voxels; subject 2: Dice 0 on 8 voxels. Pooled: 2*2 / (2+2 + 0+8) = 1/3,
    # not the mean of the per-subject values (0.5)
    a = overlap_counts(np.array([1, 1, 0, 0], bool), np.array([1, 1, 0, 0], bool))
    b = overlap_counts(np.zeros(8, bool), np.ones(8, bool))
    pool = DicePool()
    pool.add(("glioma", "t2", False), a)
    pool.add(("glioma", "t2", False), b)
    pool.add(("glioma", "t2", True), a)
    assert pool.counts[("glioma", "t2", False)].tolist() == [2.0, 2.0, 10.0]
    assert pool.dice(("glioma", "t2", False)) == pytest.approx(1 / 3)
    assert pool.dice(("glioma", "t2", True)) == 1.0
    assert a.tolist() == [2.0, 2.0, 2.0]  # adding does not change the caller's counts
    assert ("ms", "t2", False) not in pool


def test_pooled_rows_follow_the_table_order():
    ev = SegmenterEvaluation(cases=("x",))
    for key, counts in [(("ms", "t2", False), [1.0, 2.0, 2.0]), (("ms", "t2", True), [0.0, 1.0, 1.0]),
                        (("glioma", "t1", False), [3.0, 3.0, 3.0]), (("glioma", "t1", True), [3.0, 3.0, 3.0]),
                        (("glioma", "flair", False), [0.0, 0.0, 4.0]), (("glioma", "flair", True), [2.0, 4.0, 4.0])]:
        ev.pooled.add(key, np.array(counts))
    assert ev.pooled_rows() == [("glioma", "flair", 0.0, 0.5), ("glioma", "t1", 1.0, 1.0), ("ms", "t2", 0.5, 0.0)]


def test_lesion_wise_counts_connected_components():
    shape = (4, 12, 12)
    # three reference lesions: A at rows 0-1, B at rows 5-6, C a single voxel in another slice
    gt = _cube(shape, (slice(0, 2), slice(0, 2), slice(0, 2)), (slice(0, 2), slice(5, 7), slice(5, 7)),
               (slice(3, 4), slice(10, 11), slice(10, 11)))
    # prediction: one voxel of A (detects it), a blob beside B not touching it (false positive),
    # and a blob far away (false positive); C is missed, B is missed
    pred = _cube(shape, (slice(1, 2), slice(1, 2), slice(1, 2)), (slice(0, 2), slice(8, 10), slice(8, 10)),
                 (slice(3, 4), slice(0, 2), slice(8, 10)))
    assert lesion_wise(pred, gt) == LesionCounts(detected=1, missed=2, false_positives=2)
    # a predicted component covering two reference lesions detects both and is no false positive
    pred = _cube(shape, (slice(0, 2), slice(0, 7), slice(0, 7)))
    assert lesion_wise(pred, gt) == LesionCounts(detected=2, missed=1, false_positives=0)


def test_lesion_wise_uses_26_connectivity_in_3d():
    # two voxels touching only at a corner, in neighbouring slices: one lesion
    gt = np.zeros((2, 3, 3), bool)
    gt[0, 0, 0] = gt[1, 1, 1] = True
    pred = np.zeros_like(gt)
    pred[1, 1, 1] = True
    assert lesion_wise(pred, gt) == (1, 0, 0)
    # nothing predicted, nothing to find
    assert lesion_wise(np.zeros_like(gt), np.zeros_like(gt)) == (0, 0, 0)
    assert lesion_wise(gt, np.zeros_like(gt)) == (0, 0, 1)


def test_lesion_group():
    assert lesion_group("ms") == "ms"
    assert [lesion_group(k) for k in ("glioma", "glioma-hgg", "glioma-lgg")] == ["glioma"] * 3


class _Threshold(torch.nn.Module):
    """A stand-in segmenter: logit = image - 0.5, so sigmoid > 0.5 where the image is above 0.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - 0.5


def test_predict_lesion_masks_in_batches_and_degraded():
    images = torch.zeros(5, 1, 16, 16)
    images[:, :, 4:12, 4:12] = 1.0
    masks = predict_lesion_masks(_Threshold(), images, batch_size=2)
    assert masks.dtype == torch.bool and masks.shape == images.shape
    assert torch.equal(masks, images > 0.5)
    # the degradation is seeded: the same masks twice, and the bright square survives it
    a = predict_lesion_masks(_Threshold(), images, degraded=True, batch_size=2)
    assert torch.equal(a, predict_lesion_masks(_Threshold(), images, degraded=True, batch_size=2))
    assert a[:, :, 6:10, 6:10].all() and not a[:, :, :2, :2].any()
