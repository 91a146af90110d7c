"""Small real-valued building blocks shared by the natural-image networks."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvBlock", "ConvEncoder", "ConvDecoder"]


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":  # per-sample statistics: no gap between training batches and inference
        return nn.InstanceNorm2d(channels, affine=True)
    raise ValueError(f"norm must be 'batch' or 'instance', got {kind!r}")


class ConvBlock(nn.Sequential):
    """conv3x3(stride) -> norm -> LeakyReLU -> conv3x3 -> norm -> LeakyReLU (paper Sec. III-B2);
    ``norm`` is batch normalization (default) or instance normalization."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, norm: str = "batch") -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            _norm(norm, out_channels),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            _norm(norm, out_channels),
            nn.LeakyReLU(0.2, inplace=True),
        )


class ConvEncoder(nn.Module):
    """Strided encoder. Level i halves the resolution; returns the list of level features."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], norm: str = "batch") -> None:
        super().__init__()
        self.channels = tuple(channels)
        levels = []
        prev = in_channels
        for ch in self.channels:
            levels.append(ConvBlock(prev, ch, stride=2, norm=norm))
            prev = ch
        self.levels = nn.ModuleList(levels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for level in self.levels:
            x = level(x)
            feats.append(x)
        return feats


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder` with skip connections; output has ``out_channels`` channels."""

    def __init__(self, channels: tuple[int, ...], out_channels: int, norm: str = "batch") -> None:
        super().__init__()
        rev = tuple(reversed(channels))
        ups, blocks = [], []
        for i, ch in enumerate(rev):
            nxt = rev[i + 1] if i + 1 < len(rev) else rev[-1]
            ups.append(nn.ConvTranspose2d(ch, nxt, 2, stride=2))
            skip = rev[i + 1] if i + 1 < len(rev) else 0
            blocks.append(ConvBlock(nxt + skip, nxt, norm=norm))
        self.ups, self.blocks = nn.ModuleList(ups), nn.ModuleList(blocks)
        self.head = nn.Conv2d(rev[-1], out_channels, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        skips = list(reversed(feats[:-1]))
        for i, (up, block) in enumerate(zip(self.ups, self.blocks)):
            x = up(x)
            if i < len(skips):
                x = torch.cat([x, skips[i]], dim=1)
            x = block(x)
        return self.head(x)
