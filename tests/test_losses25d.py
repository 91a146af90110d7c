"""Cyclic 2.5D perceptual loss (kcross_metric.integrations.losses)."""

from __future__ import annotations

import pytest
import torch

from conftest import need_imagenet
from kcross_metric.data.phantom import make_phantom
from kcross_metric.errors import ConfigError
from kcross_metric.integrations.losses import (
    Cyclic25DLoss,
    CyclicPlaneSchedule,
    PlanePerceptualLoss,
    minmax_per_slice,
)

A, C, S = "axial", "coronal", "sagittal"


def test_schedule_small_hand_computed() -> None:
    # start 3, factor 2/3: durations 3, 2, round(1.33)=1, 1, ...
    sched = CyclicPlaneSchedule(start=3, factor=2 / 3, minimum=1)
    expected = [A] * 3 + [C] * 3 + [S] * 3 + [A] * 2 + [C] * 2 + [S] * 2 + [A, C, S, A, C, S]
    assert [sched(e) for e in range(len(expected))] == expected
    assert [sched.duration(k) for k in range(4)] == [3, 2, 1, 1]


def test_schedule_paper_defaults() -> None:
    sched = CyclicPlaneSchedule()
    assert [sched.duration(k) for k in range(13)] == [120, 80, 53, 35, 23, 15, 10, 7, 5, 3, 2, 1, 1]
    checks = {0: A, 119: A, 120: C, 239: C, 240: S, 359: S, 360: A, 439: A, 440: C, 599: S,
              600: A, 652: A, 653: C}
    assert {e: sched(e) for e in checks} == checks
    # after the durations reach 1 the planes alternate every epoch
    start_of_ones = 3 * sum(sched.duration(k) for k in range(11))
    assert [sched(start_of_ones + i) for i in range(6)] == [A, C, S, A, C, S]
    assert sched(10**9) in (A, C, S)  # constant time for far epochs
    # rounding half up (not Python's banker's rounding): 3 * 0.5 = 1.5 -> 2
    assert CyclicPlaneSchedule(start=3, factor=0.5).duration(1) == 2


def test_schedule_errors() -> None:
    with pytest.raises(ConfigError):
        CyclicPlaneSchedule(start=0)
    with pytest.raises(ConfigError):
        CyclicPlaneSchedule(factor=1.5)
    with pytest.raises(ConfigError):
        CyclicPlaneSchedule()(-1)


class _Recorder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return x


def _volumes(shape: tuple[int, int, int] = (16, 20, 18)) -> tuple[torch.Tensor, torch.Tensor]:
    real = make_phantom(shape, contrasts=("t2",), seed=1)["t2"]
    g = torch.Generator().manual_seed(0)
    fake = (real + 0.05 * torch.randn(real.shape, generator=g)).clamp(0, 1)
    return fake, real


def test_plane_selection_follows_epoch() -> None:
    fake, real = _volumes()
    rec = _Recorder()
    loss = Cyclic25DLoss(0, 0, 1, schedule=CyclicPlaneSchedule(start=1),
                         perceptual=PlanePerceptualLoss(rec, imagenet_norm=False, slice_batch_size=1000))
    for epoch, expect in ((0, (16, 3, 20, 18)), (1, (20, 3, 16, 18)), (2, (18, 3, 16, 20))):
        rec.shapes.clear()
        loss(fake, real, epoch)
        assert rec.shapes[0] == expect and loss.last["plane"] == (A, C, S)[epoch]
    loss.set_epoch(4)
    rec.shapes.clear()
    loss(fake, real)
    assert rec.shapes[0] == (20, 3, 16, 18) and loss.plane() == C


def test_perceptual_identity_features_hand_computed() -> None:
    fake, real = _volumes()
    perc = PlanePerceptualLoss(lambda x: x, imagenet_norm=False, slice_batch_size=7)
    f = fake[0, 0].permute(1, 0, 2).unsqueeze(1)  # coronal slices (H, 1, D, W)
    r = real[0, 0].permute(1, 0, 2).unsqueeze(1)
    expected = (minmax_per_slice(f) - minmax_per_slice(r)).pow(2).mean(dim=(1, 2, 3)).mean()
    torch.testing.assert_close(perc(fake, real, C), expected)
    assert float(perc(real, real, C)) == 0.0
    # min-max per slice: a uniformly scaled fake has zero perceptual loss
    assert float(perc(0.5 * real, real, A)) < 1e-10


def test_combined_loss_components_and_gradient() -> None:
    fake, real = _volumes()
    loss = Cyclic25DLoss(alpha=2.0, beta=0.5, gamma=3.0,
                         perceptual=PlanePerceptualLoss(lambda x: x, imagenet_norm=False))
    x = fake.clone().requires_grad_(True)
    value = loss(x, real, epoch=0)
    expected = 2.0 * loss.last["mse"] + 0.5 * loss.last["ssim_loss"] + 3.0 * loss.last["perceptual"]  # type: ignore[operator]
    assert value.dim() == 0 and abs(float(value.detach()) - expected) < 1e-5
    torch.testing.assert_close(torch.tensor(loss.last["mse"]), (fake - real).pow(2).mean())
    value.backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0 and bool(torch.isfinite(x.grad).all())
    assert float(Cyclic25DLoss(perceptual=PlanePerceptualLoss(lambda t: t))(real, real, 0)) < 1e-6


def test_default_vgg_relu4_3_gradient() -> None:
    need_imagenet("vgg")
    fake, real = _volumes((16, 16, 16))
    perc = PlanePerceptualLoss()
    x = fake.clone().requires_grad_(True)
    v = perc(x, real, S)
    v.backward()
    assert float(v.detach()) > 0 and float(perc(real, real, S)) == 0.0
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert not any(p.requires_grad for p in perc.parameters())
