"""Contract shared by every baseline: registry metadata, shapes, reductions, typed errors,
batch independence."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _baseline_helpers import assert_batch_independent, degraded, mr_slice

from conftest import imagenet_available
from kcross_metric import create_metric, metric_info
from kcross_metric.errors import ConfigError, DTypeError, NonFiniteError, RangeError, ShapeError

CLASSICAL = ["mae", "psnr", "ssim", "ms_ssim", "nlpd", "gmsd"]
DEEP = ["lpips_alex", "lpips_vgg", "dists"]
_MODELS: dict[str, Any] = {}


def _metric(name: str, **kwargs: Any) -> Any:
    if name in DEEP and not imagenet_available():
        pytest.skip("ImageNet backbones not on disk (tests never download them)")
    key = name + repr(sorted(kwargs.items()))
    if key not in _MODELS:
        _MODELS[key] = create_metric(name, **kwargs)
    return _MODELS[key]


def _pair(name: str, b: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    size = 176 if name == "ms_ssim" else 64
    y = mr_slice()
    ref = torch.stack([y[20 + 10 * i : 20 + 10 * i + size, 30 : 30 + size] for i in range(b)])[:, None]
    dist = torch.stack([degraded(r[0], seed=i, noise=0.02 * (i + 1)) for i, r in enumerate(ref)])[:, None]
    return dist.float(), ref.float()


@pytest.mark.parametrize("name", CLASSICAL + DEEP)
def test_registry_metadata_matches_class(name: str) -> None:
    info = metric_info(name)
    m = _metric(name)
    assert type(m).higher_is_better is info.higher_is_better
    assert type(m).is_differentiable is info.differentiable


@pytest.mark.parametrize("name", CLASSICAL + DEEP)
def test_every_baseline_is_batch_independent(name: str) -> None:
    x, y = _pair(name)
    with torch.no_grad():
        assert_batch_independent(_metric(name), x, y, atol=1e-5)


@pytest.mark.parametrize("name", CLASSICAL + DEEP)
def test_shapes_reductions_and_direction(name: str) -> None:
    x, y = _pair(name, b=2)
    info = metric_info(name)
    with torch.no_grad():
        per = _metric(name)(x, y)
        assert per.shape == (2,) and torch.isfinite(per).all()
        assert _metric(name)(x[:1], y[:1]).shape == (1,)
        assert _metric(name, reduction="mean")(x, y).item() == pytest.approx(per.mean().item(), rel=1e-5)
        assert _metric(name, reduction="sum")(x, y).item() == pytest.approx(per.sum().item(), rel=1e-5)
        same = _metric(name)(y, y)
        better = (same >= per) if info.higher_is_better else (same <= per)
        assert bool(better.all())
        lo, hi = info.score_range
        assert bool(((per >= lo - 1e-6) & (per <= hi + 1e-6)).all())


@pytest.mark.parametrize("name", CLASSICAL + DEEP)
def test_typed_input_errors(name: str) -> None:
    m = _metric(name)
    x, y = _pair(name, b=1)
    with pytest.raises(ShapeError):
        m(x, y[..., :-1])
    with pytest.raises(RangeError):
        m(x * 3, y)
    with pytest.raises(DTypeError):
        m(x, y.double())
    with pytest.raises(DTypeError):
        m((x * 255).to(torch.uint8), (y * 255).to(torch.uint8))
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError):
        m(bad, y)
    with pytest.raises(ConfigError):
        create_metric(name, reduction="median")
    with pytest.raises(RangeError):
        create_metric(name, data_range=-1.0)


@pytest.mark.parametrize("name", ["mae", "psnr", "ssim", "ms_ssim"])
def test_3d_baselines_accept_volumes(name: str) -> None:
    assert metric_info(name).supports_3d
    kwargs = {"win_size": 3, "weights": (0.5, 0.5)} if name == "ms_ssim" else {}
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 1, 12, 14, 16, generator=g)
    x = (0.8 * y + 0.2 * torch.rand(2, 1, 12, 14, 16, generator=g))
    assert _metric(name, **kwargs)(x, y).shape == (2,)


@pytest.mark.parametrize("name", ["nlpd", "gmsd"] + DEEP)
def test_2d_only_baselines_refuse_volumes(name: str) -> None:
    assert not metric_info(name).supports_3d
    v = torch.rand(1, 1, 40, 40, 40)
    with pytest.raises(ShapeError):
        _metric(name)(v, v)


@pytest.mark.parametrize("name", CLASSICAL + DEEP)
def test_constant_images_give_finite_values_and_gradients(name: str) -> None:
    size = 176 if name == "ms_ssim" else 48
    for a, b in ((0.3, 0.6), (0.0, 0.0), (0.5, 0.5)):
        x = torch.full((1, 1, size, size), a, requires_grad=True)
        y = torch.full((1, 1, size, size), b)
        val = _metric(name)(x, y)
        assert torch.isfinite(val).all(), (a, b, val)
        val.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all(), (a, b)
