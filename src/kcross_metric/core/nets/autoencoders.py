"""The natural-image encoder/decoders of K-CROSS (paper Sec. III-B2).

* :class:`TumorAutoencoder`: represents the lesion region (texture, brightness). Input is the image
  masked to the lesion plus the mask itself (2 channels); the decoder reconstructs the masked image.
* :class:`StructureAutoencoder`: one encoder/decoder shared by the source and target modalities;
  trained with a reconstruction loss and an MMD similarity loss so its features capture anatomy
  common to both modalities.

Design decision: the paper keeps a private (modality-specific) tumor encoder per modality. At
inference K-CROSS compares fake and real of the *same* target modality, so one tumor encoder
trained on all target contrasts is used (docs/design-decisions.md).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ConvDecoder, ConvEncoder

__all__ = ["TumorAutoencoder", "StructureAutoencoder", "TUMOR_CHANNELS", "STRUCTURE_CHANNELS"]

#: Pooled tumor features: 16 + 32 + 64 + 144 = 256 (half of the natural score network's 512 input).
TUMOR_CHANNELS: tuple[int, ...] = (16, 32, 64, 144)
#: Pooled structure features: 16 + 32 + 80 = 128, taken twice (vs real, and vs source) = 256.
STRUCTURE_CHANNELS: tuple[int, ...] = (16, 32, 80)


class TumorAutoencoder(nn.Module):
    def __init__(self, channels: tuple[int, ...] = TUMOR_CHANNELS) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.encoder = ConvEncoder(2, self.channels)
        self.decoder = ConvDecoder(self.channels, 1)

    @staticmethod
    def prepare(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([image * mask, mask], dim=1)

    def encode(self, image: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder(self.prepare(image, mask))

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = self.encode(image, mask)
        return self.decoder(feats) * mask, feats


class StructureAutoencoder(nn.Module):
    def __init__(self, channels: tuple[int, ...] = STRUCTURE_CHANNELS) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.encoder = ConvEncoder(1, self.channels)
        self.decoder = ConvDecoder(self.channels, 1)

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder(image)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = self.encode(image)
        return self.decoder(feats), feats
