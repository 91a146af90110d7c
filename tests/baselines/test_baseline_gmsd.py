from __future__ import annotations

import numpy as np
import pytest
import torch
from _baseline_helpers import assert_batch_independent, calibration_pairs, degraded, mr_slice, official

from kcross_metric.baselines import GMSD, gmsd, rgb_to_gray
from kcross_metric.errors import ImageTooSmallError, ShapeError

signal = pytest.importorskip("scipy.signal")


def _gmsd_numpy(dist: np.ndarray, ref: np.ndarray) -> float:
    """Line-by-line GMSD.m (images on 0-255) with scipy's conv2 equivalent."""
    ave = np.ones((2, 2)) / 4
    d1 = signal.convolve2d(ref, ave, mode="full")[1:, 1:][: ref.shape[0], : ref.shape[1]][::2, ::2]
    d2 = signal.convolve2d(dist, ave, mode="full")[1:, 1:][: ref.shape[0], : ref.shape[1]][::2, ::2]
    dx = np.array([[1, 0, -1]] * 3) / 3.0
    g1 = np.hypot(signal.convolve2d(d1, dx, mode="same"), signal.convolve2d(d1, dx.T, mode="same"))
    g2 = np.hypot(signal.convolve2d(d2, dx, mode="same"), signal.convolve2d(d2, dx.T, mode="same"))
    q = (2 * g1 * g2 + 170) / (g1**2 + g2**2 + 170)
    return float(np.std(q, ddof=1))


def test_gmsd_matches_official_tid2013() -> None:
    # Official GMSD.m on Matlab rgb2gray of the 8-bit images: measured max error 1.2e-8.
    dist, ref = calibration_pairs()
    got = gmsd(rgb_to_gray(dist, 255.0, quantize=True), rgb_to_gray(ref, 255.0, quantize=True),
               data_range=255.0).numpy()
    np.testing.assert_allclose(got, official("gmsd"), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("shape", [(256, 256), (255, 251)])
def test_gmsd_matches_numpy_reference_on_mr_slice(shape: tuple[int, int]) -> None:
    y = mr_slice()[: shape[0], : shape[1]]
    x = degraded(y)
    ref = _gmsd_numpy(x.numpy() * 255, y.numpy() * 255)
    assert gmsd(x[None, None], y[None, None]).item() == pytest.approx(ref, rel=1e-6)


def test_gmsd_scale_invariance_identity_and_constants() -> None:
    y = mr_slice()[None, None]
    x = degraded(y[0, 0])[None, None]
    assert gmsd(x * 4095, y * 4095, data_range=4095).item() == pytest.approx(gmsd(x, y).item(), rel=1e-9)
    assert gmsd(y, y).item() == pytest.approx(0.0, abs=1e-8)
    flat = torch.full((1, 1, 16, 16), 0.3, requires_grad=True)
    val = gmsd(flat, torch.full((1, 1, 16, 16), 0.6))
    assert torch.isfinite(val).all()
    val.sum().backward()
    assert torch.isfinite(flat.grad).all()


def test_gmsd_batch_independent() -> None:
    y = mr_slice()[None, None].repeat(3, 1, 1, 1)
    x = torch.stack([degraded(y[i, 0], seed=i, noise=0.02 * (i + 1)) for i in range(3)])[:, None]
    assert_batch_independent(GMSD(), x, y)


def test_gmsd_gradcheck() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 8, 9, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.rand(2, 1, 8, 9, dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(lambda a: gmsd(a, y), (x,), fast_mode=True)


def test_gmsd_errors() -> None:
    with pytest.raises(ImageTooSmallError, match=">= 4"):
        gmsd(torch.rand(1, 1, 3, 8), torch.rand(1, 1, 3, 8))
    with pytest.raises(ShapeError):  # no 3-D version
        gmsd(torch.rand(1, 1, 8, 8, 8), torch.rand(1, 1, 8, 8, 8))
