"""Why did K-CROSS give this score? Per-slice scores, branch contributions and error maps.

:func:`explain` (also ``KCross.explain``) scores a pair exactly as :meth:`KCross.score` does and
returns everything needed to look at the result (used by ``kcross-score --report``):

* per-slice scores and per-slice branch qualities (paper Sec. III: complex, tumor, structure and
  natural qualities, each ``exp(-network output)`` in [0, 1]);
* per-branch **contributions** ``-log q``: how much each branch pulls the score below 1. With the
  default ``combine="product"`` the score is ``q_complex * q_natural``, so
  ``contributions["complex"] + contributions["natural"] == -log(score)`` exactly, slice by slice.
  ``tumor`` and ``structure`` are the natural score network evaluated with the other branch's
  difference vector zeroed (as in :meth:`KCross.qualities`), so they split the natural part only
  approximately;
* the lesion mask the tumor branch used, the absolute error ``|fake - real|`` over the span of
  ``data_range`` and the k-space error ``log(|fft2c(fake) - fft2c(real)| + eps)`` (orthonormal,
  centred DFT of each axial slice of the [0, 1]-scaled images, DC in the middle).

Shapes: inputs ``(B,1,H,W)`` slices or ``(B,1,D,H,W)`` volumes. Per-slice tensors are ``(B,D)``
with ``D = 1`` for slice inputs; maps have the inputs' shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from .errors import ConfigError
from .kspace import fft2c

if TYPE_CHECKING:  # pragma: no cover
    from .metric import KCross

__all__ = ["BRANCHES", "KSPACE_ERROR_EPS", "KCrossExplanation", "explain", "MIN_SHARE_TOTAL"]

#: contributions (-log q, summed over the three branches) below which no shares are given: the
#: scores display as 1.0000 and every branch is at 0.0000
MIN_SHARE_TOTAL = 1e-4

#: Branch names, in the order reports show them.
BRANCHES = ("complex", "tumor", "structure", "natural")
#: Added to ``|FFT(fake) - FFT(real)|`` before the log: identical slices give ``log(1e-8) = -18.4``.
KSPACE_ERROR_EPS = 1e-8
# Smallest quality used in -log q, so a quality that underflows to 0 gives a large finite value.
_TINY = 1e-30


@dataclass
class KCrossExplanation:
    """What :func:`explain` returns. ``B`` samples, ``D`` axial slices (1 for slice inputs).

    Attributes:
        score: (B,) K-CROSS score in [0, 1], higher is better; equals ``KCross.score(...).score``.
        branches: name -> (B,) branch quality in [0, 1], mean over scored slices.
        contributions: name -> (B,) ``-log(branches[name])`` (0 = this branch costs nothing).
        slice_scores: (B,D) per-slice scores, NaN for slices that were not scored.
        slice_branches: name -> (B,D) per-slice branch qualities (NaN where not scored).
        slice_contributions: name -> (B,D) per-slice ``-log q`` (NaN where not scored).
        slice_used: (B,D) bool, slices with brain that were scored.
        has_lesion: (B,D) bool, slices where the tumor branch was active.
        lesion_mask: bool, inputs' shape: the lesion region the tumor branch compared.
        error_map: inputs' (1-channel) shape, ``|fake - real|`` over the span of ``data_range``,
            in [0, 1].
        kspace_error: inputs' shape, ``log(|fft2c(fake) - fft2c(real)| + 1e-8)`` per axial slice,
            centred (DC at ``(H//2, W//2)``), on the [0, 1]-scaled images.
        combine: the metric's ``combine`` rule (the contribution identity holds for ``"product"``).
        version: package version and weights that produced the scores.
    """

    score: torch.Tensor
    branches: dict[str, torch.Tensor]
    contributions: dict[str, torch.Tensor]
    slice_scores: torch.Tensor
    slice_branches: dict[str, torch.Tensor]
    slice_contributions: dict[str, torch.Tensor]
    slice_used: torch.Tensor
    has_lesion: torch.Tensor
    lesion_mask: torch.Tensor
    error_map: torch.Tensor
    kspace_error: torch.Tensor
    combine: str = "product"
    version: dict[str, object] = field(default_factory=dict)

    def shares(self, sample: int = 0, slice_index: int | None = None) -> dict[str, float]:
        """Fractions of ``complex + tumor + structure`` contributions (sum to 1), or all 0 when the
        contributions sum to less than :data:`MIN_SHARE_TOTAL` (nothing to share out: fractions of
        rounding noise would read as a diagnosis).

        For one sample (volume mean) or, with ``slice_index``, one slice of it.
        """
        if slice_index is None:
            parts = {k: float(self.contributions[k][sample]) for k in ("complex", "tumor", "structure")}
        else:
            parts = {k: float(self.slice_contributions[k][sample, slice_index]) for k in ("complex", "tumor", "structure")}
        parts = {k: (v if math.isfinite(v) else 0.0) for k, v in parts.items()}
        total = sum(parts.values())
        return {k: (v / total if total >= MIN_SHARE_TOTAL else 0.0) for k, v in parts.items()}

    def worst_slices(self, n: int, sample: int = 0) -> list[int]:
        """Indices of the ``n`` scored slices with the lowest scores, worst first."""
        if n < 0:
            raise ConfigError(f"n must be >= 0, got {n}")
        scores = self.slice_scores[sample].detach().float().cpu()
        used = self.slice_used[sample].cpu()
        idx = used.nonzero().squeeze(1)
        order = torch.argsort(scores[idx], stable=True)
        return [int(i) for i in idx[order][:n]]


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
        :class:`KCrossExplanation`.
    """
    fake, real, source, mask = metric._check_inputs(fake, real, source, mask)
    slices_in = fake.dim() == 4

    def as_volume(t: torch.Tensor) -> torch.Tensor:
        return t.unsqueeze(2) if slices_in else t

    fv, rv = as_volume(fake), as_volume(real)
    b, _, d, h, w = fv.shape

    def to_slices(t: torch.Tensor) -> torch.Tensor:
        return as_volume(t).permute(0, 2, 1, 3, 4).reshape(b * d, 1, h, w)

    def to_volume(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, d, 1, h, w).permute(0, 2, 1, 3, 4)

    with torch.no_grad():
        f01, r01 = metric._to_unit(fv), metric._to_unit(rv)
        used = torch.ones(b, d, dtype=torch.bool, device=fv.device) if slices_in else metric.brain_slices(r01)
        idx = used.flatten().nonzero().squeeze(1)
        res = metric.score(
            to_slices(fake)[idx],
            to_slices(real)[idx],
            to_slices(source)[idx] if source is not None else None,
            to_slices(mask)[idx] if mask is not None else None,
        )
        out_dtype = res.score.dtype

        def scatter(values: torch.Tensor, fill: float) -> torch.Tensor:
            full = torch.full((b * d,), fill, dtype=values.dtype, device=values.device)
            return full.index_put((idx,), values).view(b, d)

        weights = used.to(out_dtype)
        n_used = weights.sum(dim=1)

        def volume_mean(values: torch.Tensor) -> torch.Tensor:
            return (scatter(values, 0.0) * weights).sum(dim=1) / n_used

        def neg_log(q: torch.Tensor) -> torch.Tensor:
            return 0.0 - torch.log(q.clamp_min(_TINY))  # 0.0 - x: no negative zero for q == 1

        slice_branches = {k: scatter(res.branches[k], float("nan")) for k in BRANCHES}
        branches = {k: volume_mean(res.branches[k]) for k in BRANCHES}
        lesion = torch.zeros((b * d, 1, h, w), dtype=torch.bool, device=fv.device)
        lesion[idx] = res.lesion_mask
        has_lesion = torch.zeros(b * d, dtype=torch.bool, device=fv.device)
        has_lesion[idx] = res.has_lesion

        error = (f01 - r01).abs()
        kerr = torch.log((fft2c(f01) - fft2c(r01)).abs() + KSPACE_ERROR_EPS)

    def back(t: torch.Tensor) -> torch.Tensor:
        return t.squeeze(2) if slices_in else t

    return KCrossExplanation(
        score=volume_mean(res.score),
        branches=branches,
        contributions={k: neg_log(v) for k, v in branches.items()},
        slice_scores=scatter(res.score, float("nan")),
        slice_branches=slice_branches,
        slice_contributions={k: scatter(neg_log(res.branches[k]), float("nan")) for k in BRANCHES},
        slice_used=used,
        has_lesion=has_lesion.view(b, d),
        lesion_mask=back(to_volume(lesion)),
        error_map=back(error.to(out_dtype)),
        kspace_error=back(kerr.to(out_dtype)),
        combine=metric.combine,
        version=dict(res.version),
    )
