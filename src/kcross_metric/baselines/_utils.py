"""Filtering, padding and colour helpers shared by the classical baselines.

Everything works on tensors of shape (B, C, *spatial) with 2 or 3 spatial dimensions and treats
channels independently (each channel is filtered as its own image). Padding and downsampling follow
Matlab's ``imfilter``/``conv2`` conventions because the reference implementations of SSIM, MS-SSIM,
GMSD and NLPD are Matlab code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._util.filters import gaussian_kernel1d
from ..errors import ChannelError, ConfigError, ImageTooSmallError

__all__ = [
    "compute_dtype",
    "gaussian_kernel1d",
    "separable_filter",
    "symmetric_pad",
    "matlab_round",
    "matlab_box_downsample",
    "check_min_size",
    "rgb_to_gray",
]

# Matlab's rgb2gray weights (the inverse of NTSC's YIQ transform, first row).
_RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)
# ITU-R BT.601 luma as in Matlab's rgb2ycbcr, Y in [16, 235] for 8-bit input.
_RGB2Y_BT601 = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64; float16/bfloat16/float32 are computed in float32 (SSIM-type sums
    lose too much precision in half precision)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def separable_filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """'valid' correlation of every channel of ``x`` (B, C, *spatial) with the separable kernel
    ``kernel`` (1-D, same along every spatial axis). Each spatial size shrinks by ``len(kernel) - 1``.
    """
    b, c, *spatial = x.shape
    nd = len(spatial)
    out = x.reshape(b * c, 1, *spatial)
    conv = F.conv2d if nd == 2 else F.conv3d
    k = kernel.to(dtype=x.dtype, device=x.device)
    for axis in range(nd):
        shape = [1, 1] + [1] * nd
        shape[2 + axis] = k.numel()
        out = conv(out, k.reshape(shape))
    return out.reshape(b, c, *out.shape[2:])


def symmetric_pad(x: torch.Tensor, pads: list[tuple[int, int]]) -> torch.Tensor:
    """Mirror padding that repeats the edge sample (Matlab/numpy 'symmetric'); ``pads`` gives
    (before, after) for each spatial axis. Works for pads larger than the image."""
    out = x
    for axis, (before, after) in enumerate(pads):
        if before == 0 and after == 0:
            continue
        dim = 2 + axis
        n = out.shape[dim]
        idx = torch.arange(-before, n + after, device=x.device) % (2 * n)
        idx = torch.where(idx < n, idx, 2 * n - 1 - idx)
        out = out.index_select(dim, idx)
    return out


def matlab_round(value: float) -> int:
    """Round half away from zero, as Matlab's ``round`` (Python rounds half to even)."""
    return int(math.floor(value + 0.5)) if value >= 0 else -int(math.floor(-value + 0.5))


def matlab_box_downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``imfilter(x, ones(f)/f^d, 'symmetric', 'same')`` followed by ``x(1:f:end, ...)``.

    Matlab anchors an even-sized kernel at its element ``floor((f+1)/2)``, so the box covers
    offsets ``[1-c, f-c]`` around each kept sample. Output size is ``ceil(n / f)`` per axis.
    """
    if factor <= 1:
        return x
    nd = x.dim() - 2
    centre = (factor + 1) // 2  # 1-based anchor
    before, after = centre - 1, factor - centre
    padded = symmetric_pad(x, [(before, after)] * nd)
    pool = F.avg_pool2d if nd == 2 else F.avg_pool3d
    # Window k covers original samples [k*f - before, k*f + after]: ceil(n / f) windows per axis.
    return pool(padded, kernel_size=factor, stride=factor)


def check_min_size(x: torch.Tensor, min_size: int, metric: str, why: str) -> None:
    """Raise :class:`ImageTooSmallError` if any spatial dimension of ``x`` is below ``min_size``."""
    spatial = tuple(x.shape[2:])
    if min(spatial) < min_size:
        raise ImageTooSmallError(
            f"{metric} needs every spatial dimension >= {min_size} ({why}), got spatial size {spatial}"
        )


def rgb_to_gray(x: torch.Tensor, data_range: float = 1.0, *, standard: str = "rgb2gray",
                quantize: bool = False) -> torch.Tensor:
    """Luminance of an RGB batch (B, 3, H, W) in ``[0, data_range]`` -> (B, 1, H, W).

    ``standard="rgb2gray"``: Matlab ``rgb2gray`` (0.2989 R + 0.5870 G + 0.1140 B), range kept.
    ``standard="ycbcr"``: Matlab ``rgb2ycbcr`` luma, ``16/255 + (65.481 R + 128.553 G + 24.966 B)/255``
    in units of ``data_range`` (so it lies in [16/255, 235/255] * data_range).
    ``quantize=True`` rounds to the 256 levels of an 8-bit image, as Matlab does for uint8 input
    (the reference scores of the calibration set were computed that way).
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise ChannelError(f"rgb_to_gray expects (B,3,H,W) RGB input, got shape {tuple(x.shape)}")
    if standard == "rgb2gray":
        w = torch.tensor(_RGB2GRAY, dtype=x.dtype, device=x.device)
        offset = 0.0
    elif standard == "ycbcr":
        w = torch.tensor(_RGB2Y_BT601, dtype=x.dtype, device=x.device)
        offset = 16.0 / 255.0 * data_range
    else:
        raise ConfigError(f"standard must be 'rgb2gray' or 'ycbcr', got {standard!r}")
    y = (x * w.view(1, 3, 1, 1)).sum(dim=1, keepdim=True) + offset
    if quantize:
        scale = 255.0 / data_range
        # Straight-through rounding keeps the result differentiable.
        y = y + (torch.round(y * scale) / scale - y).detach()
    return y
