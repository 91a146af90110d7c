"""Deep image structure and texture similarity (DISTS).

Ding, Ma, Wang, Simoncelli, "Image quality assessment: unifying structure and texture similarity",
IEEE TPAMI 44(5), 2022. ImageNet VGG16 with its max-pooling replaced by L2 pooling; on the input
image and five ReLU stages, per-channel global means (texture) and covariances (structure) are
compared SSIM-style and combined with the learned weights alpha, beta: ``1 - sum(alpha S1 + beta S2)``.

Grayscale policy (MR images): as for LPIPS, a 1-channel input is divided by ``data_range`` (fixed
scale, not min-max) and repeated to 3 channels, then ImageNet mean/std normalisation is applied as
in the reference ``DISTS_pytorch``. Images are used at their own size (no resizing).
"""

from __future__ import annotations

import os
from pathlib import Path

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
from ._backbones import (
    DISTS_CHANNELS,
    DISTS_FILE,
    FeatureTaps,
    L2Pooling,
    freeze,
    load_backbone_state,
    load_dists_state,
    vgg16_features,
)
from ._utils import check_min_size
from .lpips import to_unit_rgb

__all__ = ["dists", "DISTS"]

_TAPS = (3, 8, 15, 22, 29)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_C1 = 1e-6
_C2 = 1e-6
_MIN_SIZE = 16


class DISTS(nn.Module):
    """DISTS distance, (B, 1|3, H, W) in [0, data_range] -> (B,), 0 for identical images.

    Args:
        weights_path: VGG16 ``.npz`` or torchvision ``.pth`` file, or a folder holding one (see
            ``_backbones``; default: found or downloaded on first use); when that folder also holds
            ``dists_alpha_beta.npz`` and ``alpha_beta_path`` is not given, alpha/beta come from it.
        alpha_beta_path: DISTS ``alpha``/``beta`` ``.npz`` file or its folder (default: the values
            shipped in the package).
    """

    higher_is_better = False
    is_differentiable = True
    min_size = _MIN_SIZE
    alpha: torch.Tensor
    beta: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        data_range: DataRange = 1.0,
        reduction: str = "none",
        weights_path: str | os.PathLike[str] | None = None,
        alpha_beta_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        self.data_range = check_data_range(data_range)
        self.reduction = check_reduction(reduction)
        self.backbone = FeatureTaps(vgg16_features(pool=L2Pooling), _TAPS)
        state = load_backbone_state("vgg", weights_path, heads=False)
        self.backbone.load_state_dict(state, strict=True)
        if alpha_beta_path is None and weights_path is not None:
            p = Path(weights_path).expanduser()
            folder = p if p.is_dir() else p.parent
            alpha_beta_path = folder if (folder / DISTS_FILE).is_file() else None
        ab = load_dists_state(alpha_beta_path)
        total = ab["alpha"].sum() + ab["beta"].sum()
        self.register_buffer("alpha", (ab["alpha"] / total).flatten(), persistent=False)
        self.register_buffer("beta", (ab["beta"] / total).flatten(), persistent=False)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        freeze(self)

    def train(self, mode: bool = True) -> DISTS:
        """A frozen metric: always stays in eval mode."""
        return super().train(False)

    def _values(self, x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
        check_min_size(x, _MIN_SIZE, "DISTS", "five L2-pooled VGG16 stages")
        dtype = self.mean.dtype
        b = x.shape[0]
        both = torch.cat([to_unit_rgb(x.to(dtype), data_range), to_unit_rgb(y.to(dtype), data_range)])
        feats = [both] + self.backbone((both - self.mean) / self.std)
        alphas = torch.split(self.alpha, list(DISTS_CHANNELS))
        betas = torch.split(self.beta, list(DISTS_CHANNELS))
        texture = both.new_zeros(b)
        structure = both.new_zeros(b)
        for f, a, bt in zip(feats, alphas, betas, strict=True):
            fx, fy = f[:b].flatten(2), f[b:].flatten(2)  # (B, C, N)
            mx, my = fx.mean(-1), fy.mean(-1)
            vx = (fx - mx.unsqueeze(-1)).pow(2).mean(-1)
            vy = (fy - my.unsqueeze(-1)).pow(2).mean(-1)
            # Centred product, not E[xy] - E[x]E[y] as in DISTS_pytorch: the same value up to
            # rounding, but cov == var exactly for identical inputs, so flat (constant) images
            # score 0 instead of up to ~0.005 of cancellation error.
            cov = ((fx - mx.unsqueeze(-1)) * (fy - my.unsqueeze(-1))).mean(-1)
            s1 = (2 * mx * my + _C1) / (mx.pow(2) + my.pow(2) + _C1)
            s2 = (2 * cov + _C2) / (vx + vy + _C2)
            texture = texture + (s1 * a).sum(-1)
            structure = structure + (s2 * bt).sum(-1)
        return 1.0 - (texture + structure)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (B, 1|3, H, W) in [0, data_range] -> (B,) or scalar."""
        x, y, dr = prepare_image_pair(x, y, data_range=self.data_range, ndims=(4,))
        return reduce(self._values(x, y, dr), self.reduction)

    def extra_repr(self) -> str:
        return f"data_range={format_data_range(self.data_range)}"


_CACHE: dict[tuple[str | None, str | None, str], DISTS] = {}


def dists(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: DataRange = 1.0,
    reduction: str = "none",
    *,
    weights_path: str | os.PathLike[str] | None = None,
    alpha_beta_path: str | os.PathLike[str] | None = None,
) -> torch.Tensor:
    """DISTS between ``x`` and ``y`` (B, 1|3, H, W) in ``[0, data_range]``; the network for
    ``(weights_path, alpha_beta_path, device)`` is built once and cached."""
    check_reduction(reduction)
    x, y, dr = prepare_image_pair(x, y, data_range=data_range, ndims=(4,))
    key = (
        None if weights_path is None else str(weights_path),
        None if alpha_beta_path is None else str(alpha_beta_path),
        str(x.device),
    )
    if key not in _CACHE:
        _CACHE[key] = DISTS(weights_path=weights_path, alpha_beta_path=alpha_beta_path).to(x.device)
    return reduce(_CACHE[key]._values(x, y, dr), reduction)
