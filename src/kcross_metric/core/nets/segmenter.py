"""Lesion segmenter: a small 2-D U-Net predicting the whole-tumour mask from one MR contrast.

Stands in for the paper's frozen nnU-Net (Sec. III-B2): trained by ``kcross_metric.train`` on
slices with expert or fused segmentations, usable on any of T1/T1c/T2/FLAIR. Output: logits
(B,1,H,W); ``sigmoid > 0.5`` is the lesion mask. H and W must be multiples of 32.

The network works at half resolution (2x2 average pooling in, bilinear up-sampling of the logits
out): whole-tumour masks are smooth at 2 mm, and it makes segmentation 4x cheaper, which matters
because K-CROSS segments two or three images per slice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvBlock, ConvDecoder, ConvEncoder

__all__ = ["LesionSegmenter", "SEGMENTER_CHANNELS", "segmenter_channels_of", "segmenter_norm_of"]

SEGMENTER_CHANNELS: tuple[int, ...] = (16, 32, 64, 128)


class LesionSegmenter(nn.Module):
    """``norm``: ``"batch"`` (the first weights) or ``"instance"`` (per-image statistics: the same
    normalization in training and at inference, whatever the mix of crops and artefacts)."""

    def __init__(self, channels: tuple[int, ...] = SEGMENTER_CHANNELS, norm: str = "batch") -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.norm = norm
        self.stem = ConvBlock(1, self.channels[0], norm=norm)
        self.encoder = ConvEncoder(self.channels[0], self.channels, norm=norm)
        self.decoder = ConvDecoder(self.channels, self.channels[0], norm=norm)
        self.head = nn.Conv2d(2 * self.channels[0], 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        stem = self.stem(F.avg_pool2d(image, 2))
        up = self.decoder(self.encoder(stem))
        logits = self.head(torch.cat([up, stem], dim=1))
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)


def segmenter_channels_of(state: dict[str, torch.Tensor], prefix: str = "") -> tuple[int, ...]:
    """The ``channels`` of the :class:`LesionSegmenter` whose parameters ``state`` holds (keys
    ``<prefix>encoder.levels.<i>.0.weight``), so files of any width load."""
    out, i = [], 0
    while f"{prefix}encoder.levels.{i}.0.weight" in state:
        out.append(int(state[f"{prefix}encoder.levels.{i}.0.weight"].shape[0]))
        i += 1
    return tuple(out) if out else SEGMENTER_CHANNELS


def segmenter_norm_of(state: dict[str, torch.Tensor], prefix: str = "") -> str:
    """``"batch"`` if ``state`` holds batch-norm running statistics for the segmenter, else ``"instance"``."""
    return "batch" if f"{prefix}stem.1.running_mean" in state or not state else "instance"
