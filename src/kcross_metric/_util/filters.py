"""The one Gaussian kernel of the package (baselines' SSIM windows, the blur of ``distortions``)."""

from __future__ import annotations

import torch

__all__ = ["gaussian_kernel1d"]


def gaussian_kernel1d(
    size: int,
    sigma: float,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd length ``size`` (Matlab ``fspecial('gaussian')`` per axis).

    Computed in float64 and then cast, so the kernel does not depend on the caller's precision.
    """
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)
