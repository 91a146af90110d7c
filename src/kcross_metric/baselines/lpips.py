"""Learned perceptual image patch similarity (LPIPS v0.1).

Zhang, Isola, Efros, Shechtman, Wang, "The unreasonable effectiveness of deep features as a
perceptual metric", CVPR 2018. ImageNet AlexNet or VGG16 features (five ReLU stages), unit-normalised
along channels, squared differences weighted by the v0.1 linear heads, averaged over space and
summed over stages.

Grayscale policy (MR images): a 1-channel input in ``[0, data_range]`` is divided by ``data_range``
(a fixed scale, never min-max per batch) and repeated to 3 channels; RGB input is divided by
``data_range`` the same way. The [0, 1] image is then mapped to [-1, 1] and LPIPS's own scaling layer
is applied, exactly as the reference ``lpips`` package does for ``normalize=True`` input.
"""

from __future__ import annotations

import os

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
from ..errors import ChannelError, ConfigError
from ._backbones import FeatureTaps, alexnet_features, freeze, load_backbone_state, vgg16_features
from ._utils import check_min_size

__all__ = ["lpips", "LPIPSAlex", "LPIPSVGG", "to_unit_rgb"]

# Indices of relu1..relu5 in torchvision's feature stacks.
_TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
# Smallest input whose fifth stage is at least 1x1 (AlexNet: conv 11/4 then two 3/2 max-pools).
_MIN_SIZE = {"alex": 31, "vgg": 16}
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10


def to_unit_rgb(x: torch.Tensor, data_range: float) -> torch.Tensor:
    """(B, 1|3, H, W) in [0, data_range] -> (B, 3, H, W) in [0, 1] (grayscale repeated)."""
    if x.shape[1] not in (1, 3):
        raise ChannelError(
            f"ImageNet backbones take 1-channel (grayscale) or 3-channel (RGB) images, got "
            f"{x.shape[1]} channels (shape {tuple(x.shape)})"
        )
    x = x / data_range
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _unit_normalize(f: torch.Tensor) -> torch.Tensor:
    # sqrt(s + eps^2) instead of the reference's sqrt(s) + eps: the same value to ~1e-10, but a
    # finite gradient where a stage's features are all zero.
    return f / torch.sqrt(f.pow(2).sum(dim=1, keepdim=True) + _EPS**2)


class _LPIPS(nn.Module):
    higher_is_better = False
    is_differentiable = True
    net: str = ""
    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(
        self,
        data_range: DataRange = 1.0,
        reduction: str = "none",
        weights_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        self.data_range = check_data_range(data_range)
        self.reduction = check_reduction(reduction)
        features = alexnet_features() if self.net == "alex" else vgg16_features()
        self.backbone = FeatureTaps(features, _TAPS[self.net])
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in _CHANNELS[self.net])
        state = load_backbone_state(self.net, weights_path, heads=True)
        self.backbone.load_state_dict({k: v for k, v in state.items() if k.startswith("features.")}, strict=True)
        self.lins.load_state_dict({f"{i}.weight": state[f"lpips_lin{i}.weight"] for i in range(5)}, strict=True)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        freeze(self)

    def train(self, mode: bool = True) -> _LPIPS:
        """A frozen metric: always stays in eval mode."""
        return super().train(False)

    @property
    def min_size(self) -> int:
        return _MIN_SIZE[self.net]

    def _values(self, x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
        check_min_size(x, self.min_size, f"LPIPS-{self.net}", "five feature stages of the backbone")
        dtype = self.shift.dtype
        b = x.shape[0]
        both = torch.cat([to_unit_rgb(x.to(dtype), data_range), to_unit_rgb(y.to(dtype), data_range)])
        both = (2.0 * both - 1.0 - self.shift) / self.scale
        total = both.new_zeros(b)
        for feat, lin in zip(self.backbone(both), self.lins, strict=True):
            n = _unit_normalize(feat)
            total = total + lin((n[:b] - n[b:]).pow(2)).mean(dim=(1, 2, 3))
        return total

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (B, 1|3, H, W) in [0, data_range] -> LPIPS distance (B,) (0 = identical)."""
        x, y, dr = prepare_image_pair(x, y, data_range=self.data_range, ndims=(4,))
        return reduce(self._values(x, y, dr), self.reduction)

    def extra_repr(self) -> str:
        return f"net={self.net}, version=0.1, data_range={format_data_range(self.data_range)}"


class LPIPSAlex(_LPIPS):
    """LPIPS v0.1 on ImageNet AlexNet (the reference package's default ``net='alex'``)."""

    net = "alex"


class LPIPSVGG(_LPIPS):
    """LPIPS v0.1 on ImageNet VGG16."""

    net = "vgg"


_CACHE: dict[tuple[str, str | None, str], _LPIPS] = {}


def lpips(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: DataRange = 1.0,
    reduction: str = "none",
    *,
    net: str = "alex",
    weights_path: str | os.PathLike[str] | None = None,
) -> torch.Tensor:
    """LPIPS v0.1 distance between ``x`` and ``y`` (B, 1|3, H, W) in ``[0, data_range]``.

    The network for ``(net, weights_path, device)`` is built once and cached.
    """
    classes = {"alex": LPIPSAlex, "vgg": LPIPSVGG}
    if net not in classes:
        raise ConfigError(f"net must be 'alex' or 'vgg', got {net!r}")
    check_reduction(reduction)
    x, y, dr = prepare_image_pair(x, y, data_range=data_range, ndims=(4,))
    key = (net, None if weights_path is None else str(weights_path), str(x.device))
    if key not in _CACHE:
        _CACHE[key] = classes[net](weights_path=weights_path).to(x.device)
    return reduce(_CACHE[key]._values(x, y, dr), reduction)
