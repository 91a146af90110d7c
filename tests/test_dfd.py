"""Deep feature distances (kcross_metric.baselines.dfd)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import need_imagenet
from kcross_metric import weights as weights_mod
from kcross_metric.baselines._ssfd import SSFDInpainter, zscore
from kcross_metric.baselines.dfd import DFD, dfd
from kcross_metric.data.phantom import make_phantom
from kcross_metric.errors import (
    ChannelError,
    ConfigError,
    ImageTooSmallError,
    RangeError,
    UntrainedWeightsError,
    WeightsNotFoundError,
)
from kcross_metric.registry import create_metric, metric_info


class TwoScales(nn.Module):
    """Parameter-free encoder: the image and its 2x2 average pooling."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x, F.avg_pool2d(x, 2)]


def _pair(b: int = 2, size: int = 32, noise: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    y = make_phantom((size, size), contrasts=("t2",), seed=seed)["t2"].repeat(b, 1, 1, 1)
    g = torch.Generator().manual_seed(seed)
    x = (y + noise * torch.randn(y.shape, generator=g)).clamp(0, 1)
    return x, y


def test_mse_distance_hand_computed() -> None:
    x, y = _pair()
    metric = DFD(TwoScales(), normalization="none", distance="mse")
    d0 = (x - y).pow(2).mean(dim=(1, 2, 3))
    d1 = (F.avg_pool2d(x, 2) - F.avg_pool2d(y, 2)).pow(2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(metric(x, y), (d0 + d1) / 2)
    # taps select from the encoder's list
    torch.testing.assert_close(DFD(TwoScales(), taps=(1,), normalization="none")(x, y), d1)


def test_unit_distance_hand_computed() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    metric = DFD(lambda t: [t], normalization="none", distance="unit", in_channels=3)
    ux, uy = x / x.norm(dim=1, keepdim=True), y / y.norm(dim=1, keepdim=True)
    torch.testing.assert_close(metric(x, y), (ux - uy).pow(2).sum(dim=1).mean(dim=(1, 2)))


def test_imagenet_normalization_and_data_range() -> None:
    x, y = _pair(b=1)
    seen: list[torch.Tensor] = []

    def enc(t: torch.Tensor) -> list[torch.Tensor]:
        seen.append(t)
        return [t]

    DFD(enc)(x, y)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(seen[0][:1], (x.expand(-1, 3, -1, -1) - mean) / std)
    m1 = DFD(TwoScales())
    torch.testing.assert_close(DFD(TwoScales(), data_range=255.0)(x * 255, y * 255), m1(x, y))


def test_zscore_is_scale_invariant_imagenet_is_not() -> None:
    x, _ = _pair(b=2)
    assert float(DFD(TwoScales(), normalization="zscore").forward(0.5 * x, x).abs().max()) < 1e-8
    assert float(DFD(TwoScales(), normalization="imagenet")(0.5 * x, x).min()) > 1e-3


def test_shapes_reductions_identity_gradient() -> None:
    x, y = _pair(b=3)
    metric = DFD(TwoScales())
    assert metric(x[:1], y[:1]).shape == (1,)
    v = metric(x, y)
    assert v.shape == (3,) and bool((v > 0).all())
    torch.testing.assert_close(DFD(TwoScales(), reduction="mean")(x, y), v.mean())
    torch.testing.assert_close(DFD(TwoScales(), reduction="sum")(x, y), v.sum())
    assert float(metric(y, y).abs().max()) == 0.0
    xr = x.clone().requires_grad_(True)
    metric(xr, y).sum().backward()
    assert xr.grad is not None and float(xr.grad.abs().sum()) > 0


def test_input_errors() -> None:
    x, y = _pair(b=1)
    with pytest.raises(ConfigError):
        DFD(TwoScales(), normalization="minmax_per_batch")
    with pytest.raises(ConfigError):
        DFD(TwoScales(), distance="l1")
    with pytest.raises(ConfigError):
        DFD("not callable")  # type: ignore[arg-type]
    with pytest.raises(RangeError):
        DFD(TwoScales())(x * 3, y)
    with pytest.raises(ChannelError):
        DFD(TwoScales(), normalization="zscore")(x.repeat(1, 2, 1, 1), y.repeat(1, 2, 1, 1))
    with pytest.raises(ImageTooSmallError):
        DFD(TwoScales(), min_size=64)(x, y)
    with pytest.raises(ConfigError):
        DFD(TwoScales(), taps=(5,))(x, y)


def test_random_control_is_seeded() -> None:
    x, y = _pair(b=2)
    a, b, c = DFD.random(0)(x, y), DFD.random(0)(x, y), DFD.random(1)(x, y)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert bool((a > 0).all())
    m = create_metric("dfd_random", seed=0)
    torch.testing.assert_close(m(x, y), a)
    assert metric_info("dfd_random").higher_is_better is False


def test_vgg16_matches_manual_relu1_2() -> None:
    need_imagenet("vgg")
    from kcross_metric.baselines._backbones import load_backbone_state

    x, y = _pair(b=2)
    metric = DFD.vgg16(taps=(3,))
    state = load_backbone_state("vgg", heads=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def relu1_2(t: torch.Tensor) -> torch.Tensor:
        t = (t.expand(-1, 3, -1, -1) - mean) / std
        t = F.relu(F.conv2d(t, state["features.0.weight"], state["features.0.bias"], padding=1))
        return F.relu(F.conv2d(t, state["features.2.weight"], state["features.2.bias"], padding=1))

    torch.testing.assert_close(metric(x, y), (relu1_2(x) - relu1_2(y)).pow(2).mean(dim=(1, 2, 3)))


def test_vgg16_monotone_in_noise_and_functional() -> None:
    need_imagenet("vgg")
    metric = DFD.vgg16()
    x1, y = _pair(b=1, noise=0.02)
    x2, _ = _pair(b=1, noise=0.10)
    assert float(metric(x1, y)) < float(metric(x2, y))
    torch.testing.assert_close(dfd(x1, y, preset="vgg16"), metric(x1, y))
    assert metric.min_size == 16


def test_lpips_and_dists_presets_delegate() -> None:
    need_imagenet("alex")
    from kcross_metric.baselines.lpips import LPIPSAlex

    assert isinstance(DFD.lpips("alex"), LPIPSAlex)
    with pytest.raises(ConfigError):
        DFD.lpips("resnet")


def test_ssfd_missing_weights(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(WeightsNotFoundError):
        DFD.ssfd(weights=tmp_path / "absent.safetensors")
    monkeypatch.delenv("KCROSS_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(weights_mod, "bundled_dir", lambda: tmp_path)
    with pytest.raises(UntrainedWeightsError):
        DFD.ssfd()


def test_ssfd_roundtrip_matches_manual(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from kcross_metric.train.ssfd import SSFDConfig, export_encoder

    torch.manual_seed(0)
    cfg = SSFDConfig(channels=(4, 8, 8, 16, 16), tap_level=4)
    model = SSFDInpainter(cfg.channels).eval()
    path = tmp_path / "ssfd.safetensors"
    export_encoder(model, cfg, path)
    metric = DFD.ssfd(weights=path)
    x, y = _pair(b=2)
    with torch.no_grad():
        fx, fy = model.encoder(zscore(x))[3], model.encoder(zscore(y))[3]
    torch.testing.assert_close(metric(x, y), (fx - fy).pow(2).mean(dim=(1, 2, 3)))
    assert metric.min_size == 8 and metric.weights_info["weights"] == "ssfd.safetensors"


def test_bundled_ssfd_loads_verified() -> None:
    if not (weights_mod.bundled_dir() / "ssfd.safetensors").is_file():
        pytest.skip("no bundled ssfd.safetensors in this build")
    metric = create_metric("dfd_ssfd")
    x1, y = _pair(b=1, noise=0.02)
    x2, _ = _pair(b=1, noise=0.10)
    assert 0 < float(metric(x1, y)) < float(metric(x2, y))


def test_ssfd_patch_mask_covers_25_to_50_percent_in_16px_tiles() -> None:
    from kcross_metric.train.ssfd import patch_mask

    mask = patch_mask(64, 128, 16, (0.25, 0.5), torch.Generator().manual_seed(0))
    frac = mask.mean(dim=(1, 2, 3))
    assert float(frac.min()) >= 0.25 and float(frac.max()) <= 0.5 and float(frac.std()) > 0.02
    tiles = mask.unfold(2, 16, 16).unfold(3, 16, 16)  # (64, 1, 8, 8, 16, 16)
    assert bool((tiles.amin(dim=(-1, -2)) == tiles.amax(dim=(-1, -2))).all())  # whole tiles only
