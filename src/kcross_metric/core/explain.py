"""Why did K-CROSS give this score? Per-slice scores, branch contributions and error maps.

:func:`explain` (also ``KCross.explain``) scores a pair exactly as :meth:`KCross.score` does (no
gradients) and returns a :class:`KCrossExplanation` (used by ``kcross-score --report``): the pair's
:class:`~kcross_metric.core.metric.KCrossResult`, which already holds

* per-slice scores and per-slice branch qualities (paper Sec. III: complex, tumor, structure and
  natural qualities, each ``exp(-network output)`` in [0, 1]);
* per-branch **contributions** ``-log q``: how much each branch pulls the score below 1. With the
  default ``combine="product"`` the score is ``q_complex * q_natural``, so
  ``contributions["complex"] + contributions["natural"] == -log(score)`` exactly, slice by slice.
  ``tumor`` and ``structure`` are the natural score network evaluated with the other branch's
  difference vector zeroed (as in :meth:`KCross.qualities`), so they split the natural part only
  approximately;
* the lesion mask the tumor branch used,

with the per-slice fields filled for slice inputs too, plus two maps: the absolute error
``|fake - real|`` over the span of ``data_range`` and the k-space error
``log(|fft2c(fake) - fft2c(real)| + eps)`` (orthonormal, centred DFT of each axial slice of the
[0, 1]-scaled images, DC in the middle).

Shapes: inputs ``(B,1,H,W)`` slices or ``(B,1,D,H,W)`` volumes. Per-slice tensors are ``(B,D)``
with ``D = 1`` for slice inputs; maps have the inputs' shape.

The explanation types and constants live in :mod:`kcross_metric.core.metric` (imports point from here
to there only) and are re-exported here.
"""

from __future__ import annotations

import warnings

import torch

from .branches import BRANCHES as _BRANCHES
from .metric import KSPACE_ERROR_EPS, MIN_SHARE_TOTAL, KCross, KCrossExplanation

__all__ = ["KSPACE_ERROR_EPS", "MIN_SHARE_TOTAL", "KCrossExplanation", "explain"]


def explain(
    metric: KCross,
    fake: torch.Tensor,
    real: torch.Tensor,
    source: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> KCrossExplanation:
    """Score ``fake`` against ``real`` with ``metric`` and explain the result (no gradients).

    Args:
        metric: a :class:`~kcross_metric.KCross` instance.
        fake, real, source, mask: as for :meth:`KCross.score`: ``(B,1,H,W)`` or ``(B,1,D,H,W)`` in
            ``metric.data_range`` (``[0, R]`` or ``[low, high]``); ``mask`` an optional lesion mask
            of the same shape.

    Returns:
        :class:`KCrossExplanation`, the same as ``metric.explain(fake, real, source, mask)``.
    """
    return metric.explain(fake, real, source, mask)


def __getattr__(name: str) -> tuple[str, ...]:
    if name == "BRANCHES":
        warnings.warn(
            "kcross_metric.core.explain.BRANCHES is deprecated; use kcross_metric.core.branches.BRANCHES",
            DeprecationWarning,
            stacklevel=2,
        )
        return _BRANCHES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
