"""Complex-valued U-Net on normalized k-space (K-CROSS complex branch, paper Sec. III-B1, Fig. 3).

Each down-sampling block is complex conv (stride 2) -> complex BN -> complex LeakyReLU -> complex
conv -> complex BN -> complex LeakyReLU; each up-sampling block replaces the first conv by a complex
transposed conv and concatenates the skip connection. The last layer is a plain complex conv with a
**linear** output: the reconstruction target is normalized k-space (see :mod:`kcross_metric.kspace`),
so no tanh bounds it (a tanh on raw k-space cannot reach the DC term; see METHOD-NOTES).
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn.complex import (
    ComplexBatchNorm2d,
    ComplexConv2d,
    ComplexConvTranspose2d,
    ComplexLeakyReLU,
)

__all__ = ["ComplexUNet", "COMPLEX_CHANNELS"]

#: Complex channels per encoder level. With 16 radial k-space bands they make the 512-long complex
#: vector the complex score network takes (16 + 16 + 32 + 64 + 128 + 256 = 512).
COMPLEX_CHANNELS: tuple[int, ...] = (16, 32, 64, 128, 256)


def _block(cin: int, cout: int, *, stride: int, transposed: bool = False) -> nn.Sequential:
    first = (
        ComplexConvTranspose2d(cin, cout, 2, stride=2, bias=False)
        if transposed
        else ComplexConv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
    )
    return nn.Sequential(
        first,
        ComplexBatchNorm2d(cout),
        ComplexLeakyReLU(0.2),
        ComplexConv2d(cout, cout, 3, padding=1, bias=False),
        ComplexBatchNorm2d(cout),
        ComplexLeakyReLU(0.2),
    )


class ComplexUNet(nn.Module):
    """(B,1,H,W) complex k-space -> reconstruction (B,1,H,W) complex, plus encoder features.

    H and W must be multiples of ``2 ** len(channels)``.
    """

    def __init__(self, channels: tuple[int, ...] = COMPLEX_CHANNELS) -> None:
        super().__init__()
        self.channels = tuple(channels)
        enc, prev = [], 1
        for ch in self.channels:
            enc.append(_block(prev, ch, stride=2))
            prev = ch
        self.encoder = nn.ModuleList(enc)
        rev = tuple(reversed(self.channels))
        ups, fuse = [], []
        for i, ch in enumerate(rev):
            nxt = rev[i + 1] if i + 1 < len(rev) else rev[-1]
            ups.append(_block(ch, nxt, stride=1, transposed=True))
            skip = rev[i + 1] if i + 1 < len(rev) else 0
            fuse.append(ComplexConv2d(nxt + skip, nxt, 3, padding=1))
        self.up_blocks, self.fuse = nn.ModuleList(ups), nn.ModuleList(fuse)
        self.head = ComplexConv2d(rev[-1], 1, 3, padding=1)

    def encode(self, kspace: torch.Tensor) -> list[torch.Tensor]:
        feats, z = [], kspace
        for level in self.encoder:
            z = level(z)
            feats.append(z)
        return feats

    def decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        z = feats[-1]
        skips = list(reversed(feats[:-1]))
        for i, (up, fuse) in enumerate(zip(self.up_blocks, self.fuse)):
            z = up(z)
            if i < len(skips):
                z = torch.cat([z, skips[i]], dim=1)
            z = fuse(z)
        return self.head(z)

    def forward(self, kspace: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = self.encode(kspace)
        return self.decode(feats), feats
