from __future__ import annotations

import numpy as np
import pytest
import torch
from _baseline_helpers import (
    assert_batch_independent,
    brats_crop,
    calibration_pairs,
    degraded,
    mr_slice,
    official,
)

from kcross_metric.baselines import PSNR, PSNR_MAX_DB, psnr
from kcross_metric.errors import RangeError, ShapeError

skmetrics = pytest.importorskip("skimage.metrics")


def test_psnr_matches_skimage_on_mr_slice() -> None:
    y = mr_slice()
    x = degraded(y)
    ref = skmetrics.peak_signal_noise_ratio(y.numpy(), x.numpy(), data_range=1.0)
    assert psnr(x[None, None], y[None, None], data_range=1.0).item() == pytest.approx(ref, abs=1e-9)


def test_psnr_matches_skimage_on_3d_volume() -> None:
    y = brats_crop()
    x = degraded(y, seed=3)
    ref = skmetrics.peak_signal_noise_ratio(y.numpy(), x.numpy(), data_range=1.0)
    assert PSNR(data_range=1.0)(x[None, None], y[None, None]).item() == pytest.approx(ref, abs=1e-9)


def test_psnr_matches_official_tid2013() -> None:
    # Official PSNR: RGB 8-bit, MSE over the three channels. Values are given to 2 decimals.
    dist, ref = calibration_pairs()
    got = psnr(dist, ref, data_range=255.0).numpy()
    np.testing.assert_allclose(got, official("psnr"), atol=0.006)


def test_identical_images_are_capped_at_100_db() -> None:
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    val = psnr(x, x)
    assert torch.all(torch.isfinite(val))
    assert PSNR_MAX_DB == pytest.approx(100.0)
    torch.testing.assert_close(val, torch.full((2,), 100.0, dtype=torch.float64))
    const = torch.full((1, 1, 8, 8), 0.5)
    assert psnr(const, const).item() == pytest.approx(100.0)
    # The cap is scale-free: same value whatever data_range.
    assert psnr(x * 1000, x * 1000, data_range=1000).tolist() == pytest.approx([100.0, 100.0])
    x.requires_grad_(True)
    psnr(x, x.detach()).sum().backward()
    assert torch.all(torch.isfinite(x.grad))


def test_psnr_known_value() -> None:
    x = torch.zeros(1, 1, 4, 4)
    y = torch.full((1, 1, 4, 4), 0.1)
    assert psnr(x, y).item() == pytest.approx(20.0, abs=1e-4)  # MSE 0.01 -> 20 dB
    assert psnr(x, y * 2550, data_range=255.0).item() == pytest.approx(0.0, abs=1e-4)  # MSE = L^2


def test_psnr_batch_independent_and_shapes() -> None:
    y = mr_slice()[None, None].repeat(3, 1, 1, 1)
    x = torch.stack([degraded(y[i, 0], seed=i, noise=0.02 * (i + 1)) for i in range(3)])[:, None]
    assert_batch_independent(PSNR(), x, y)
    assert PSNR()(x[:1], y[:1]).shape == (1,)
    assert PSNR(reduction="mean")(x, y).shape == ()


def test_psnr_gradcheck() -> None:
    x = torch.rand(2, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 1, 4, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: psnr(a, y), (x,), fast_mode=True)


def test_psnr_errors() -> None:
    with pytest.raises(RangeError):
        psnr(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), data_range=0)
    with pytest.raises(ShapeError):
        psnr(torch.rand(4, 4), torch.rand(4, 4))
