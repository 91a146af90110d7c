"""Score networks (paper Sec. III-B3): complex 512-256-1 and natural 512-256-1.

Both are bias-free, so a zero difference vector (fake identical to real) maps to 0 and a score of
exactly 1; with ReLU-type activations the output is positively homogeneous in the size of the
difference (twice the error, twice the distance). A branch distance ``d = |net(v)|`` becomes a
quality ``exp(-d)`` in (0, 1]. These are documented design decisions: the paper gives the layer
sizes but not the output mapping.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .complex import ComplexLinear, ComplexReLU

__all__ = [
    "ComplexScoreNet",
    "NaturalScoreNet",
    "MonotoneScoreNet",
    "complex_monotone_inputs",
    "FEATURE_DIM",
    "HIDDEN_DIM",
    "MONOTONE_HIDDEN_DIM",
    "LESION_CHANGE_DIM",
]

FEATURE_DIM = 512
HIDDEN_DIM = 256
MONOTONE_HIDDEN_DIM = 64
#: lesion-change features appended to the natural score network's input by the v2 design
#: (lesion area added and removed in the fake, see ``branches.lesion_change_features``)
LESION_CHANGE_DIM = 2


class ComplexScoreNet(nn.Module):
    """Complex (B,512) -> non-negative distance (B,)."""

    def __init__(self, in_features: int = FEATURE_DIM, hidden: int = HIDDEN_DIM) -> None:
        super().__init__()
        self.fc1 = ComplexLinear(in_features, hidden, bias=False)
        self.act = ComplexReLU()
        self.fc2 = ComplexLinear(hidden, 1, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.fc2(self.act(self.fc1(z)))
        return torch.sqrt(out.real.square() + out.imag.square() + 1e-12).squeeze(-1) - 1e-6


class NaturalScoreNet(nn.Module):
    """Real (B,512) -> non-negative distance (B,)."""

    def __init__(self, in_features: int = FEATURE_DIM, hidden: int = HIDDEN_DIM) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, 1, bias=False)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(v))).abs().squeeze(-1)


def complex_monotone_inputs(z: torch.Tensor) -> torch.Tensor:
    """Non-negative inputs of the v2 complex head from a complex difference vector (B,C) -> (B,2C).

    First half: the modulus ``|z|`` (relative RMS difference per k-space band or channel); second
    half: ``(|z| - Re z) / 2 = |z| (1 - cos phi) / 2``, the part of it whose phase disagrees with the
    reference (phi is the angle of the error-reference correlation). Both are 0 for identical inputs
    and grow with the size of the difference at a fixed phase.
    """
    modulus = torch.sqrt(z.real.square() + z.imag.square() + 1e-12) - 1e-6
    return torch.cat([modulus.clamp_min(0.0), (0.5 * (modulus - z.real)).clamp_min(0.0)], dim=1)


class MonotoneScoreNet(nn.Module):
    """Non-negative (B,in) distances -> distance (B,), non-decreasing in every input (v2 design).

    ``d(x) = sum_j a_j log(1 + sum_i W_ji x_i)`` with ``W = softplus(W_raw) >= 0`` and
    ``a = softplus(a_raw) >= 0``: a larger difference in any feature can never lower the distance,
    whatever the weights learn (as LPIPS's non-negative linear heads), and ``d(0) = 0`` exactly, so
    identical images score exactly 1. The concave ``log1p`` lets the head saturate on large errors
    without breaking the order.
    """

    def __init__(self, in_features: int, hidden: int = MONOTONE_HIDDEN_DIM) -> None:
        super().__init__()
        self.in_features, self.hidden = int(in_features), int(hidden)
        # softplus(-5) ~ 0.0067: hidden pre-activations of order 1 for typical feature sizes;
        # softplus(-4.6) ~ 0.01: a distance of order 1 (a score of order exp(-1)) at the start
        self.weight1_raw = nn.Parameter(torch.randn(hidden, in_features) * 0.5 - 5.0)
        self.weight2_raw = nn.Parameter(torch.randn(hidden) * 0.5 - 4.6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.log1p(x.clamp_min(0.0) @ F.softplus(self.weight1_raw).t())
        return hidden @ F.softplus(self.weight2_raw)
