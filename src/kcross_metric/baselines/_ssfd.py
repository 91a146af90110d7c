"""In-domain SSFD encoder: a self-supervised U-Net feature extractor for MR slices.

Adamson et al., "Using deep feature distances for evaluating MR image reconstruction quality",
NeurIPS 2023 Deep Inverse workshop (SSFD = self-supervised feature distance): a 5-level U-Net
encoder (20/40/80/160/320 channels, two 3x3 convs per level, GroupNorm, ReLU) trained to in-paint
zeroed 16x16 patches; the DFD taps the level-4 features. Input: one channel, z-scored per image.

:class:`SSFDEncoder` is the part the metric uses; :class:`SSFDInpainter` adds the U-Net decoder
used only for self-supervised training (:mod:`kcross_metric.train.ssfd`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["SSFD_CHANNELS", "SSFDEncoder", "SSFDInpainter", "conv_gn_relu", "zscore"]

#: Channel widths of the paper's SSFD encoder levels 1..5.
SSFD_CHANNELS: tuple[int, ...] = (20, 40, 80, 160, 320)


def _groups(channels: int) -> int:
    # Largest of (8, 4, 2, 1) dividing the width: 20 -> 4, 40/80/... -> 8, 10 -> 2.
    for g in (8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


def conv_gn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two (conv3x3 -> GroupNorm -> ReLU) units: one SSFD level."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.GroupNorm(_groups(out_channels), out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.GroupNorm(_groups(out_channels), out_channels),
        nn.ReLU(inplace=True),
    )


def zscore(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-image z-score over (C, H, W): (B, C, H, W) -> same shape, mean 0, std 1 per image.

    ``sqrt(var + eps)`` keeps a constant image finite (it maps to zeros).
    """
    dims = tuple(range(1, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps)


class SSFDEncoder(nn.Module):
    """U-Net encoder, (B, 1, H, W) z-scored -> list of level features.

    Level ``i`` (1-based) has ``channels[i-1]`` channels at ``H / 2**(i-1)``; levels are separated
    by 2x2 max pooling. ``depth`` < ``len(channels)`` builds only the first ``depth`` levels (the
    metric stops at its tapped level).
    """

    def __init__(self, channels: tuple[int, ...] = SSFD_CHANNELS, depth: int | None = None) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        depth = len(channels) if depth is None else int(depth)
        if not channels or any(c <= 0 for c in channels) or not 1 <= depth <= len(channels):
            raise ConfigError(f"SSFD needs positive channel widths and 1 <= depth <= {len(channels)}, "
                              f"got channels={channels}, depth={depth}")
        self.channels = channels[:depth]
        levels = []
        prev = 1
        for ch in self.channels:
            levels.append(conv_gn_relu(prev, ch))
            prev = ch
        self.levels = nn.ModuleList(levels)
        self.pool = nn.MaxPool2d(2)

    @property
    def min_size(self) -> int:
        """Smallest spatial size whose deepest level is at least 1x1."""
        return 2 ** (len(self.channels) - 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, level in enumerate(self.levels):
            if i > 0:
                x = self.pool(x)
            x = level(x)
            feats.append(x)
        return feats


class SSFDInpainter(nn.Module):
    """Full U-Net for in-painting: encoder + decoder with skips, (B,1,H,W) -> (B,1,H,W).

    H and W must be divisible by ``2**(levels-1)``.
    """

    def __init__(self, channels: tuple[int, ...] = SSFD_CHANNELS) -> None:
        super().__init__()
        self.encoder = SSFDEncoder(channels)
        chans = self.encoder.channels
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in range(len(chans) - 1)
        )
        self.decoders = nn.ModuleList(conv_gn_relu(2 * chans[i], chans[i]) for i in range(len(chans) - 1))
        self.head = nn.Conv2d(chans[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        y = feats[-1]
        for i in range(len(feats) - 2, -1, -1):
            y = self.decoders[i](torch.cat([self.ups[i](y), feats[i]], dim=1))
        return self.head(y)
