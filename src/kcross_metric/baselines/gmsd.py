"""Gradient magnitude similarity deviation (GMSD).

Xue, Zhang, Mou, Bovik, "Gradient magnitude similarity deviation: a highly efficient perceptual
image quality index", IEEE TIP 23(2), 2014. Follows the authors' ``GMSD.m``: images on a 0-255
scale, 2x2 mean filter and decimation by 2, Prewitt gradients (zero padding, 'same' size),
similarity map with T = 170, score = standard deviation (N-1 normalisation) of the map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._util.checks import (
    DataRange,
    check_data_range,
    check_reduction,
    format_data_range,
    prepare_image_pair,
    reduce,
)
from ._utils import check_min_size, compute_dtype

__all__ = ["gmsd", "GMSD", "GMSD_T"]

#: Stability constant of the paper for images on a 0-255 scale.
GMSD_T = 170.0
# Tiny offsets (on the 0-255 scale) that keep sqrt differentiable at 0: flat regions and
# identical images otherwise give NaN gradients. Their effect on the value is < 1e-10.
_EPS_GRAD = 1e-12
_EPS_STD = 1e-20
_MIN_SIZE = 4


def _prewitt() -> torch.Tensor:
    dx = torch.tensor([[1.0, 0.0, -1.0]] * 3, dtype=torch.float64) / 3.0
    return torch.stack([dx, dx.t()]).unsqueeze(1)  # (2, 1, 3, 3)


def _gmsd_values(x: torch.Tensor, y: torch.Tensor, data_range: float, kernel: torch.Tensor, t: float) -> torch.Tensor:
    check_min_size(x, _MIN_SIZE, "GMSD", "2x decimation then a 3x3 gradient")
    dtype = compute_dtype(x)
    b, c, h, w = x.shape
    scale = 255.0 / data_range
    both = torch.cat([x, y], dim=0).to(dtype).reshape(2 * b * c, 1, h, w) * scale
    # conv2(., ones(2)/4, 'same') then (1:2:end): each kept sample averages a 2x2 block with the
    # zero padding Matlab adds after the last row/column of an odd-sized image.
    both = F.pad(both, (0, w % 2, 0, h % 2))
    both = F.avg_pool2d(both, 2)
    grad = F.conv2d(both, kernel.to(dtype=dtype, device=x.device), padding=1)
    mag = torch.sqrt(grad.pow(2).sum(dim=1) + _EPS_GRAD)  # (2BC, h', w')
    m1, m2 = mag[: b * c], mag[b * c :]
    gms = (2.0 * m1 * m2 + t) / (m1.pow(2) + m2.pow(2) + t)
    gms = gms.reshape(b, -1)  # channels of a sample pooled together
    var = gms.var(dim=1, unbiased=True)
    return torch.sqrt(var + _EPS_STD)


def gmsd(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: DataRange = 1.0,
    reduction: str = "none",
    *,
    t: float = GMSD_T,
) -> torch.Tensor:
    """GMSD between ``x`` (test) and ``y`` (reference).

    Args:
        x, y: (B, C, H, W) in ``[0, data_range]``, H, W >= 4; inputs are rescaled to 0-255 so
            ``t`` keeps the paper's meaning. Channels are filtered separately and their
            similarity maps pooled into one deviation.
        t: stability constant on the 0-255 scale.
    Returns:
        GMSD >= 0 (0 for identical images; lower is better).
    """
    check_reduction(reduction)
    x, y, dr = prepare_image_pair(x, y, data_range=data_range, ndims=(4,))
    return reduce(_gmsd_values(x, y, dr, _prewitt(), t), reduction)


class GMSD(nn.Module):
    """Module form of :func:`gmsd`; the Prewitt kernels are a buffer built once."""

    higher_is_better = False
    is_differentiable = True
    kernel: torch.Tensor

    def __init__(self, data_range: DataRange = 1.0, reduction: str = "none", t: float = GMSD_T) -> None:
        super().__init__()
        self.data_range = check_data_range(data_range)
        self.reduction = check_reduction(reduction)
        self.t = float(t)
        self.register_buffer("kernel", _prewitt(), persistent=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (B, C, H, W) in [0, data_range] -> (B,) or scalar."""
        x, y, dr = prepare_image_pair(x, y, data_range=self.data_range, ndims=(4,))
        return reduce(_gmsd_values(x, y, dr, self.kernel, self.t), self.reduction)

    def extra_repr(self) -> str:
        return f"data_range={format_data_range(self.data_range)}, t={self.t:g}"
