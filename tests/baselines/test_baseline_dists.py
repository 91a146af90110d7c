from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from _baseline_helpers import (
    CALIB_NAMES,
    assert_batch_independent,
    calibration_pairs,
    degraded,
    mr_slice,
    official,
)

from conftest import need_shared
from kcross_metric.baselines import DISTS, dists
from kcross_metric.baselines._backbones import DISTS_FILE, VGG16_FILE
from kcross_metric.errors import ChannelError, ImageTooSmallError, WeightsNotFoundError


@pytest.fixture(scope="module")
def weights_dir() -> Path:
    return need_shared("weights", "imagenet")


@pytest.fixture(scope="module")
def model(weights_dir: Path) -> DISTS:
    return DISTS(weights_path=weights_dir)


def _mr_batch(n: int = 3, size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    y = mr_slice()
    crops = [y[50 + 30 * i : 50 + 30 * i + size, 70 : 70 + size] for i in range(n)]
    ref = torch.stack(crops)[:, None]
    dist = torch.stack([degraded(c, seed=i, noise=0.03 * (i + 1)) for i, c in enumerate(crops)])[:, None]
    return dist.float(), ref.float()


def _check_official(idx: list[int]) -> None:
    dist, ref = calibration_pairs()
    with torch.no_grad():
        got = DISTS(data_range=255.0)(dist[idx].float(), ref[idx].float()).numpy()
    # Official DISTS_pytorch at full resolution: measured max error 3.1e-5 (4-decimal values).
    np.testing.assert_allclose(got, official("dists")[idx], atol=1e-4)


def test_dists_matches_official_tid2013_one_pair() -> None:
    _check_official([CALIB_NAMES.index("I08.bmp")])


@pytest.mark.slow
def test_dists_matches_official_tid2013_all_pairs() -> None:
    _check_official(list(range(len(CALIB_NAMES))))


def test_dists_identity_grayscale_policy_and_batch_independence(model: DISTS) -> None:
    x, y = _mr_batch()
    with torch.no_grad():
        assert torch.all(model(y, y).abs() < 1e-5)
        val = model(x, y)
        assert torch.all((val > 0) & (val < 1))
        torch.testing.assert_close(val, model(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)))
        torch.testing.assert_close(dists(x * 4095, y * 4095, data_range=4095.0), val, atol=1e-5, rtol=1e-4)
        assert_batch_independent(model, x, y, atol=1e-5)
        assert dists(x, y, reduction="sum").item() == pytest.approx(val.sum().item(), rel=1e-5)


def test_dists_frozen_and_gradcheck(weights_dir: Path, model: DISTS) -> None:
    assert all(not p.requires_grad for p in model.parameters())
    model.train()
    assert not model.training
    m = DISTS(weights_path=weights_dir).double()
    g = torch.Generator().manual_seed(0)
    y = torch.rand(1, 1, 16, 16, dtype=torch.float64, generator=g)
    x = (0.5 * y + 0.5 * torch.rand(1, 1, 16, 16, dtype=torch.float64, generator=g)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: m(a, y), (x,), fast_mode=True, atol=1e-5)


def test_dists_alpha_beta_bundled_or_beside_weights(weights_dir: Path, tmp_path: Path) -> None:
    """alpha/beta ship in the package; a dists_alpha_beta.npz beside the VGG file takes precedence."""
    only_vgg = tmp_path / "vgg"
    only_vgg.mkdir()
    os.symlink(weights_dir / VGG16_FILE, only_vgg / VGG16_FILE)
    bundled = DISTS(weights_path=only_vgg / VGG16_FILE)
    shared = DISTS(weights_path=only_vgg, alpha_beta_path=weights_dir / DISTS_FILE)
    torch.testing.assert_close(bundled.alpha, shared.alpha, rtol=0, atol=0)
    torch.testing.assert_close(bundled.beta, shared.beta, rtol=0, atol=0)
    with np.load(weights_dir / DISTS_FILE) as data:
        np.savez(only_vgg / DISTS_FILE, alpha=data["alpha"] * 0 + 1, beta=data["beta"])
    beside = DISTS(weights_path=only_vgg / VGG16_FILE)
    assert not torch.equal(beside.alpha, bundled.alpha)
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        DISTS(weights_path=only_vgg, alpha_beta_path=tmp_path / "nowhere.npz")


def test_dists_input_errors(model: DISTS) -> None:
    with pytest.raises(ImageTooSmallError, match=">= 16"):
        model(torch.rand(1, 1, 15, 64), torch.rand(1, 1, 15, 64))
    with pytest.raises(ChannelError):
        model(torch.rand(1, 4, 32, 32), torch.rand(1, 4, 32, 32))
