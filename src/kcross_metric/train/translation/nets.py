"""Cross-modality translation networks: pix2pix U-Net, CycleGAN ResNet generator, PatchGAN.

These make the *synthesized* rated set (issue 4), the realistic inputs the metric is checked on.
They follow the published architectures, narrowed so one model trains in minutes on a CPU:

* :class:`UNetGenerator` -- Isola et al., "Image-to-Image Translation with Conditional Adversarial
  Networks" (pix2pix), CVPR 2017: 4x4 stride-2 convolutions, skip connections, dropout in the
  innermost decoder blocks, ``tanh`` output. Channels ``base * (1, 2, 4, 4, ...)`` capped at
  ``max_channels``.
* :class:`ResnetGenerator` -- Zhu et al., "Unpaired Image-to-Image Translation using
  Cycle-Consistent Adversarial Networks" (CycleGAN), ICCV 2017: c7s1-k, two stride-2 downsamplings,
  ``n_blocks`` residual blocks with reflection padding, two upsamplings, c7s1-1, instance norm.
* :class:`PatchDiscriminator` -- the 70x70 PatchGAN (``n_layers=3``) shared by both papers.

Images are (B, 1, H, W) in [0, 1] at the interface; the networks work on [-1, 1] internally
(:func:`to_signed` / :func:`to_unit`). ``H`` and ``W`` must be multiples of ``2 ** depth`` for the
U-Net and of 4 for the ResNet generator.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError, ShapeError

__all__ = ["UNetGenerator", "ResnetGenerator", "PatchDiscriminator", "to_signed", "to_unit", "init_weights"]


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return x * 2.0 - 1.0


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] (clamped)."""
    return ((x + 1.0) * 0.5).clamp(0.0, 1.0)


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """N(0, 0.02) conv weights and N(1, 0.02) norm scales, as in both papers' reference code."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


def _check_size(x: torch.Tensor, multiple: int, name: str) -> None:
    if x.ndim != 4 or x.shape[1] != 1:
        raise ShapeError(f"{name} expects (B, 1, H, W) images, got shape {tuple(x.shape)}")
    if x.shape[-2] % multiple or x.shape[-1] % multiple:
        raise ShapeError(f"{name} needs H and W divisible by {multiple}, got {tuple(x.shape[-2:])}")


class UNetGenerator(nn.Module):
    """pix2pix U-Net generator.

    Args:
        depth: number of stride-2 downsamplings (the bottleneck is ``H / 2**depth``).
        base: channels of the first encoder block.
        max_channels: cap on the channel count of deeper blocks.
        dropout: dropout probability in the three decoder blocks after the innermost one, as in
            pix2pix (its only noise source; active in training mode only).

    Input/output: (B, 1, H, W) in [0, 1].
    """

    def __init__(self, depth: int = 6, base: int = 32, max_channels: int = 128, dropout: float = 0.5) -> None:
        super().__init__()
        if depth < 2:
            raise ConfigError(f"UNetGenerator depth must be >= 2, got {depth}")
        chans = [min(base * 2**i, max_channels) for i in range(depth)]
        self.depth = depth
        self.down = nn.ModuleList()
        prev = 1
        for i, c in enumerate(chans):
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(prev, c, 4, 2, 1, bias=i in (0, depth - 1)))
            if 0 < i < depth - 1:
                layers.append(nn.BatchNorm2d(c))
            self.down.append(nn.Sequential(*layers))
            prev = c
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):
            out_c = 1 if i == 0 else chans[i - 1]
            in_c = chans[i] if i == depth - 1 else chans[i] * 2
            layers = [nn.ReLU(), nn.ConvTranspose2d(in_c, out_c, 4, 2, 1, bias=i == 0)]
            if i == 0:
                layers.append(nn.Tanh())
            else:
                layers.append(nn.BatchNorm2d(out_c))
                if dropout > 0 and depth - 4 <= i <= depth - 2:
                    layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))
        init_weights(self)

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        _check_size(source, 2**self.depth, "UNetGenerator")
        skips = []
        h = to_signed(source)
        for block in self.down:
            h = block(h)
            skips.append(h)
        skips.pop()
        for j, block in enumerate(self.up):
            if j > 0:
                h = torch.cat([h, skips.pop()], dim=1)
            h = block(h)
        return to_unit(h)


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True), nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN ResNet generator: c7s1-base, d(2 base), d(4 base), n_blocks x R(4 base), u, u, c7s1-1.

    Input/output: (B, 1, H, W) in [0, 1], H and W divisible by 4.
    """

    def __init__(self, base: int = 24, n_blocks: int = 6) -> None:
        super().__init__()
        if n_blocks < 1:
            raise ConfigError(f"ResnetGenerator n_blocks must be >= 1, got {n_blocks}")

        def norm(c: int) -> nn.Module:
            return nn.InstanceNorm2d(c, affine=True)

        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(1, base, 7), norm(base), nn.ReLU()]
        c = base
        for _ in range(2):
            layers += [nn.Conv2d(c, c * 2, 3, 2, 1), norm(c * 2), nn.ReLU()]
            c *= 2
        layers += [_ResidualBlock(c) for _ in range(n_blocks)]
        for _ in range(2):
            layers += [nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1), norm(c // 2), nn.ReLU()]
            c //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(c, 1, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        _check_size(source, 4, "ResnetGenerator")
        return to_unit(self.net(to_signed(source)))


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (``n_layers=3`` = 70x70 receptive field); returns patch logits.

    Args:
        in_channels: 2 for the conditional pix2pix discriminator (source and target stacked),
            1 for CycleGAN's unconditional ones.
        norm: ``"batch"`` (pix2pix) or ``"instance"`` (CycleGAN).
    """

    def __init__(self, in_channels: int = 2, base: int = 32, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        if norm not in ("batch", "instance"):
            raise ConfigError(f"norm must be 'batch' or 'instance', got {norm!r}")

        def norm_layer(c: int) -> nn.Module:
            return nn.BatchNorm2d(c) if norm == "batch" else nn.InstanceNorm2d(c, affine=True)

        layers: list[nn.Module] = [nn.Conv2d(in_channels, base, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = base
        for i in range(1, n_layers + 1):
            nxt = base * min(2**i, 8)
            stride = 1 if i == n_layers else 2
            layers += [nn.Conv2d(c, nxt, 4, stride, 1, bias=False), norm_layer(nxt), nn.LeakyReLU(0.2)]
            c = nxt
        layers.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        self.in_channels = in_channels
        init_weights(self)

    def forward(self, *images: torch.Tensor) -> torch.Tensor:
        x = torch.cat([to_signed(im) for im in images], dim=1)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"PatchDiscriminator expects {self.in_channels} stacked channels, got shape {tuple(x.shape)}")
        return self.net(x)
