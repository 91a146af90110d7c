"""Normalized Laplacian pyramid distance (NLPD).

Laparra, Ballé, Berardino, Simoncelli, "Perceptual image quality assessment using a normalized
Laplacian pyramid", Human Vision and Electronic Imaging (IS&T Electronic Imaging), 2016.
Follows the authors' ``NLP_dist.m``: images scaled to [0, 1]; six-level Laplacian pyramid with
the Burt-Adelson 5-tap filter (symmetric padding when reducing, replicate padding and zero
insertion when expanding); each band divided by ``sigma_k + |band| * F_k`` with the divisive-
normalisation filters and constants learned on the McGill data set; distance = mean over bands of
the root-mean-square difference of the normalised bands.
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
from ._utils import check_min_size, compute_dtype, symmetric_pad

__all__ = ["nlpd", "NLPD"]

N_LEVELS = 6
_MIN_SIZE = 2 ** (N_LEVELS - 1)
_BURT_ADELSON = (0.05, 0.25, 0.4, 0.25, 0.05)
# Divisive-normalisation constants and filters of NLP_dist.m (learned on McGill). The filters are
# 5x5 with their non-zero taps in the central 3x3, except for an extra tap in band 1.
_SIGMAS = (0.0248, 0.0185, 0.0179, 0.0191, 0.0220, 0.2782)
_DN_TAPS: tuple[dict[tuple[int, int], float], ...] = (
    {(1, 2): 0.1011, (2, 1): 0.1493, (2, 3): 0.1460, (2, 4): 0.0072, (3, 2): 0.1015},
    {(1, 2): 0.0757, (2, 1): 0.1986, (2, 3): 0.1846, (3, 2): 0.0837},
    {(1, 2): 0.0477, (2, 1): 0.2138, (2, 3): 0.2243, (3, 2): 0.0467},
    {(2, 1): 0.2503, (2, 3): 0.2616},
    {(2, 1): 0.2598, (2, 3): 0.2552},
    {(2, 1): 0.2215, (2, 3): 0.0717},
)
# Keeps sqrt differentiable for identical images (value offset < 1e-10).
_EPS = 1e-20


def _build_filters() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    f = torch.tensor(_BURT_ADELSON, dtype=torch.float64)
    lowpass = torch.outer(f, f).reshape(1, 1, 5, 5)
    dn = torch.zeros(N_LEVELS, 1, 1, 5, 5, dtype=torch.float64)
    for level, taps in enumerate(_DN_TAPS):
        for (r, c), v in taps.items():
            dn[level, 0, 0, r, c] = v
    # Matlab's conv2 is a true convolution: rotate by 180 degrees for F.conv2d (a correlation).
    dn = torch.flip(dn, dims=(-2, -1))
    sigmas = torch.tensor(_SIGMAS, dtype=torch.float64)
    return lowpass, dn, sigmas


def _laplacian_pyramid(img: torch.Tensor, lowpass: torch.Tensor) -> list[torch.Tensor]:
    """Bands of ``laplacian_pyramid_s`` for (N, 1, H, W), finest first, low-pass residual last."""
    bands = []
    j = img
    for _ in range(N_LEVELS - 1):
        low = F.conv2d(symmetric_pad(j, [(2, 2), (2, 2)]), lowpass)[..., ::2, ::2]
        odd_h, odd_w = 2 * low.shape[-2] - j.shape[-2], 2 * low.shape[-1] - j.shape[-1]
        padded = F.pad(low, (1, 1, 1, 1), mode="replicate")
        n, c, h, w = padded.shape
        up = padded.new_zeros(n, c, 2 * h, 2 * w)
        up[..., ::2, ::2] = 4.0 * padded
        up = F.conv2d(up, lowpass, padding=2)[..., 2 : 2 * h - 2 - odd_h, 2 : 2 * w - 2 - odd_w]
        bands.append(j - up)
        j = low
    bands.append(j)
    return bands


def _normalized_pyramid(img: torch.Tensor, lowpass: torch.Tensor, dn: torch.Tensor,
                        sigmas: torch.Tensor) -> list[torch.Tensor]:
    return [
        band / (sigmas[k] + F.conv2d(band.abs(), dn[k], padding=2))
        for k, band in enumerate(_laplacian_pyramid(img, lowpass))
    ]


def _nlpd_values(x: torch.Tensor, y: torch.Tensor, data_range: float, lowpass: torch.Tensor,
                 dn: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    check_min_size(x, _MIN_SIZE, "NLPD", f"{N_LEVELS}-level Laplacian pyramid")
    dtype = compute_dtype(x)
    b, c, h, w = x.shape
    lowpass, dn, sigmas = lowpass.to(x.device, dtype), dn.to(x.device, dtype), sigmas.to(x.device, dtype)
    both = torch.cat([x, y], dim=0).to(dtype).reshape(2 * b * c, 1, h, w) / data_range
    rms = []
    for band in _normalized_pyramid(both, lowpass, dn, sigmas):
        diff = (band[: b * c] - band[b * c :]).reshape(b, -1)
        rms.append(torch.sqrt(diff.pow(2).mean(dim=1) + _EPS))
    return torch.stack(rms, dim=1).mean(dim=1)


def nlpd(x: torch.Tensor, y: torch.Tensor, data_range: DataRange = 1.0, reduction: str = "none") -> torch.Tensor:
    """NLPD between ``x`` (test) and ``y`` (reference).

    Args:
        x, y: (B, C, H, W) in ``[0, data_range]``, H, W >= 32. Each channel gets its own pyramid;
            the RMS of each band is taken over all channels of a sample.
    Returns:
        NLPD >= 0 (0 for identical images up to 1e-10; lower is better).
    """
    check_reduction(reduction)
    x, y, dr = prepare_image_pair(x, y, data_range=data_range, ndims=(4,))
    return reduce(_nlpd_values(x, y, dr, *_build_filters()), reduction)


class NLPD(nn.Module):
    """Module form of :func:`nlpd`; pyramid and normalisation filters are buffers built once."""

    higher_is_better = False
    is_differentiable = True
    lowpass: torch.Tensor
    dn_filters: torch.Tensor
    sigmas: torch.Tensor

    def __init__(self, data_range: DataRange = 1.0, reduction: str = "none") -> None:
        super().__init__()
        self.data_range = check_data_range(data_range)
        self.reduction = check_reduction(reduction)
        lowpass, dn, sigmas = _build_filters()
        self.register_buffer("lowpass", lowpass, persistent=False)
        self.register_buffer("dn_filters", dn, persistent=False)
        self.register_buffer("sigmas", sigmas, persistent=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (B, C, H, W) in [0, data_range] -> (B,) or scalar."""
        x, y, dr = prepare_image_pair(x, y, data_range=self.data_range, ndims=(4,))
        return reduce(_nlpd_values(x, y, dr, self.lowpass, self.dn_filters, self.sigmas), self.reduction)

    def extra_repr(self) -> str:
        return f"data_range={format_data_range(self.data_range)}"
