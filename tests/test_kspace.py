import math

import numpy as np
import pytest
import torch

from kcross_metric.core.kspace import (
    amplitude,
    denormalize_kspace,
    fft2c,
    ifft2c,
    image_to_kspace,
    normalize_kspace,
    phase,
    radial_band_index,
)


def test_fft2c_is_orthonormal_and_centred():
    x = torch.rand(2, 1, 32, 48, dtype=torch.float64)
    k = fft2c(x)
    # Parseval with norm="ortho"
    assert torch.allclose(k.abs().square().sum(dim=(-2, -1)), x.square().sum(dim=(-2, -1)))
    # DC term at the centre equals sum / sqrt(HW)
    dc = k[..., 16, 24]
    assert torch.allclose(dc.real, x.sum(dim=(-2, -1)) / math.sqrt(32 * 48))
    assert torch.allclose(dc.imag, torch.zeros_like(dc.imag), atol=1e-12)
    # agrees with numpy's definition
    ref = np.fft.fftshift(np.fft.fft2(x.numpy(), norm="ortho"), axes=(-2, -1))
    assert np.allclose(k.numpy(), ref)
    assert torch.allclose(ifft2c(k).real, x)


def test_amplitude_phase_reconstruct():
    k = fft2c(torch.rand(1, 1, 16, 16, dtype=torch.float64))
    assert torch.allclose(torch.polar(amplitude(k), phase(k)), k)


def test_normalization_roundtrip_size_independent_dc():
    for size in (64, 256):
        x = torch.full((1, 1, size, size), 0.3, dtype=torch.float64)
        z = normalize_kspace(fft2c(x))
        c = size // 2
        # DC of a constant 0.3 image: 0.25 * log1p(0.3 / 1e-3), whatever the size
        assert float(z[0, 0, c, c].real) == pytest.approx(0.25 * math.log1p(300.0), rel=1e-9)
    x = torch.rand(2, 1, 40, 40, dtype=torch.float64)
    k = fft2c(x)
    assert torch.allclose(denormalize_kspace(normalize_kspace(k)), k, atol=1e-9)


def test_normalization_keeps_phase_and_has_finite_gradient_at_zero():
    k = torch.complex(torch.tensor([[0.0, 3.0], [-2.0, 0.5]]), torch.tensor([[0.0, 4.0], [1.0, -0.5]]))[None, None]
    k = k.clone().requires_grad_(True)
    z = normalize_kspace(k)
    nz = k.detach().abs() > 0
    assert torch.allclose(torch.angle(z.detach())[nz], torch.angle(k.detach())[nz])
    z.abs().sum().backward()
    assert torch.isfinite(torch.view_as_real(k.grad)).all()


def test_image_to_kspace_half_precision_input():
    z = image_to_kspace(torch.rand(1, 1, 32, 32).half())
    assert z.dtype == torch.complex64


def test_radial_bands_cover_all_and_dc_in_band0():
    bands = radial_band_index(64, 64, 16)
    assert bands[32, 32] == 0
    assert set(bands.unique().tolist()) == set(range(16))
    assert bands[0, 0] == 15
