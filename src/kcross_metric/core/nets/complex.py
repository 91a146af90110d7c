"""Complex-valued layers (paper Sec. III-A2..A7), operating on torch complex tensors.

A complex convolution of ``z = x + iy`` with ``W = A + iB`` is ``(A*x - B*y) + i(A*y + B*x)``.
It is computed as one real convolution on the stacked parts ``[x; y]`` with the block weight
``[[A, -B], [B, A]]``, so both output parts see both input parts (a public prototype's imaginary
output never saw the real input). Activations, batch norm and upsampling act on the real and
imaginary parts separately ("split" layers), as the paper describes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ComplexConv2d",
    "ComplexConvTranspose2d",
    "ComplexLinear",
    "ComplexBatchNorm2d",
    "ComplexReLU",
    "ComplexLeakyReLU",
    "ComplexTanh",
    "ComplexUpsample",
]


def _split(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not z.is_complex():
        return z, torch.zeros_like(z)
    return z.real, z.imag


def _block_weight(a: torch.Tensor, b: torch.Tensor, transposed: bool) -> torch.Tensor:
    # conv weights are (out, in, ...); transposed-conv weights are (in, out, ...).
    if transposed:
        top = torch.cat([a, b], dim=1)  # input real part feeds (A x) real and (B x) imag
        bottom = torch.cat([-b, a], dim=1)
    else:
        top = torch.cat([a, -b], dim=1)
        bottom = torch.cat([b, a], dim=1)
    return torch.cat([top, bottom], dim=0)


class _ComplexConvNd(nn.Module):
    transposed = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        output_padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        shape = (
            (in_channels, out_channels, kernel_size, kernel_size)
            if self.transposed
            else (out_channels, in_channels, kernel_size, kernel_size)
        )
        # Complex He-style init (Trabelsi et al. 2018): each part with variance 1 / fan_in.
        fan_in = in_channels * kernel_size * kernel_size
        std = 1.0 / math.sqrt(2.0 * fan_in)
        self.weight_real = nn.Parameter(torch.randn(shape) * std)
        self.weight_imag = nn.Parameter(torch.randn(shape) * std)
        if bias:
            self.bias_real = nn.Parameter(torch.zeros(out_channels))
            self.bias_imag = nn.Parameter(torch.zeros(out_channels))
        else:
            self.register_parameter("bias_real", None)
            self.register_parameter("bias_imag", None)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x, y = _split(z)
        stacked = torch.cat([x, y], dim=1)
        weight = _block_weight(self.weight_real, self.weight_imag, self.transposed).to(stacked.dtype)
        bias = None
        if self.bias_real is not None:
            bias = torch.cat([self.bias_real, self.bias_imag]).to(stacked.dtype)
        if self.transposed:
            out = F.conv_transpose2d(
                stacked, weight, bias, self.stride, self.padding, self.output_padding
            )
        else:
            out = F.conv2d(stacked, weight, bias, self.stride, self.padding)
        real, imag = out.chunk(2, dim=1)
        return torch.complex(real, imag)


class ComplexConv2d(_ComplexConvNd):
    """Complex 2-D convolution: (B,Cin,H,W) complex -> (B,Cout,H',W') complex."""

    transposed = False


class ComplexConvTranspose2d(_ComplexConvNd):
    """Complex 2-D transposed convolution (the decoder's up-sampling step)."""

    transposed = True


class ComplexLinear(nn.Module):
    """Complex fully connected layer ``W z + b`` with ``W = A + iB``: (…, Fin) -> (…, Fout)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        std = 1.0 / math.sqrt(2.0 * in_features)
        self.weight_real = nn.Parameter(torch.randn(out_features, in_features) * std)
        self.weight_imag = nn.Parameter(torch.randn(out_features, in_features) * std)
        if bias:
            self.bias_real = nn.Parameter(torch.zeros(out_features))
            self.bias_imag = nn.Parameter(torch.zeros(out_features))
        else:
            self.register_parameter("bias_real", None)
            self.register_parameter("bias_imag", None)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x, y = _split(z)
        a, b = self.weight_real.to(x.dtype), self.weight_imag.to(x.dtype)
        real = F.linear(x, a) - F.linear(y, b)
        imag = F.linear(y, a) + F.linear(x, b)
        if self.bias_real is not None:
            real = real + self.bias_real.to(x.dtype)
            imag = imag + self.bias_imag.to(x.dtype)
        return torch.complex(real, imag)


class ComplexBatchNorm2d(nn.Module):
    """Batch norm applied to the real and imaginary parts separately (paper Eq. 9)."""

    def __init__(self, num_features: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.bn_real = nn.BatchNorm2d(num_features, momentum=momentum)
        self.bn_imag = nn.BatchNorm2d(num_features, momentum=momentum)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x, y = _split(z)
        return torch.complex(self.bn_real(x), self.bn_imag(y))


class _SplitActivation(nn.Module):
    def act(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x, y = _split(z)
        return torch.complex(self.act(x), self.act(y))


class ComplexReLU(_SplitActivation):
    """ReLU on real and imaginary parts separately (paper Eq. 7)."""

    def act(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)


class ComplexLeakyReLU(_SplitActivation):
    """Leaky ReLU on real and imaginary parts separately (paper Eq. 6)."""

    def __init__(self, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def act(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope)


class ComplexTanh(_SplitActivation):
    """tanh on real and imaginary parts separately (paper Eq. 8)."""

    def act(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)


class ComplexUpsample(nn.Module):
    """Up-sampling applied to each part separately (paper Eq. 10)."""

    def __init__(self, scale_factor: float = 2.0, mode: str = "bilinear") -> None:
        super().__init__()
        self.scale_factor, self.mode = scale_factor, mode

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x, y = _split(z)
        kwargs = {"align_corners": False} if self.mode in ("bilinear", "bicubic") else {}
        up = lambda t: F.interpolate(t, scale_factor=self.scale_factor, mode=self.mode, **kwargs)  # noqa: E731
        return torch.complex(up(x), up(y))
