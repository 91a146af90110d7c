"""Complex-valued U-Net on normalized k-space (K-CROSS complex branch, paper Sec. III-B1, Fig. 3).

Each down-sampling block is complex conv (3x3, stride 2) -> complex BN -> complex LeakyReLU; each
up-sampling block is complex transposed conv (2x2, stride 2) -> complex BN -> complex LeakyReLU,
then the skip connection is concatenated and fused by complex conv -> BN -> LeakyReLU. (One conv
per level instead of two keeps a CPU training run within the hour.) The last layer is a complex
transposed conv with a **linear** output: the reconstruction target is normalized k-space (see :mod:`kcross_metric.core.kspace`),
so no tanh bounds it (a tanh on raw k-space cannot reach the DC term; see METHOD-NOTES).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from .complex import (
    ComplexBatchNorm2d,
    ComplexConv2d,
    ComplexConvTranspose2d,
    ComplexLeakyReLU,
)

__all__ = ["ComplexUNet", "COMPLEX_CHANNELS"]

#: Complex channels per encoder level. With 16 radial k-space bands they make the 512-long complex
#: vector the complex score network takes (16 + 16 + 32 + 64 + 128 + 256 = 512).
COMPLEX_CHANNELS: tuple[int, ...] = (16, 32, 64, 128, 256)


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        ComplexConv2d(cin, cout, 3, stride=2, padding=1, bias=False),
        ComplexBatchNorm2d(cout),
        ComplexLeakyReLU(0.2),
    )


def _up(cin: int, cout: int, skip: int) -> nn.ModuleDict:
    return nn.ModuleDict(
        {
            "up": nn.Sequential(
                ComplexConvTranspose2d(cin, cout, 2, stride=2, bias=False),
                ComplexBatchNorm2d(cout),
                ComplexLeakyReLU(0.2),
            ),
            "fuse": nn.Sequential(
                ComplexConv2d(cout + skip, cout, 3, padding=1, bias=False),
                ComplexBatchNorm2d(cout),
                ComplexLeakyReLU(0.2),
            ),
        }
    )


class ComplexUNet(nn.Module):
    """(B,1,H,W) complex k-space -> reconstruction (B,1,H,W) complex, plus encoder features.

    H and W must be multiples of ``2 ** len(channels)``.
    """

    def __init__(self, channels: tuple[int, ...] = COMPLEX_CHANNELS) -> None:
        super().__init__()
        self.channels = tuple(channels)
        ins = (1,) + self.channels[:-1]
        self.encoder = nn.ModuleList(_down(cin, cout) for cin, cout in zip(ins, self.channels))
        rev = tuple(reversed(self.channels))
        # Up-sampling blocks back to the first level's resolution; the head (a linear complex
        # transposed conv) returns to the input resolution.
        self.decoder = nn.ModuleList(_up(rev[i], rev[i + 1], rev[i + 1]) for i in range(len(rev) - 1))
        self.head = ComplexConvTranspose2d(rev[-1], 1, 2, stride=2)

    def encode(self, kspace: torch.Tensor) -> list[torch.Tensor]:
        feats, z = [], kspace
        for level in self.encoder:
            z = level(z)
            feats.append(z)
        return feats

    def decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        z = feats[-1]
        for block, skip in zip(self.decoder, reversed(feats[:-1])):
            parts = cast(nn.ModuleDict, block)
            z = parts["fuse"](torch.cat([parts["up"](z), skip], dim=1))
        return self.head(z)

    def forward(self, kspace: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = self.encode(kspace)
        return self.decode(feats), feats
