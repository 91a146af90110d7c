"""Baseline full-reference metrics: MAE, PSNR, SSIM, MS-SSIM, NLPD, GMSD, LPIPS, DISTS.

Each metric is a plain function (``ssim(x, y, data_range=1.0, reduction="none", ...)``) and an
``nn.Module`` (``SSIM(data_range=1.0, ...)(x, y)``) with class attributes ``higher_is_better`` and
``is_differentiable``. Inputs are (B, C, H, W); MAE, PSNR, SSIM and MS-SSIM also take
(B, C, D, H, W). Outputs are per-sample values of shape (B,) unless a reduction is asked for.
``data_range`` is a number R (inputs in ``[0, R]``) or a pair ``(low, high)`` such as ``(-1, 1)``;
a pair not starting at 0 is mapped once, on entry, to [0, 1] (``_checks.prepare_image_pair``), so
values equal those of the images rescaled to [0, 1] with ``data_range=1``.
See ``docs/baselines.md`` for references, conventions and measured agreement with the reference
implementations. Importing this package loads no weights: LPIPS and DISTS read theirs when built
(ImageNet backbones found locally or downloaded on first use; :func:`fetch_backbones` pre-fetches).

The functions share their names with their modules (``baselines.ssim`` is the function here; the
module is ``kcross_metric.baselines.ssim`` in ``sys.modules``), as in torchmetrics.functional.
"""

from __future__ import annotations

from ._backbones import backbone_available, fetch_backbones
from ._utils import rgb_to_gray
from .dists import DISTS, dists
from .gmsd import GMSD, gmsd
from .lpips import LPIPSVGG, LPIPSAlex, lpips
from .mae import MAE, mae
from .ms_ssim import MSSSIM, ms_ssim
from .nlpd import NLPD, nlpd
from .psnr import PSNR, PSNR_MAX_DB, psnr
from .ssim import SSIM, ssim

__all__ = [
    "MAE", "mae",
    "PSNR", "psnr", "PSNR_MAX_DB",
    "SSIM", "ssim",
    "MSSSIM", "ms_ssim",
    "NLPD", "nlpd",
    "GMSD", "gmsd",
    "LPIPSAlex", "LPIPSVGG", "lpips",
    "DISTS", "dists",
    "rgb_to_gray",
    "backbone_available", "fetch_backbones",
]
