from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _baseline_helpers import (
    assert_batch_independent,
    brats_crop,
    calibration_pairs,
    degraded,
    mr_slice,
    official,
)

from kcross_metric.baselines import SSIM, rgb_to_gray, ssim
from kcross_metric.baselines.ssim import matlab_downsample_factor
from kcross_metric.errors import ConfigError, ImageTooSmallError

skmetrics = pytest.importorskip("skimage.metrics")


def _sk_ssim(x: np.ndarray, y: np.ndarray) -> float:
    # Gaussian 11-tap window (truncate 3.5 * sigma 1.5 -> radius 5), population covariance.
    return skmetrics.structural_similarity(
        x, y, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )


def test_ssim_matches_skimage_on_mr_slice() -> None:
    y = mr_slice()
    x = degraded(y)
    got = ssim(x[None, None], y[None, None], data_range=1.0).item()
    assert got == pytest.approx(_sk_ssim(x.numpy(), y.numpy()), abs=1e-7)


def test_ssim_matches_skimage_on_3d_volume() -> None:
    y = brats_crop()
    x = degraded(y, seed=2)
    got = SSIM(data_range=1.0)(x[None, None], y[None, None]).item()
    assert got == pytest.approx(_sk_ssim(x.numpy(), y.numpy()), abs=1e-7)


def test_ssim_matches_official_tid2013() -> None:
    # Official ssim.m on Matlab rgb2gray of the 8-bit images, measured max error 4.7e-5
    # (the official values carry 4 decimals).
    dist, ref = calibration_pairs()
    got = ssim(rgb_to_gray(dist, 255.0, quantize=True), rgb_to_gray(ref, 255.0, quantize=True),
               data_range=255.0).numpy()
    np.testing.assert_allclose(got, official("ssim"), atol=1e-4)


def test_ssim_downsample_option_reproduces_matlab_box_filter() -> None:
    y = mr_slice().repeat(2, 2)[None, None]  # 512 x 512 -> factor round(512/256) = 2
    x = degraded(y)
    assert matlab_downsample_factor((512, 512)) == 2
    assert matlab_downsample_factor((384, 640)) == 2  # round(1.5) = 2 (half away from zero)
    assert matlab_downsample_factor((640, 640)) == 3  # round(2.5) = 3, not Python's 2
    ref = _sk_ssim(F.avg_pool2d(x, 2)[0, 0].numpy(), F.avg_pool2d(y, 2)[0, 0].numpy())
    assert ssim(x, y, downsample=True).item() == pytest.approx(ref, abs=1e-7)
    assert ssim(x, y).item() != pytest.approx(ref, abs=1e-3)


def test_ssim_identity_constant_and_multichannel() -> None:
    y = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(ssim(y, y), torch.ones(2, dtype=torch.float64))
    const_a = torch.full((1, 1, 16, 16), 0.2, dtype=torch.float64)
    const_b = torch.full((1, 1, 16, 16), 0.7, dtype=torch.float64)
    val = ssim(const_a, const_b)
    assert torch.isfinite(val).all() and 0 < val.item() < 1
    # (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1) for flat images.
    c1 = 0.01**2
    assert val.item() == pytest.approx((2 * 0.2 * 0.7 + c1) / (0.04 + 0.49 + c1), rel=1e-5)
    # Multi-channel = mean of per-channel SSIM.
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    per_channel = torch.stack([ssim(x[:, c : c + 1], y[:, c : c + 1]) for c in range(3)], 1).mean(1)
    torch.testing.assert_close(ssim(x, y), per_channel)


def test_ssim_batch_independent() -> None:
    y = mr_slice()[None, None].repeat(3, 1, 1, 1)
    x = torch.stack([degraded(y[i, 0], seed=i, noise=0.02 * (i + 1)) for i in range(3)])[:, None]
    assert_batch_independent(SSIM(), x, y)


def test_ssim_too_small_names_minimum() -> None:
    with pytest.raises(ImageTooSmallError, match=">= 11"):
        ssim(torch.rand(1, 1, 10, 32), torch.rand(1, 1, 10, 32))
    with pytest.raises(ImageTooSmallError, match=">= 7"):
        SSIM(win_size=7)(torch.rand(1, 1, 6, 8, 8), torch.rand(1, 1, 6, 8, 8))
    with pytest.raises(ConfigError):
        SSIM(win_size=4)


def test_ssim_gradcheck_2d_and_3d() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 9, 9, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.rand(2, 1, 9, 9, dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(lambda a: ssim(a, y, win_size=5), (x,), fast_mode=True)
    x3 = torch.rand(1, 1, 5, 6, 5, dtype=torch.float64, generator=g, requires_grad=True)
    y3 = torch.rand(1, 1, 5, 6, 5, dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(lambda a: ssim(a, y3, win_size=3), (x3,), fast_mode=True)


def test_ssim_half_precision_input_is_computed_in_float32() -> None:
    y = mr_slice()[None, None].float()
    x = degraded(y[0, 0].double()).float()[None, None]
    full = ssim(x, y)
    half = ssim(x.half(), y.half())
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(full.item(), abs=2e-3)
