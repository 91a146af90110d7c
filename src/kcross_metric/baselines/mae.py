"""Mean absolute error (MAE, L1 distance), the error measure reported with NIRPS and most
image-synthesis papers."""

from __future__ import annotations

import torch
from torch import nn

from .._util.checks import (
    DataRange,
    check_data_range,
    check_reduction,
    format_data_range,
    prepare_image_pair,
    reduce,
)
from ._utils import compute_dtype

__all__ = ["mae", "MAE"]


def _mae_values(x: torch.Tensor, y: torch.Tensor, data_range: float, normalize: bool) -> torch.Tensor:
    dtype = compute_dtype(x)
    values = (x.to(dtype) - y.to(dtype)).abs().flatten(1).mean(dim=1)
    return values / data_range if normalize else values


def mae(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: DataRange = 1.0,
    reduction: str = "none",
    *,
    normalize: bool = False,
) -> torch.Tensor:
    """Mean absolute error between ``x`` (test) and ``y`` (reference).

    Args:
        x, y: (B, C, H, W) or (B, C, D, H, W) in ``[0, data_range]`` (or ``[low, high]``).
        data_range: a number R for ``[0, R]``, used to validate the inputs (and to normalise), or a
            pair ``(low, high)`` such as ``(-1, 1)``: the inputs are then mapped to [0, 1] first.
        normalize: divide by ``data_range`` so the value lies in [0, 1] whatever the scale.
    Returns:
        Mean of ``|x - y|`` over channels and voxels: (B,) for ``reduction="none"``, in the
        intensity units of the inputs (0 for identical images; for a ``(low, high)`` range not
        starting at 0, in units of the images mapped to [0, 1], i.e. divided by ``high - low``),
        else a scalar.
    """
    check_reduction(reduction)
    x, y, dr = prepare_image_pair(x, y, data_range=data_range)
    return reduce(_mae_values(x, y, dr, normalize), reduction)


class MAE(nn.Module):
    """Module form of :func:`mae`."""

    higher_is_better = False
    is_differentiable = True

    def __init__(self, data_range: DataRange = 1.0, reduction: str = "none", normalize: bool = False) -> None:
        super().__init__()
        self.data_range = check_data_range(data_range)
        self.reduction = check_reduction(reduction)
        self.normalize = normalize

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (B, C, H, W) or (B, C, D, H, W) in [0, data_range] -> (B,) or scalar."""
        x, y, dr = prepare_image_pair(x, y, data_range=self.data_range)
        return reduce(_mae_values(x, y, dr, self.normalize), self.reduction)

    def extra_repr(self) -> str:
        return f"data_range={format_data_range(self.data_range)}, normalize={self.normalize}"
