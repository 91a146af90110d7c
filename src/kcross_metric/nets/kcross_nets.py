"""All networks of K-CROSS in one module, the unit that weight files store."""

from __future__ import annotations

from torch import nn

from .autoencoders import StructureAutoencoder, TumorAutoencoder
from .complex_unet import ComplexUNet
from .score import ComplexScoreNet, NaturalScoreNet
from .segmenter import LesionSegmenter

__all__ = ["KCrossNetworks", "PAD_MULTIPLE"]

#: Slices are zero-padded to a multiple of this (five stride-2 levels in the complex U-Net).
PAD_MULTIPLE = 32


class KCrossNetworks(nn.Module):
    """complex_unet, tumor, structure, segmenter, complex_score, natural_score."""

    def __init__(self) -> None:
        super().__init__()
        self.complex_unet = ComplexUNet()
        self.tumor = TumorAutoencoder()
        self.structure = StructureAutoencoder()
        self.segmenter = LesionSegmenter()
        self.complex_score = ComplexScoreNet()
        self.natural_score = NaturalScoreNet()
