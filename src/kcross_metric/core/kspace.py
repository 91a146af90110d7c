"""k-space operations: orthonormal 2-D DFT, amplitude/phase, and a fixed k-space normalization.

K-CROSS moves each slice to k-space with a 2-D discrete Fourier transform (paper Eq. 1). Design
decisions (docs/design-decisions.md):

* The DFT is orthonormal (``norm="ortho"``) and **centred** (``fftshift``), so the DC term sits in
  the middle of the array and neighbouring array positions are neighbouring spatial frequencies.
  The public prototype skipped the shift, which puts low frequencies in the four corners, where a
  convolution sees them wrapped apart.
* Raw k-space has a huge dynamic range: for a 256x256 slice in [0, 1] the orthonormal DC term is the
  mean intensity times 256, while high-frequency coefficients are ~1e-3. :func:`normalize_kspace`
  divides by ``sqrt(H*W)`` (DC becomes the mean intensity, independent of image size) and then
  compresses the modulus logarithmically while keeping the phase:
  ``z = k / |k| * log1p(|k| / eps) * scale``. It is a fixed function of each coefficient, so it never
  depends on other images in the batch, and it keeps the DC term usable (about 1.4 for a mean of 0.3).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "fft2c",
    "ifft2c",
    "amplitude",
    "phase",
    "normalize_kspace",
    "denormalize_kspace",
    "image_to_kspace",
    "radial_band_index",
]

KSPACE_EPS = 1e-3
KSPACE_SCALE = 0.25


def fft2c(image: torch.Tensor, *, centered: bool = True) -> torch.Tensor:
    """Orthonormal 2-D DFT over the last two dims. Real (…,H,W) -> complex (…,H,W)."""
    k = torch.fft.fft2(image, norm="ortho")
    return torch.fft.fftshift(k, dim=(-2, -1)) if centered else k


def ifft2c(kspace: torch.Tensor, *, centered: bool = True) -> torch.Tensor:
    """Inverse of :func:`fft2c` (complex result; take ``.real`` or ``.abs()`` for an image)."""
    k = torch.fft.ifftshift(kspace, dim=(-2, -1)) if centered else kspace
    return torch.fft.ifft2(k, norm="ortho")


def amplitude(kspace: torch.Tensor) -> torch.Tensor:
    """Amplitude ``sqrt(Re^2 + Im^2)`` (paper Eq. 3)."""
    return kspace.abs()


def phase(kspace: torch.Tensor) -> torch.Tensor:
    """Phase ``atan2(Im, Re)`` in (-pi, pi] (paper Eq. 4)."""
    return torch.angle(kspace)


def _safe_modulus(z: torch.Tensor) -> torch.Tensor:
    # |z| with a finite gradient at z = 0 (torch's abs has an undefined direction there).
    return torch.sqrt(z.real.square() + z.imag.square() + 1e-24)


def normalize_kspace(
    kspace: torch.Tensor, *, eps: float = KSPACE_EPS, scale: float = KSPACE_SCALE
) -> torch.Tensor:
    """Phase-preserving log compression of orthonormal k-space, size-independent.

    Args:
        kspace: complex tensor (…, H, W) from :func:`fft2c` of an image in [0, 1].
    Returns:
        complex tensor of the same shape with modulus ``scale * log1p(|k| / (sqrt(HW) * eps))``.
    """
    h, w = kspace.shape[-2:]
    k = kspace / math.sqrt(h * w)
    r = _safe_modulus(k)
    gain = torch.log1p(r / eps) * scale / r
    return k * gain


def denormalize_kspace(
    z: torch.Tensor, *, eps: float = KSPACE_EPS, scale: float = KSPACE_SCALE
) -> torch.Tensor:
    """Inverse of :func:`normalize_kspace`."""
    h, w = z.shape[-2:]
    m = _safe_modulus(z)
    r = torch.expm1(m / scale) * eps
    return z * (r / m) * math.sqrt(h * w)


def image_to_kspace(image: torch.Tensor) -> torch.Tensor:
    """Image in [0, 1], (B,1,H,W) real -> normalized centred k-space (B,1,H,W) complex64/128."""
    if image.dtype in (torch.float16, torch.bfloat16):
        image = image.float()
    return normalize_kspace(fft2c(image))


def radial_band_index(height: int, width: int, n_bands: int, device: torch.device | None = None) -> torch.Tensor:
    """Integer map (H,W) of radial frequency bands 0..n_bands-1 for a centred k-space.

    Band edges are equally spaced in normalized radius ``sqrt(kx^2 + ky^2)`` (cycles/pixel scaled so
    that the Nyquist corner is 1); DC is in band 0.
    """
    fy = torch.fft.fftshift(torch.fft.fftfreq(height, device=device))
    fx = torch.fft.fftshift(torch.fft.fftfreq(width, device=device))
    radius = torch.sqrt(fy[:, None].square() + fx[None, :].square()) / math.sqrt(0.5)
    return torch.clamp((radius * n_bands).long(), max=n_bands - 1)
