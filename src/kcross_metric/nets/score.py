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

from ..nn.complex import ComplexLinear, ComplexReLU

__all__ = ["ComplexScoreNet", "NaturalScoreNet", "FEATURE_DIM", "HIDDEN_DIM"]

FEATURE_DIM = 512
HIDDEN_DIM = 256


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
