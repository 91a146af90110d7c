"""Multi-scale structural similarity (MS-SSIM).

Wang, Simoncelli, Bovik, "Multiscale structural similarity for image quality assessment", Asilomar
Conference on Signals, Systems and Computers, 2003. Five scales with the paper's exponents
(0.0448, 0.2856, 0.3001, 0.2363, 0.1333); contrast-structure at the first four scales, full SSIM at
the coarsest; between scales a 2x2 (2x2x2 in 3-D) box filter with symmetric padding and
decimation, as in the authors' ``msssim.m``.
"""

from __future__ import annotations

from collections.abc import Sequence

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
from ..errors import ConfigError
from ._utils import check_min_size, compute_dtype, gaussian_kernel1d, matlab_box_downsample
from .ssim import _check_window, ssim_maps

__all__ = ["ms_ssim", "MSSSIM", "DEFAULT_WEIGHTS", "ms_ssim_min_size"]

DEFAULT_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

# Per-scale means are clamped to this floor before the fractional powers: a negative mean
# contrast-structure (anti-correlated images) would otherwise give NaN, and 0 ** w has an
# infinite derivative.
_FLOOR = 1e-8


def ms_ssim_min_size(win_size: int, levels: int) -> int:
    """Smallest spatial size whose coarsest scale, ``ceil(n / 2**(levels-1))``, fits the window."""
    return (win_size - 1) * 2 ** (levels - 1) + 1


def _check_weights(weights: Sequence[float]) -> tuple[float, ...]:
    w = tuple(float(v) for v in weights)
    if len(w) < 1 or any(not v >= 0 for v in w):
        raise ConfigError(f"weights must be a non-empty sequence of non-negative numbers, got {weights!r}")
    return w


def _ms_ssim_values(
    x: torch.Tensor,
    y: torch.Tensor,
    kernel: torch.Tensor,
    weights: tuple[float, ...],
    data_range: float,
    k1: float,
    k2: float,
) -> torch.Tensor:
    win, levels = kernel.numel(), len(weights)
    check_min_size(
        x, ms_ssim_min_size(win, levels), "MS-SSIM",
        f"{levels} scales with a Gaussian window of {win} at the coarsest scale",
    )
    dtype = compute_dtype(x)
    x, y = x.to(dtype), y.to(dtype)
    w = torch.tensor(weights, dtype=dtype, device=x.device)
    per_scale = []
    for level in range(levels):
        ssim_map, cs_map = ssim_maps(x, y, kernel, data_range, k1, k2)
        last = level == levels - 1
        per_scale.append((ssim_map if last else cs_map).flatten(2).mean(-1))  # (B, C)
        if not last:
            x, y = matlab_box_downsample(x, 2), matlab_box_downsample(y, 2)
    values = torch.stack(per_scale, dim=-1).clamp_min(_FLOOR)  # (B, C, levels)
    return torch.prod(values**w, dim=-1).mean(dim=1)


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: DataRange = 1.0,
    reduction: str = "none",
    *,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    weights: Sequence[float] = DEFAULT_WEIGHTS,
) -> torch.Tensor:
    """MS-SSIM between ``x`` (test) and ``y`` (reference).

    Args:
        x, y: (B, C, H, W) or (B, C, D, H, W) in ``[0, data_range]``. Every spatial dimension must be
            at least ``(win_size - 1) * 2**(len(weights) - 1) + 1`` (161 for the defaults); for
            small volumes pass fewer ``weights`` (scales) or a smaller ``win_size``.
        weights: one exponent per scale, finest first.
    Returns:
        MS-SSIM in (0, 1], per sample (channels averaged). Per-scale means below 1e-8 are
        clamped to 1e-8 (the reference would return a complex number there).
    """
    _check_window(win_size, sigma)
    w = _check_weights(weights)
    check_reduction(reduction)
    x, y, dr = prepare_image_pair(x, y, data_range=data_range)
    kernel = gaussian_kernel1d(win_size, sigma, compute_dtype(x)).to(x.device)
    return reduce(_ms_ssim_values(x, y, kernel, w, dr, k1, k2), reduction)


class MSSSIM(nn.Module):
    """Module form of :func:`ms_ssim`; the Gaussian window is a buffer built once."""

    higher_is_better = True
    is_differentiable = True
    kernel: torch.Tensor

    def __init__(
        self,
        data_range: DataRange = 1.0,
        reduction: str = "none",
        win_size: int = 11,
        sigma: float = 1.5,
        k1: float = 0.01,
        k2: float = 0.03,
        weights: Sequence[float] = DEFAULT_WEIGHTS,
    ) -> None:
        super().__init__()
        _check_window(win_size, sigma)
        self.weights = _check_weights(weights)
        self.reduction = check_reduction(reduction)
        self.data_range = check_data_range(data_range)
        self.k1, self.k2 = k1, k2
        self.register_buffer("kernel", gaussian_kernel1d(win_size, sigma, torch.float64), persistent=False)

    @property
    def min_size(self) -> int:
        return ms_ssim_min_size(self.kernel.numel(), len(self.weights))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (B, C, H, W) or (B, C, D, H, W) in [0, data_range] -> (B,) or scalar."""
        x, y, dr = prepare_image_pair(x, y, data_range=self.data_range)
        kernel = self.kernel.to(compute_dtype(x))
        return reduce(_ms_ssim_values(x, y, kernel, self.weights, dr, self.k1, self.k2), self.reduction)

    def extra_repr(self) -> str:
        return f"data_range={format_data_range(self.data_range)}, win_size={self.kernel.numel()}, levels={len(self.weights)}"
