"""Cyclic 2.5D perceptual loss for 3-D synthesis networks.

Sun et al., "Cyclic 2.5D perceptual loss for cross-modal 3D medical image synthesis: T1w MRI to tau
PET", arXiv:2406.12632. A 2-D perceptual loss is averaged over all slices of ONE plane of the
volume; the plane cycles axial -> coronal -> sagittal, each for ``d`` epochs, and ``d`` shrinks by
``factor`` after every full cycle (rounded half up, at least ``minimum``; paper: start 120, 2/3, 1).
The training loss is ``alpha * MSE + beta * (1 - SSIM) + gamma * perceptual``.

Perceptual-loss input convention (as in the paper, and NOT the metric convention of this package):
each slice is min-max scaled to [0, 1] on its own and repeated to 3 channels, then ImageNet mean/std
is applied (``imagenet_norm=True``; torchvision VGG16 expects it). Metrics here instead divide by a
fixed ``data_range`` so that scores do not depend on each image's extremes; for a training loss the
per-slice scaling is what the paper used and makes every slice count equally. See
``docs/dfd-and-25d.md``.

Volumes are (B, 1, D, H, W) with the axes of :mod:`kcross_metric.data.io` (see
:mod:`kcross_metric.evaluation.volume25d` for the plane definitions).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .._util.checks import DataRange, check_data_range, check_pair, check_tensor, intensity_range
from ..baselines._backbones import (
    FeatureTaps,
    freeze,
    load_backbone_state,
    vgg16_features,
)
from ..errors import ConfigError
from ..evaluation.volume25d import PLANES, plane_slices

__all__ = ["Cyclic25DLoss", "CyclicPlaneSchedule", "PlanePerceptualLoss", "minmax_per_slice", "vgg16_relu4_3"]

_RELU4_3 = 22  # torchvision vgg16().features index of relu4_3
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

FeatureNet = Callable[[torch.Tensor], "torch.Tensor | Sequence[torch.Tensor]"]


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


class CyclicPlaneSchedule:
    """Which plane the perceptual loss uses at a given (0-based) epoch.

    Cycle ``k`` spends ``d_k`` epochs on each plane in ``planes`` order, with ``d_0 = start`` and
    ``d_{k+1} = max(minimum, round_half_up(d_k * factor))`` (applied to the already rounded value).
    Defaults (paper): 120, 80, 53, 35, 23, 15, 10, 7, 5, 3, 2, 1, 1, ...
    """

    def __init__(self, start: int = 120, factor: float = 2.0 / 3.0, minimum: int = 1,
                 planes: Sequence[str] = PLANES) -> None:
        if int(start) < 1 or int(minimum) < 1 or int(start) != start or int(minimum) != minimum:
            raise ConfigError(f"start and minimum must be integers >= 1, got start={start}, minimum={minimum}")
        if not 0.0 < float(factor) <= 1.0:
            raise ConfigError(f"factor must be in (0, 1], got {factor}")
        planes = tuple(planes)
        if not planes or any(p not in PLANES for p in planes):
            raise ConfigError(f"planes must be names from {PLANES}, got {planes}")
        self.start, self.factor, self.minimum, self.planes = int(start), float(factor), int(minimum), planes

    def duration(self, cycle: int) -> int:
        """Epochs per plane in cycle ``cycle`` (0-based)."""
        d = max(self.minimum, self.start)
        for _ in range(int(cycle)):
            d = max(self.minimum, _round_half_up(d * self.factor))
        return d

    def position(self, epoch: int) -> tuple[int, str, int]:
        """(cycle, plane, epoch index within that plane's block) for a 0-based ``epoch``."""
        if int(epoch) < 0:
            raise ConfigError(f"epoch must be >= 0, got {epoch}")
        e, cycle, d = int(epoch), 0, max(self.minimum, self.start)
        while e >= d * len(self.planes):
            e -= d * len(self.planes)
            cycle += 1
            d = max(self.minimum, _round_half_up(d * self.factor))
            if d == self.minimum:  # constant from here on: jump instead of looping
                full, e = divmod(e, d * len(self.planes))
                cycle += full
                break
        return cycle, self.planes[e // d], e % d

    def plane_at(self, epoch: int) -> str:
        return self.position(epoch)[1]

    __call__ = plane_at

    def __repr__(self) -> str:
        return f"CyclicPlaneSchedule(start={self.start}, factor={self.factor:g}, minimum={self.minimum}, planes={self.planes})"


def vgg16_relu4_3(weights_path: str | os.PathLike[str] | None = None) -> nn.Module:
    """Frozen ImageNet VGG16 up to relu4_3 (local weights, see ``baselines._backbones``)."""
    net = FeatureTaps(vgg16_features(), (_RELU4_3,))
    state = load_backbone_state("vgg", weights_path, heads=False)
    net.load_state_dict({k: state[k] for k in net.state_dict()}, strict=True)
    return freeze(net)


def minmax_per_slice(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(N, C, h, w) -> each slice scaled to [0, 1] by its own min and max (constant slices -> 0)."""
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(eps)


class PlanePerceptualLoss(nn.Module):
    """Mean 2-D perceptual loss over all slices of one plane of (B, 1, D, H, W) volumes -> scalar.

    Args:
        feature_net: callable (N, 3, h, w) -> feature map or list of maps (default: ImageNet VGG16
            relu4_3). Modules are frozen (no parameter gradients; gradients reach the input).
        imagenet_norm: apply ImageNet mean/std after min-max scaling (for ImageNet networks).
        slice_batch_size: slices per feature-net call.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, feature_net: FeatureNet | None = None, *, imagenet_norm: bool = True,
                 slice_batch_size: int = 64, weights_path: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        net = vgg16_relu4_3(weights_path) if feature_net is None else feature_net
        if not callable(net):
            raise ConfigError(f"feature_net must be callable, got {type(net).__name__}")
        self.feature_net: FeatureNet = freeze(net) if isinstance(net, nn.Module) else net
        if int(slice_batch_size) < 1:
            raise ConfigError(f"slice_batch_size must be >= 1, got {slice_batch_size}")
        self.imagenet_norm = bool(imagenet_norm)
        self.slice_batch_size = int(slice_batch_size)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> PlanePerceptualLoss:
        return super().train(False)

    def _prep(self, s: torch.Tensor) -> torch.Tensor:
        s = minmax_per_slice(s).expand(-1, 3, -1, -1)
        return (s - self.mean.to(s.dtype)) / self.std.to(s.dtype) if self.imagenet_norm else s

    def _features(self, s: torch.Tensor) -> list[torch.Tensor]:
        out = self.feature_net(self._prep(s))
        return [out] if isinstance(out, torch.Tensor) else list(out)

    def forward(self, fake: torch.Tensor, real: torch.Tensor, plane: str) -> torch.Tensor:
        f = plane_slices(fake, plane).flatten(0, 1)  # (B*S, 1, h, w)
        r = plane_slices(real, plane).flatten(0, 1)
        n = f.shape[0]
        total = fake.new_zeros(())
        for i in range(0, n, self.slice_batch_size):
            fs, rs = f[i:i + self.slice_batch_size], r[i:i + self.slice_batch_size]
            with torch.no_grad():
                target = [t.detach() for t in self._features(rs)]
            for a, b in zip(self._features(fs), target, strict=True):
                # mean over the chunk's slices of each slice's feature MSE, weighted by chunk size
                total = total + (a - b).pow(2).mean() * fs.shape[0] / len(target)
        return total / n


class Cyclic25DLoss(nn.Module):
    """``alpha * MSE + beta * (1 - SSIM) + gamma * perceptual(plane(epoch))`` for (B,1,D,H,W) volumes.

    Usable from any loop: ``loss(fake, real, epoch)`` or ``loss.set_epoch(e); loss(fake, real)``.
    MSE is on intensities divided by ``data_range``; SSIM is the package's 3-D Gaussian SSIM
    (:class:`kcross_metric.baselines.ssim.SSIM`, needs every dimension >= 11). The last components
    are kept in ``self.last`` (floats) for logging. Returns a scalar.

    ``data_range`` is a number R (volumes in ``[0, R]``) or a pair ``(low, high)`` such as
    ``(-1, 1)``: volumes are then mapped once to [0, 1] on entry, and the loss and its gradients
    are those of the volumes rescaled to [0, 1]. Volumes are (B, 1, D, H, W); 3 identical channels
    (grayscale saved as RGB) are taken as one.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0, *,
                 data_range: DataRange = 1.0, schedule: CyclicPlaneSchedule | None = None,
                 perceptual: PlanePerceptualLoss | None = None) -> None:
        super().__init__()
        from ..baselines.ssim import SSIM

        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        if min(self.alpha, self.beta, self.gamma) < 0:
            raise ConfigError(f"loss weights must be >= 0, got alpha={alpha}, beta={beta}, gamma={gamma}")
        self.data_range = check_data_range(data_range)
        self.schedule = schedule if schedule is not None else CyclicPlaneSchedule()
        self.perceptual = perceptual if perceptual is not None or self.gamma == 0 else PlanePerceptualLoss()
        # SSIM gets the volumes already mapped by forward(), so it computes with the mapped range
        rng = intensity_range(self.data_range)
        self.ssim = SSIM(data_range=rng.compute_range, reduction="mean") if self.beta > 0 else None
        self.epoch = 0
        self.last: dict[str, float | str] = {}

    def set_epoch(self, epoch: int) -> None:
        if int(epoch) < 0:
            raise ConfigError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def plane(self, epoch: int | None = None) -> str:
        return self.schedule.plane_at(self.epoch if epoch is None else epoch)

    def forward(self, fake: torch.Tensor, real: torch.Tensor, epoch: int | None = None) -> torch.Tensor:
        rng = intensity_range(self.data_range)
        # values are checked (in the caller's units) where SSIM used to check them, i.e. when beta > 0
        checked = rng if self.ssim is not None else None
        fake = check_tensor(fake, "fake", ndims=(5,), channels=1, data_range=checked, gray_rgb=True)
        real = check_tensor(real, "real", ndims=(5,), channels=1, data_range=checked, gray_rgb=True)
        check_pair(fake, real)
        fake, real = rng.to_internal(fake), rng.to_internal(real)
        plane = self.plane(epoch)
        total = fake.new_zeros(())
        self.last = {"plane": plane}
        if self.alpha:
            mse = ((fake - real) / rng.compute_range).pow(2).mean()
            total = total + self.alpha * mse
            self.last["mse"] = float(mse.detach())
        if self.beta and self.ssim is not None:
            ssim_loss = 1.0 - self.ssim(fake, real)
            total = total + self.beta * ssim_loss
            self.last["ssim_loss"] = float(ssim_loss.detach())
        if self.gamma and self.perceptual is not None:
            perc = self.perceptual(fake, real, plane)
            total = total + self.gamma * perc
            self.last["perceptual"] = float(perc.detach())
        return total
