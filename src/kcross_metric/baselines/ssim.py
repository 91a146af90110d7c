"""Structural similarity (SSIM).

Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to structural
similarity", IEEE TIP 13(4), 2004. Gaussian window (11 taps, sigma 1.5), K1 = 0.01, K2 = 0.03,
'valid' filtering (no padding), as in the authors' ``ssim.m``; the window is separable, so 3-D
volumes use the same Gaussian along depth.
"""

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
from ..errors import ConfigError
from ._utils import (
    check_min_size,
    compute_dtype,
    gaussian_kernel1d,
    matlab_box_downsample,
    matlab_round,
    separable_filter,
)

__all__ = ["ssim", "SSIM", "ssim_maps", "matlab_downsample_factor"]


def _check_window(win_size: int, sigma: float) -> None:
    if not isinstance(win_size, int) or win_size < 1 or win_size % 2 == 0:
        raise ConfigError(f"win_size must be a positive odd integer, got {win_size!r}")
    if not sigma > 0:
        raise ConfigError(f"sigma must be > 0, got {sigma!r}")


def matlab_downsample_factor(spatial: tuple[int, ...]) -> int:
    """Downsampling factor of the reference ``ssim.m``: ``max(1, round(min(H, W) / 256))``."""
    return max(1, matlab_round(min(spatial) / 256.0))


def ssim_maps(
    x: torch.Tensor,
    y: torch.Tensor,
    kernel: torch.Tensor,
    data_range: float,
    k1: float = 0.01,
    k2: float = 0.03,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM and contrast-structure maps of validated inputs (no checks; used by SSIM and MS-SSIM).

    Args:
        x, y: (B, C, H, W) or (B, C, D, H, W), any float dtype.
        kernel: 1-D normalised window applied along every spatial axis ('valid').
    Returns:
        ``(ssim_map, cs_map)``, each (B, C, *spatial - len(kernel) + 1).
    """
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    c = x.shape[1]
    stats = separable_filter(torch.cat([x, y, x * x, y * y, x * y], dim=1), kernel)
    mu_x, mu_y, e_xx, e_yy, e_xy = torch.split(stats, c, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    sigma_xx = e_xx - mu_xx
    sigma_yy = e_yy - mu_yy
    sigma_xy = e_xy - mu_xy
    cs_map = (2.0 * sigma_xy + c2) / (sigma_xx + sigma_yy + c2)
    ssim_map = (2.0 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs_map
    return ssim_map, cs_map


def _ssim_values(
    x: torch.Tensor,
    y: torch.Tensor,
    kernel: torch.Tensor,
    data_range: float,
    k1: float,
    k2: float,
    downsample: bool,
) -> torch.Tensor:
    dtype = compute_dtype(x)
    x, y = x.to(dtype), y.to(dtype)
    win = kernel.numel()
    if downsample:
        f = matlab_downsample_factor(tuple(x.shape[2:]))
        x, y = matlab_box_downsample(x, f), matlab_box_downsample(y, f)
        check_min_size(x, win, "SSIM", f"Gaussian window of {win} after the reference downsampling by {f}")
    else:
        check_min_size(x, win, "SSIM", f"Gaussian window of {win}, 'valid' filtering")
    ssim_map, _ = ssim_maps(x, y, kernel, data_range, k1, k2)
    return ssim_map.flatten(2).mean(-1).mean(-1)


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: DataRange = 1.0,
    reduction: str = "none",
    *,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    downsample: bool = False,
) -> torch.Tensor:
    """SSIM between ``x`` (test) and ``y`` (reference).

    Args:
        x, y: (B, C, H, W) or (B, C, D, H, W) in ``[0, data_range]``; channels are scored
            separately and averaged.
        data_range: intensity span of the images (sets C1 = (K1 L)^2, C2 = (K2 L)^2).
        reduction: ``"none"`` -> (B,), ``"mean"`` or ``"sum"`` -> scalar.
        win_size, sigma: Gaussian window (odd size).
        downsample: reproduce the reference ``ssim.m``'s box-filter downsampling by
            ``max(1, round(min(H, W) / 256))`` before filtering (off by default).
    Returns:
        SSIM in [-1, 1] (1 for identical images; constant images give a defined value thanks to
        C1, C2 > 0).
    """
    _check_window(win_size, sigma)
    check_reduction(reduction)
    x, y, dr = prepare_image_pair(x, y, data_range=data_range)
    kernel = gaussian_kernel1d(win_size, sigma, compute_dtype(x)).to(x.device)
    return reduce(_ssim_values(x, y, kernel, dr, k1, k2, downsample), reduction)


class SSIM(nn.Module):
    """Module form of :func:`ssim`; the Gaussian window is a buffer built once."""

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
        downsample: bool = False,
    ) -> None:
        super().__init__()
        _check_window(win_size, sigma)
        self.reduction = check_reduction(reduction)
        self.data_range = check_data_range(data_range)
        self.k1, self.k2, self.downsample = k1, k2, downsample
        self.register_buffer("kernel", gaussian_kernel1d(win_size, sigma, torch.float64), persistent=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (B, C, H, W) or (B, C, D, H, W) in [0, data_range] -> (B,) or scalar."""
        x, y, dr = prepare_image_pair(x, y, data_range=self.data_range)
        kernel = self.kernel.to(compute_dtype(x))
        return reduce(_ssim_values(x, y, kernel, dr, self.k1, self.k2, self.downsample), self.reduction)

    def extra_repr(self) -> str:
        return f"data_range={format_data_range(self.data_range)}, win_size={self.kernel.numel()}, downsample={self.downsample}"
