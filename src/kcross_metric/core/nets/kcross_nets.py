"""All networks of K-CROSS in one module, the unit that weight files store."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ...errors import WeightsError
from .autoencoders import StructureAutoencoder, TumorAutoencoder
from .complex_unet import ComplexUNet
from .score import (
    FEATURE_DIM,
    LESION_CHANGE_DIM,
    ComplexScoreNet,
    MonotoneScoreNet,
    NaturalScoreNet,
    complex_monotone_inputs,
)
from .segmenter import SEGMENTER_CHANNELS, LesionSegmenter, segmenter_channels_of, segmenter_norm_of

__all__ = ["DESIGNS", "KCrossNetworks", "PAD_MULTIPLE", "head_energies", "natural_energy"]

#: ``v1``: the paper's score networks (bias-free 512-256-1 MLPs, complex and natural), lesion region
#: = union of the masks of real, fake and source. ``v2`` (issues 16 and 21, docs/design-decisions.md):
#: monotone score heads on non-negative distances, lesion region from real and source only (it does
#: not move with the fake), and lesion-change features (area added / removed in the fake).
DESIGNS: tuple[str, ...] = ("v1", "v2")

#: Slices are zero-padded to a multiple of this (five stride-2 levels in the complex U-Net).
PAD_MULTIPLE = 32


class KCrossNetworks(nn.Module):
    """complex_unet, tumor, structure, segmenter, complex_score, natural_score.

    ``design`` (see :data:`DESIGNS`) selects the score heads; a weight file's design is told by its
    keys (:meth:`design_of`).
    """

    def __init__(
        self, design: str = "v2", segmenter_channels: tuple[int, ...] = SEGMENTER_CHANNELS, segmenter_norm: str = "batch"
    ) -> None:
        super().__init__()
        if design not in DESIGNS:
            raise WeightsError(f"unknown K-CROSS network design {design!r}; known: {', '.join(DESIGNS)}")
        self.design = design
        self.complex_unet = ComplexUNet()
        self.tumor = TumorAutoencoder()
        self.structure = StructureAutoencoder()
        self.segmenter = LesionSegmenter(segmenter_channels, segmenter_norm)
        heads = self.heads_only(design)
        self.complex_score: nn.Module = heads.get_submodule("complex_score")
        self.natural_score: nn.Module = heads.get_submodule("natural_score")

    @classmethod
    def heads_only(cls, design: str = "v2") -> nn.Module:
        """Fresh score networks of ``design`` (attributes ``complex_score``, ``natural_score``)."""
        if design not in DESIGNS:
            raise WeightsError(f"unknown K-CROSS network design {design!r}; known: {', '.join(DESIGNS)}")
        heads = nn.Module()
        if design == "v1":
            heads.complex_score, heads.natural_score = ComplexScoreNet(), NaturalScoreNet()
        else:
            heads.complex_score = MonotoneScoreNet(2 * FEATURE_DIM)
            heads.natural_score = MonotoneScoreNet(FEATURE_DIM + LESION_CHANGE_DIM)
        return heads

    @classmethod
    def for_state(cls, state: dict[str, torch.Tensor], design: str | None = None) -> KCrossNetworks:
        """Networks shaped for the parameters ``state`` (its design and segmenter width), not loaded."""
        return cls(design or cls.design_of(state), segmenter_channels_of(state, "segmenter."),
                   segmenter_norm_of(state, "segmenter."))

    @staticmethod
    def design_of(keys: Iterable[str]) -> str:
        """The design whose parameter names ``keys`` (of a state dict or weight file) are."""
        names = set(keys)
        return "v2" if "natural_score.weight1_raw" in names else "v1"


def head_energies(
    design: str,
    complex_score: nn.Module,
    natural_score: nn.Module,
    vc: torch.Tensor,
    vt: torch.Tensor,
    vs: torch.Tensor,
    vm: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances of the complex and natural score networks (``-log`` of their qualities), (B,) each.

    The one place that says what each design's heads take: v1 the complex vector and ``[vt, vs]``;
    v2 :func:`complex_monotone_inputs` of it and ``[vt, vs, vm]`` (``vm`` the lesion-change features,
    zeros where ``None``). Used by :meth:`kcross_metric.KCross.qualities` and stage-2 training.
    """
    complex_in = vc if design == "v1" else complex_monotone_inputs(vc)
    return complex_score(complex_in), natural_energy(design, natural_score, vt, vs, vm)


def natural_energy(
    design: str, natural_score: nn.Module, vt: torch.Tensor, vs: torch.Tensor, vm: torch.Tensor | None
) -> torch.Tensor:
    """The natural score network's distance alone (see :func:`head_energies`), (B,)."""
    if design == "v1":
        return natural_score(torch.cat([vt, vs], dim=1))
    if vm is None:
        vm = vt.new_zeros((vt.shape[0], LESION_CHANGE_DIM))
    return natural_score(torch.cat([vt, vs, vm], dim=1))
