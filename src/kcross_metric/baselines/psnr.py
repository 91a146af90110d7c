"""Peak signal-to-noise ratio (PSNR) in dB, ``10 log10(data_range^2 / MSE)``.

Identical images have MSE = 0 and an infinite PSNR in theory. Here the MSE is floored at
``MSE_FLOOR * data_range^2`` (1e-10), so PSNR is capped at :data:`PSNR_MAX_DB` = 100 dB: the value
stays finite (batch means and rankings remain usable) and differentiable, and no real pair of 8- to
16-bit images comes near the cap (one grey level of error in 65535 gives about 96 dB).
"""

from __future__ import annotations

import math

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

__all__ = ["psnr", "PSNR", "MSE_FLOOR", "PSNR_MAX_DB"]

MSE_FLOOR = 1e-10
PSNR_MAX_DB = -10.0 * math.log10(MSE_FLOOR)


def _psnr_values(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    dtype = compute_dtype(x)
    mse = (x.to(dtype) - y.to(dtype)).pow(2).flatten(1).mean(dim=1)
    # Work on the normalised MSE so the floor and the log are scale-free.
    return -10.0 * torch.log10((mse / data_range**2).clamp_min(MSE_FLOOR))


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: DataRange = 1.0, reduction: str = "none") -> torch.Tensor:
    """PSNR between ``x`` (test) and ``y`` (reference).

    Args:
        x, y: (B, C, H, W) or (B, C, D, H, W) in ``[0, data_range]``; the MSE is taken over all
            channels and voxels of a sample (for RGB this is the usual colour PSNR).
        data_range: the peak value L in ``10 log10(L^2 / MSE)``; never inferred from the data.
    Returns:
        PSNR in dB, in [0, 100] for inputs in range (100 dB = identical images, see module doc).
    """
    check_reduction(reduction)
    x, y, dr = prepare_image_pair(x, y, data_range=data_range)
    return reduce(_psnr_values(x, y, dr), reduction)


class PSNR(nn.Module):
    """Module form of :func:`psnr`."""

    higher_is_better = True
    is_differentiable = True

    def __init__(self, data_range: DataRange = 1.0, reduction: str = "none") -> None:
        super().__init__()
        self.data_range = check_data_range(data_range)
        self.reduction = check_reduction(reduction)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (B, C, H, W) or (B, C, D, H, W) in [0, data_range] -> (B,) dB or scalar."""
        x, y, dr = prepare_image_pair(x, y, data_range=self.data_range)
        return reduce(_psnr_values(x, y, dr), self.reduction)

    def extra_repr(self) -> str:
        return f"data_range={format_data_range(self.data_range)}"
