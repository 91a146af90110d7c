"""MR-specific image distortions as pure tensor operations.

Used to build rated sets (clinically ordered 2AFC pairs), training data and benchmarks. Every
function takes a single-channel batch ``x`` of shape ``(B, 1, H, W)`` with intensities in
``[0, 1]`` (``data_range = 1``) and returns a tensor of the same shape, dtype and device, clipped
to ``[0, 1]``. Severity parameters are explicit arguments; the severity value that makes a
function the identity is documented on each one. Random distortions take
``generator: torch.Generator | int`` (an int is a seed); the result is a deterministic function
of the input, the severities and the generator state. Random numbers are drawn on the CPU, so
results do not depend on the device.

k-space conventions: ``fft2`` with ``norm="ortho"``, the magnitude image is returned (as a
scanner's magnitude reconstruction). Phase-encoding lines are the columns of k-space (the last
dimension, as in the fastMRI masks): a "line" is ``k[..., :, j]``.

Families (K-CROSS paper, Sec. "clinically ordered pairs"):

* acquisition: :func:`undersample` (fastMRI-style cartesian masks, zero-filled), :func:`ghosting`
  (N/2 ghost), :func:`motion` (per-line rigid translations), :func:`spike` (herringbone);
* global: :func:`rician_noise`, :func:`gaussian_noise`, :func:`gaussian_blur`,
  :func:`bias_field`, :func:`contrast_change`, :func:`intensity_change_in_mask`;
* lesion edits: :func:`erase_lesion`, :func:`shrink_lesion`, :func:`change_lesion_intensity`
  (built on :func:`inpaint_region`), :func:`implant_lesion` (an invented copy of the lesion),
  :func:`move_lesion` (the lesion displaced), with :func:`find_lesion_shift` to pick a shift;
* :func:`match_mse`: bisection on a severity to hit a target MSE (equal-MSE pairs).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .._util.checks import check_tensor
from .._util.filters import gaussian_kernel1d
from ..errors import ConfigError, ShapeError

__all__ = [
    "MSEMatch",
    "bias_field",
    "cartesian_mask",
    "change_lesion_intensity",
    "contrast_change",
    "erase_lesion",
    "find_lesion_shift",
    "gaussian_blur",
    "gaussian_noise",
    "ghosting",
    "implant_lesion",
    "inpaint_region",
    "intensity_change_in_mask",
    "match_mse",
    "motion",
    "move_lesion",
    "misregister",
    "mse",
    "rician_noise",
    "shrink_lesion",
    "spike",
    "undersample",
]

GeneratorLike = torch.Generator | int


# ----------------------------------------------------------------------------- helpers


def _check_image(x: object, name: str = "x") -> torch.Tensor:
    return check_tensor(x, name, ndims=(4,), channels=1, data_range=1.0)


def _check_mask(mask: object, x: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Binary mask of x's shape (bool, float or int); returned as a float {0,1} tensor on x's device."""
    if not isinstance(mask, torch.Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor of shape {tuple(x.shape)}, got {type(mask).__name__}")
    if mask.shape != x.shape:
        raise ShapeError(f"{name} must have the shape of x {tuple(x.shape)}, got {tuple(mask.shape)}")
    return (mask.to(device=x.device) > 0.5).to(_work_dtype(x))


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _as_generator(generator: GeneratorLike) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, int):
        raise ConfigError(f"generator must be a torch.Generator or an int seed, got {type(generator).__name__}")
    return torch.Generator().manual_seed(generator)


def _non_negative(value: float, name: str) -> float:
    v = float(value)
    if not (v >= 0.0 and math.isfinite(v)):
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def _finish(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return y.clamp(0.0, 1.0).to(like.dtype)


def _kspace(x: torch.Tensor) -> torch.Tensor:
    return torch.fft.fft2(x.to(_work_dtype(x)), norm="ortho")


def _magnitude(k: torch.Tensor) -> torch.Tensor:
    return torch.fft.ifft2(k, norm="ortho").abs()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with replicate padding (no clipping, any number of channels = 1)."""
    if sigma <= 0.0:
        return x
    radius = max(1, math.ceil(4.0 * sigma))
    k = gaussian_kernel1d(2 * radius + 1, sigma, x.dtype, x.device)
    r = k.numel() // 2
    h, w = x.shape[-2:]
    # replicate padding copes with kernels wider than the image, unlike reflect
    y = F.pad(x, (r, r, 0, 0), mode="replicate") if w > 1 else x
    y = F.conv2d(y, k.view(1, 1, 1, -1)) if w > 1 else y
    y = F.pad(y, (0, 0, r, r), mode="replicate") if h > 1 else y
    y = F.conv2d(y, k.view(1, 1, -1, 1)) if h > 1 else y
    return y


def _disk(radius: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    return ((t.view(-1, 1) ** 2 + t.view(1, -1) ** 2) <= radius**2 + 1e-6).to(dtype)


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation of a {0,1} float mask (B,1,H,W) by a disk of ``radius`` px."""
    if radius <= 0:
        return mask
    disk = _disk(radius, mask.dtype, mask.device)
    return (F.conv2d(mask, disk[None, None], padding=radius) > 0.5).to(mask.dtype)


def _erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary erosion by a disk; pixels outside the image count as outside the mask."""
    if radius <= 0:
        return mask
    disk = _disk(radius, mask.dtype, mask.device)
    hits = F.conv2d(mask, disk[None, None], padding=radius)
    return (hits > disk.sum() - 0.5).to(mask.dtype)


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error of two (B,1,H,W) tensors, shape (B,)."""
    if x.shape != y.shape:
        raise ShapeError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    d = x.to(torch.float64) - y.to(torch.float64)
    return (d * d).flatten(1).mean(1)


# ----------------------------------------------------------------------------- k-space


def cartesian_mask(
    width: int,
    acceleration: float,
    center_fraction: float,
    *,
    pattern: str = "equispaced",
    generator: GeneratorLike = 0,
) -> torch.Tensor:
    """fastMRI-style 1-D cartesian sampling mask over ``width`` phase-encoding lines.

    Returns a bool tensor (width,) in *centred* k-space order (DC at ``width // 2``). The
    ``round(width * center_fraction)`` central lines are always sampled; the rest are sampled
    so that about ``width / acceleration`` lines are kept in total, either at equispaced
    positions with a random offset (``"equispaced"``, fastMRI ``EquispacedMaskFunc``) or
    independently at random (``"random"``, fastMRI ``RandomMaskFunc``). ``acceleration=1``
    keeps every line.
    """
    if int(width) < 1:
        raise ConfigError(f"width must be >= 1, got {width!r}")
    acc = float(acceleration)
    if not (acc >= 1.0 and math.isfinite(acc)):
        raise ConfigError(f"acceleration must be a finite number >= 1, got {acceleration!r}")
    cf = float(center_fraction)
    if not 0.0 <= cf <= 1.0:
        raise ConfigError(f"center_fraction must be in [0, 1], got {center_fraction!r}")
    if pattern not in ("equispaced", "random"):
        raise ConfigError(f"pattern must be 'equispaced' or 'random', got {pattern!r}")
    gen = _as_generator(generator)
    n = int(width)
    n_low = min(n, round(n * cf))
    mask = torch.zeros(n, dtype=torch.bool)
    pad = (n - n_low + 1) // 2
    mask[pad : pad + n_low] = True
    if n_low >= n:
        return mask
    if pattern == "random":
        prob = (n / acc - n_low) / (n - n_low)
        mask |= torch.rand(n, generator=gen) < prob
    else:
        # fastMRI: spacing chosen so that the total number of lines is about n / acceleration
        target = n / acc
        spacing = (n - n_low) / max(target - n_low, 1e-6) if target > n_low else float("inf")
        if math.isfinite(spacing):
            offset = int(torch.randint(0, max(1, round(spacing)), (1,), generator=gen))
            pos = torch.arange(offset, n, spacing).round().long()
            mask[pos[pos < n]] = True
    return mask


def undersample(
    x: torch.Tensor,
    acceleration: float,
    center_fraction: float = 0.08,
    *,
    pattern: str = "equispaced",
    generator: GeneratorLike = 0,
) -> torch.Tensor:
    """Cartesian k-space undersampling with zero-filled reconstruction.

    Args:
        x: (B,1,H,W) in [0,1].
        acceleration: R >= 1 (identity at R=1 or ``center_fraction=1``).
        center_fraction: fraction of fully sampled central lines.
        pattern: ``"equispaced"`` or ``"random"``, see :func:`cartesian_mask`.
        generator: one mask is drawn per sample from it.

    Returns:
        |ifft2(mask * fft2(x))| clipped to [0,1], shape (B,1,H,W).
    """
    x = _check_image(x)
    gen = _as_generator(generator)
    b, _, _, w = x.shape
    masks = torch.stack(
        [cartesian_mask(w, acceleration, center_fraction, pattern=pattern, generator=gen) for _ in range(b)]
    )
    masks = torch.fft.ifftshift(masks, dim=-1).to(x.device)  # to the unshifted order of fft2
    k = _kspace(x) * masks.view(b, 1, 1, w)
    return _finish(_magnitude(k), x)


def ghosting(x: torch.Tensor, phase: float) -> torch.Tensor:
    """N/2 (Nyquist) ghost: every other phase-encoding line is multiplied by ``exp(i*phase)``.

    The image gains a copy shifted by half the field of view along the phase-encoding direction
    with relative amplitude ``|sin(phase/2)|``. ``phase=0`` is the identity. Shape (B,1,H,W).
    """
    x = _check_image(x)
    phi = float(phase)
    if not math.isfinite(phi):
        raise ConfigError(f"phase must be finite (radians), got {phase!r}")
    w = x.shape[-1]
    k = _kspace(x)
    odd = (torch.arange(w, device=x.device) % 2 == 1).view(1, 1, 1, w)
    k = torch.where(odd, k * complex(math.cos(phi), math.sin(phi)), k)
    return _finish(_magnitude(k), x)


def motion(
    x: torch.Tensor,
    fraction: float,
    max_shift: float,
    *,
    generator: GeneratorLike = 0,
) -> torch.Tensor:
    """Rigid in-plane motion during acquisition.

    A random ``fraction`` of the phase-encoding lines is acquired with the object translated by
    ``(dy, dx)``, each drawn uniformly in ``[-max_shift, max_shift]`` pixels per line: the line is
    multiplied by the linear phase ramp ``exp(-2*pi*i*(ky*dy + kx*dx))`` (Fourier shift theorem).
    The random draws do not depend on ``max_shift`` (shifts are ``u * max_shift`` with fixed ``u``),
    so with the same generator state a larger ``max_shift`` is strictly more motion.
    ``fraction=0`` or ``max_shift=0`` is the identity. Shape (B,1,H,W).
    """
    x = _check_image(x)
    frac = _non_negative(fraction, "fraction")
    if frac > 1.0:
        raise ConfigError(f"fraction must be in [0, 1], got {fraction!r}")
    shift = _non_negative(max_shift, "max_shift")
    gen = _as_generator(generator)
    b, _, h, w = x.shape
    k = _kspace(x)
    rdt = k.real.dtype
    ky = torch.fft.fftfreq(h, dtype=rdt).view(h, 1)
    kx = torch.fft.fftfreq(w, dtype=rdt)
    n_lines = round(frac * w)
    ramps = torch.ones(b, 1, h, w, dtype=k.dtype)
    for i in range(b):
        lines = torch.randperm(w, generator=gen)[:n_lines]
        u = torch.rand(n_lines, 2, generator=gen, dtype=rdt) * 2.0 - 1.0
        dy, dx = u[:, 0] * shift, u[:, 1] * shift
        phase = -2.0 * math.pi * (ky * dy.view(1, -1) + kx[lines].view(1, -1) * dx.view(1, -1))
        ramps[i, 0, :, lines] = torch.polar(torch.ones_like(phase), phase)
    return _finish(_magnitude(k * ramps.to(x.device)), x)


def misregister(x: torch.Tensor, angle: float, shift: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """Misregistration: the whole image rotated by ``angle`` degrees about its centre and translated
    by ``shift = (dy, dx)`` pixels (bilinear resampling, zero outside the field of view): anatomy in
    the wrong place with otherwise intact signal, the error the structure branch is meant to see.
    ``angle=0, shift=(0, 0)`` is the identity. Shape (B,1,H,W).
    """
    x = _check_image(x)
    a = float(angle)
    dy, dx = (float(v) for v in shift)
    if not all(math.isfinite(v) for v in (a, dy, dx)):
        raise ConfigError(f"angle and shift must be finite, got {angle!r}, {shift!r}")
    if a == 0.0 and dy == 0.0 and dx == 0.0:
        return _finish(x.to(_work_dtype(x)), x)
    wd = _work_dtype(x)
    b, _, h, w = x.shape
    rad = math.radians(a)
    cos, sin = math.cos(rad), math.sin(rad)
    # affine_grid works in normalized coordinates [-1, 1] (align_corners=False: 2/size per pixel)
    theta = torch.tensor([[cos, -sin * h / w, -2.0 * dx / w], [sin * w / h, cos, -2.0 * dy / h]], dtype=wd)
    grid = F.affine_grid(theta.expand(b, 2, 3).to(x.device), [b, 1, h, w], align_corners=False)
    return _finish(F.grid_sample(x.to(wd), grid, mode="bilinear", padding_mode="zeros", align_corners=False), x)


def spike(
    x: torch.Tensor,
    amplitude: float,
    *,
    position: tuple[int, int] | None = None,
    generator: GeneratorLike = 0,
) -> torch.Tensor:
    """Herringbone (spike) artefact: one k-space point is boosted.

    Adds ``amplitude * |k_DC| * exp(i*theta)`` at k-space position ``position = (ky, kx)``
    (signed frequency indices, DC = (0, 0)). In the image this is a stripe pattern whose
    amplitude is ``amplitude`` times the image mean. If ``position`` is None it is drawn per
    sample at a radius between 15% and 60% of the Nyquist frequency; theta is always drawn.
    The draws do not depend on ``amplitude``. ``amplitude=0`` is the identity. Shape (B,1,H,W).
    """
    x = _check_image(x)
    amp = _non_negative(amplitude, "amplitude")
    gen = _as_generator(generator)
    b, _, h, w = x.shape
    k = _kspace(x)
    rdt = k.real.dtype
    add = torch.zeros(b, 1, h, w, dtype=k.dtype)
    dc = k[:, 0, 0, 0].abs().cpu()
    for i in range(b):
        r, angle, theta = torch.rand(3, generator=gen, dtype=rdt)
        if position is None:
            rad = 0.15 + 0.45 * float(r)
            ky = round(rad * (h / 2) * math.sin(2 * math.pi * float(angle)))
            kx = round(rad * (w / 2) * math.cos(2 * math.pi * float(angle)))
            if ky == 0 and kx == 0:
                kx = 1 if w > 1 else 0
        else:
            ky, kx = int(position[0]), int(position[1])
        add[i, 0, ky % h, kx % w] = torch.polar(amp * dc[i].to(rdt), 2 * math.pi * theta)
    return _finish(_magnitude(k + add.to(x.device)), x)


# ----------------------------------------------------------------------------- global


def rician_noise(x: torch.Tensor, sigma: float, *, generator: GeneratorLike = 0) -> torch.Tensor:
    """Rician noise: ``|x + n_r + i*n_i|`` with ``n ~ N(0, sigma^2)`` (sigma relative to data_range 1).

    This is the magnitude noise of an MR image (Gudbjartsson & Patz 1995), including the noise
    floor in the background. ``sigma=0`` is the identity. Shape (B,1,H,W).
    """
    x = _check_image(x)
    s = _non_negative(sigma, "sigma")
    gen = _as_generator(generator)
    wd = _work_dtype(x)
    n = torch.randn((2,) + tuple(x.shape), generator=gen, dtype=wd).to(x.device) * s
    xw = x.to(wd)
    return _finish(torch.sqrt((xw + n[0]) ** 2 + n[1] ** 2), x)


def gaussian_noise(x: torch.Tensor, sigma: float, *, generator: GeneratorLike = 0) -> torch.Tensor:
    """Additive white Gaussian noise ``x + N(0, sigma^2)``, clipped to [0,1]. ``sigma=0`` is the identity."""
    x = _check_image(x)
    s = _non_negative(sigma, "sigma")
    gen = _as_generator(generator)
    wd = _work_dtype(x)
    n = torch.randn(tuple(x.shape), generator=gen, dtype=wd).to(x.device) * s
    return _finish(x.to(wd) + n, x)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Isotropic Gaussian blur of standard deviation ``sigma`` pixels (kernel radius ceil(4*sigma),
    replicate padding). ``sigma=0`` is the identity. Shape (B,1,H,W)."""
    x = _check_image(x)
    s = _non_negative(sigma, "sigma")
    return _finish(_blur(x.to(_work_dtype(x)), s), x)


def bias_field(
    x: torch.Tensor,
    amplitude: float,
    *,
    order: int = 2,
    generator: GeneratorLike = 0,
) -> torch.Tensor:
    """Smooth multiplicative intensity non-uniformity (bias field).

    ``y = x * exp(amplitude * s)`` where ``s`` is a random combination of the 2-D cosines
    ``cos(pi*p*u) * cos(pi*q*v)`` with ``1 <= p + q <= order`` over the image (u, v in [0,1]),
    scaled to ``max|s| = 1``; so the field lies in ``[exp(-amplitude), exp(amplitude)]``.
    The draws do not depend on ``amplitude``. ``amplitude=0`` is the identity. Shape (B,1,H,W).
    """
    x = _check_image(x)
    amp = _non_negative(amplitude, "amplitude")
    if int(order) < 1:
        raise ConfigError(f"order must be >= 1, got {order!r}")
    gen = _as_generator(generator)
    b, _, h, w = x.shape
    wd = _work_dtype(x)
    u = torch.linspace(0.0, 1.0, h, dtype=wd).view(h, 1)
    v = torch.linspace(0.0, 1.0, w, dtype=wd).view(1, w)
    basis = torch.stack(
        [
            torch.cos(math.pi * p * u) * torch.cos(math.pi * q * v)
            for p in range(order + 1)
            for q in range(order + 1)
            if 1 <= p + q <= order
        ]
    )
    coef = torch.randn(b, basis.shape[0], generator=gen, dtype=wd)
    s = torch.einsum("bn,nhw->bhw", coef, basis)
    s = s / s.flatten(1).abs().amax(1).clamp_min(1e-12).view(b, 1, 1)
    field = torch.exp(amp * s).unsqueeze(1).to(x.device)
    return _finish(x.to(wd) * field, x)


def contrast_change(x: torch.Tensor, gamma: float = 1.0, scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
    """Contrast error: ``scale * x**gamma + offset``, clipped. Identity at (1, 1, 0). Shape (B,1,H,W)."""
    x = _check_image(x)
    g = float(gamma)
    if not (g > 0.0 and math.isfinite(g)):
        raise ConfigError(f"gamma must be a finite number > 0, got {gamma!r}")
    if not (math.isfinite(float(scale)) and math.isfinite(float(offset))):
        raise ConfigError(f"scale and offset must be finite, got {scale!r}, {offset!r}")
    xw = x.to(_work_dtype(x)).clamp_min(0.0)
    return _finish(float(scale) * xw**g + float(offset), x)


def intensity_change_in_mask(x: torch.Tensor, mask: torch.Tensor, scale: float, offset: float = 0.0) -> torch.Tensor:
    """``scale * x + offset`` inside ``mask`` (same shape as x), unchanged outside. Identity at (1, 0)."""
    x = _check_image(x)
    m = _check_mask(mask, x)
    if not (math.isfinite(float(scale)) and math.isfinite(float(offset))):
        raise ConfigError(f"scale and offset must be finite, got {scale!r}, {offset!r}")
    xw = x.to(_work_dtype(x))
    return _finish(xw + m * ((float(scale) - 1.0) * xw + float(offset)), x)


# ----------------------------------------------------------------------------- lesion edits


def _push_pull(values: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Fill unknown pixels by pyramid push-pull (Gortler et al. 1996): smooth, hole-size independent."""
    vs, ws = [values * known], [known]
    while min(vs[-1].shape[-2:]) > 1 and bool((ws[-1] <= 0).any()):
        vs.append(F.avg_pool2d(vs[-1], 2, ceil_mode=True))
        ws.append(F.avg_pool2d(ws[-1], 2, ceil_mode=True))
    est = torch.where(ws[-1] > 0, vs[-1] / ws[-1].clamp_min(1e-12), torch.zeros_like(vs[-1]))
    for v, w in zip(reversed(vs[:-1]), reversed(ws[:-1])):
        up = F.interpolate(est, size=v.shape[-2:], mode="bilinear", align_corners=False)
        # v is already the w-weighted mean, so this blends known data with the coarser estimate
        est = v + (1.0 - w) * up
    return est


def inpaint_region(
    x: torch.Tensor,
    region: torch.Tensor,
    *,
    sources: torch.Tensor | None = None,
    iterations: int = 100,
    texture: bool = False,
    generator: GeneratorLike = 0,
) -> torch.Tensor:
    """Replace ``region`` by a smooth membrane interpolated from the surrounding ``sources``.

    Push-pull initialisation followed by ``iterations`` Jacobi sweeps of masked 3x3 averaging
    (a discrete harmonic in-fill: each filled pixel is the mean of its filled or source
    neighbours). ``sources`` defaults to the brain outside the region (``x > 0``), so background
    zeros never bleed into the fill. With ``texture=True`` zero-mean noise with the high-pass
    standard deviation of the healthy ring around the region is added inside it, so the fill is
    not conspicuously flat. Shapes: x, region, sources (B,1,H,W); returns (B,1,H,W) in [0,1].
    """
    x = _check_image(x)
    m = _check_mask(region, x, "region")
    wd = _work_dtype(x)
    xw = x.to(wd)
    src = (xw > 0).to(wd) if sources is None else _check_mask(sources, x, "sources")
    src = src * (1.0 - m)
    est = _push_pull(xw, src)
    domain = ((src + m) > 0).to(wd)
    rows = torch.nonzero(m.amax(dim=(0, 1, 3)) > 0).flatten()
    cols = torch.nonzero(m.amax(dim=(0, 1, 2)) > 0).flatten()
    if rows.numel() and int(iterations) > 0:
        # only region pixels change and they only see 3x3 neighbours: relax inside their bounding box
        h, w = x.shape[-2:]
        r0, r1 = max(0, int(rows[0]) - 1), min(h, int(rows[-1]) + 2)
        c0, c1 = max(0, int(cols[0]) - 1), min(w, int(cols[-1]) + 2)
        e, dm, mm = est[..., r0:r1, c0:c1], domain[..., r0:r1, c0:c1], m[..., r0:r1, c0:c1]
        ones = torch.ones(1, 1, 3, 3, dtype=wd, device=x.device)
        den = F.conv2d(F.pad(dm, (1, 1, 1, 1)), ones).clamp_min(1e-12)
        for _ in range(int(iterations)):
            e = torch.where(mm > 0, F.conv2d(F.pad(e * dm, (1, 1, 1, 1)), ones) / den, e)
        est = est.clone()
        est[..., r0:r1, c0:c1] = e
    fill = est
    if texture:
        gen = _as_generator(generator)
        ring = (_dilate(m, 6) * src) > 0
        resid = xw - _blur(xw, 1.0)
        # robust (MAD) scale: tissue borders and vessels in the ring must not inflate the texture
        std = torch.stack(
            [
                1.4826 * (r[k] - r[k].median()).abs().median() if bool(k.any()) else r.new_zeros(())
                for r, k in zip(resid, ring)
            ]
        ).view(-1, 1, 1, 1)
        noise = torch.randn(tuple(x.shape), generator=gen, dtype=wd).to(x.device)
        noise = _blur(noise, 0.8)
        noise = noise / noise.flatten(1).std(1).clamp_min(1e-12).view(-1, 1, 1, 1)
        fill = fill + noise * std
    return _finish(torch.where(m > 0, fill, xw), x)


def _lesion_region(xw: torch.Tensor, m: torch.Tensor, margin: int) -> torch.Tensor:
    """The lesion dilated by ``margin`` px (to remove its partial-volume rim), limited to the brain."""
    return ((_dilate(m, margin) * (xw > 0).to(xw.dtype) + m) > 0).to(xw.dtype)


def erase_lesion(
    x: torch.Tensor,
    mask: torch.Tensor,
    *,
    margin: int = 2,
    texture: bool = True,
    generator: GeneratorLike = 0,
) -> torch.Tensor:
    """Remove a lesion: in-fill ``mask`` (dilated by ``margin`` px inside the brain) with the
    surrounding healthy tissue (:func:`inpaint_region`), giving a plausible lesion-free slice
    rather than a hole. An empty mask is the identity. Shapes (B,1,H,W)."""
    x = _check_image(x)
    m = _check_mask(mask, x)
    region = _lesion_region(x.to(_work_dtype(x)), m, int(margin))
    return inpaint_region(x, region, texture=texture, generator=generator)


def shrink_lesion(
    x: torch.Tensor,
    mask: torch.Tensor,
    erode_px: int,
    *,
    margin: int = 2,
    texture: bool = True,
    generator: GeneratorLike = 0,
) -> torch.Tensor:
    """Shrink a lesion: keep the lesion eroded by ``erode_px`` px (disk) and in-fill the removed ring
    with healthy tissue (the lesion-free estimate of :func:`erase_lesion`), with a 0.7 px soft
    edge. ``erode_px=0`` keeps the lesion and only re-fills its ``margin`` rim outside the mask,
    i.e. nearly the identity; an erosion that removes the whole lesion equals :func:`erase_lesion`.
    Shapes (B,1,H,W)."""
    x = _check_image(x)
    m = _check_mask(mask, x)
    k = int(erode_px)
    if k < 0:
        raise ConfigError(f"erode_px must be >= 0, got {erode_px!r}")
    wd = _work_dtype(x)
    erased = erase_lesion(x, mask, margin=margin, texture=texture, generator=generator).to(wd)
    core = _erode(m, k)
    alpha = (_blur(core, 0.7) * m).clamp(0.0, 1.0)  # soft edge, never beyond the original lesion
    alpha = torch.maximum(alpha, core)
    return _finish(alpha * x.to(wd) + (1.0 - alpha) * erased, x)


def change_lesion_intensity(
    x: torch.Tensor,
    mask: torch.Tensor,
    factor: float,
    *,
    margin: int = 2,
) -> torch.Tensor:
    """Scale the lesion's contrast towards the surrounding tissue.

    Inside ``mask``: ``bg + factor * (x - bg)`` where ``bg`` is the smooth lesion-free in-fill of
    the surroundings (:func:`inpaint_region` without texture). ``factor=1`` is the identity,
    ``factor=0`` flattens the lesion into the surrounding tissue level, ``factor>1`` exaggerates
    it. Shapes (B,1,H,W).
    """
    x = _check_image(x)
    m = _check_mask(mask, x)
    f = float(factor)
    if not math.isfinite(f):
        raise ConfigError(f"factor must be finite, got {factor!r}")
    wd = _work_dtype(x)
    xw = x.to(wd)
    bg = inpaint_region(x, _lesion_region(xw, m, int(margin)), texture=False).to(wd)
    return _finish(torch.where(m > 0, bg + f * (xw - bg), xw), x)


def _check_shift(shift: object) -> tuple[int, int]:
    """``shift = (dy, dx)``: a pair of integers (pixels), else ConfigError."""
    if not isinstance(shift, (tuple, list)) or len(shift) != 2:
        raise ConfigError(f"shift must be a pair of integers (dy, dx), got {shift!r}")
    out = []
    for v in shift:
        if isinstance(v, bool):
            raise ConfigError(f"shift must be a pair of integers (dy, dx), got {shift!r}")
        try:
            out.append(operator.index(v))
        except TypeError:
            raise ConfigError(f"shift must be a pair of integers (dy, dx), got {shift!r}") from None
    return out[0], out[1]


def _check_lesion_fits(m: torch.Tensor, dy: int, dx: int) -> None:
    """ConfigError if any pixel of the mask (B,1,H,W) shifted by (dy, dx) leaves the image."""
    h, w = m.shape[-2:]
    rows = torch.nonzero(m.amax(dim=(0, 1, 3)) > 0).flatten()
    cols = torch.nonzero(m.amax(dim=(0, 1, 2)) > 0).flatten()
    if not rows.numel():
        return
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    if r0 + dy < 0 or r1 + dy > h - 1 or c0 + dx < 0 or c1 + dx > w - 1:
        raise ConfigError(
            f"shift {(dy, dx)} moves the lesion (rows {r0}..{r1}, columns {c0}..{c1}) out of the "
            f"{h}x{w} image; valid shifts are dy in [{-r0}, {h - 1 - r1}], dx in [{-c0}, {w - 1 - c1}]"
        )


def _shift(t: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate (..., H, W) by (dy, dx) integer pixels: ``out[i + dy, j + dx] = t[i, j]``, zero-filled, no wrap."""
    h, w = t.shape[-2:]
    out = torch.zeros_like(t)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = t[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def _feather(m: torch.Tensor, feather: int) -> torch.Tensor:
    """Soft weight of a {0,1} mask: 1 on the mask, ``1 - k/(feather+1)`` at (disk) distance k <= feather
    px outside it, 0 beyond ``_dilate(m, feather)``."""
    acc = m.clone()
    for k in range(1, feather + 1):
        acc = acc + _dilate(m, k)
    return acc / (feather + 1)


def _paste(
    base: torch.Tensor, source: torch.Tensor, m: torch.Tensor, dy: int, dx: int, feather: int
) -> torch.Tensor:
    """``base * (1 - w) + shift(source) * w`` with ``w`` the feathered shifted mask (work dtype, no clipping)."""
    w = _feather(_shift(m, dy, dx), feather)
    w = w * _shift(torch.ones_like(m), dy, dx)  # no weight where the copied pixel would come from outside
    return base * (1.0 - w) + _shift(source, dy, dx) * w


def _check_shift_edit(
    x: torch.Tensor, mask: torch.Tensor, shift: tuple[int, int], feather: int
) -> tuple[torch.Tensor, torch.Tensor, int, int, int]:
    """The checked arguments of :func:`implant_lesion` / :func:`move_lesion`: image, mask, shift, feather."""
    x = _check_image(x)
    m = _check_mask(mask, x)
    dy, dx = _check_shift(shift)
    f = int(feather)
    if f < 0:
        raise ConfigError(f"feather must be >= 0, got {feather!r}")
    _check_lesion_fits(m, dy, dx)
    return x, m, dy, dx, f


def implant_lesion(
    x: torch.Tensor,
    mask: torch.Tensor,
    shift: tuple[int, int],
    *,
    feather: int = 2,
) -> torch.Tensor:
    """Invent a lesion: paste a copy of the lesion at the mask's location moved by ``shift``.

    ``out = x * (1 - w) + shifted_x * w`` where ``shifted_x`` is ``x`` translated by
    ``shift = (dy, dx)`` integer pixels (one shift for the whole batch, no wrap-around) and ``w``
    is the shifted mask feathered over ``feather`` px: exactly 1 on the shifted lesion, falling
    linearly to 0 at ``feather + 1`` px outside it (so the copy carries a soft border of the
    original surroundings, no hard seam) and exactly 0 beyond. The copy lands over whatever
    anatomy is there; the original lesion stays. ``shift=(0, 0)`` and an empty mask are the
    identity. Use :func:`find_lesion_shift` to choose a shift that lands on brain.

    Args:
        x: (B,1,H,W) in [0,1].
        mask: binary lesion mask, shape (B,1,H,W).
        shift: ``(dy, dx)`` integers (rows down, columns right).
        feather: width of the soft border in px (>= 0; 0 is a hard paste).

    Returns:
        (B,1,H,W) in [0,1], dtype and device of ``x``.

    Raises:
        ConfigError: ``shift`` not a pair of integers, ``feather < 0``, or a lesion pixel shifted
            out of the image.
    """
    x, m, dy, dx, f = _check_shift_edit(x, mask, shift, feather)
    xw = x.to(_work_dtype(x))
    if (dy, dx) == (0, 0) or not bool((m > 0).any()):
        return _finish(xw, x)
    return _finish(_paste(xw, xw, m, dy, dx, f), x)


def move_lesion(
    x: torch.Tensor,
    mask: torch.Tensor,
    shift: tuple[int, int],
    *,
    feather: int = 2,
    margin: int = 2,
    texture: bool = True,
    generator: GeneratorLike = 0,
) -> torch.Tensor:
    """Move a lesion by ``shift = (dy, dx)`` integer pixels.

    The lesion is first removed with :func:`erase_lesion` (``margin``, ``texture`` and
    ``generator`` are passed to it), then the original lesion content of the unedited ``x`` is
    pasted at the shifted location as in :func:`implant_lesion` (feathered over ``feather`` px;
    one shift for the whole batch). ``shift=(0, 0)`` and an empty mask are the identity.

    Args:
        x: (B,1,H,W) in [0,1].
        mask: binary lesion mask, shape (B,1,H,W).
        shift: ``(dy, dx)`` integers (rows down, columns right).

    Returns:
        (B,1,H,W) in [0,1], dtype and device of ``x``.

    Raises:
        ConfigError: as :func:`implant_lesion`.
    """
    x, m, dy, dx, f = _check_shift_edit(x, mask, shift, feather)
    wd = _work_dtype(x)
    xw = x.to(wd)
    if (dy, dx) == (0, 0) or not bool((m > 0).any()):
        return _finish(xw, x)
    erased = erase_lesion(x, m, margin=margin, texture=texture, generator=generator).to(wd)
    return _finish(_paste(erased, xw, m, dy, dx, f), x)


def find_lesion_shift(
    x: torch.Tensor,
    mask: torch.Tensor,
    *,
    generator: GeneratorLike = 0,
    min_distance: int | None = None,
    brain_threshold: float = 0.05,
    min_brain_fraction: float = 0.95,
    tries: int = 200,
) -> tuple[int, int] | None:
    """Draw a random shift for :func:`implant_lesion` / :func:`move_lesion` (one sample only).

    ``tries`` candidate shifts ``(dy, dx)`` are drawn uniformly among the integer shifts that keep
    every lesion pixel inside the image (on the CPU from ``generator``: deterministic for a fixed
    seed or generator state). The first candidate is returned for which

    * the shifted lesion does not overlap the lesion dilated by ``min_distance`` px (default 5:
      the default 2 px feather of the copy and the default 2 px erased rim of
      :func:`move_lesion` do not touch, so the lesion lands clearly elsewhere), and
    * at least ``min_brain_fraction`` of the shifted lesion pixels lie on brain (``x > brain_threshold``).

    Args:
        x: a single sample, shape (1,1,H,W), in [0,1].
        mask: binary lesion mask, shape (1,1,H,W).

    Returns:
        ``(dy, dx)`` as Python ints, or None if the mask is empty or no candidate qualifies.

    Raises:
        ShapeError: batch size other than 1.
        ConfigError: invalid ``min_distance``, ``brain_threshold``, ``min_brain_fraction`` or ``tries``.
    """
    x = _check_image(x)
    if x.shape[0] != 1:
        raise ShapeError(f"find_lesion_shift works on one sample: x must be (1,1,H,W), got {tuple(x.shape)}")
    m = _check_mask(mask, x)
    d = 5 if min_distance is None else int(min_distance)
    if d < 0:
        raise ConfigError(f"min_distance must be >= 0, got {min_distance!r}")
    thr = float(brain_threshold)
    if not math.isfinite(thr):
        raise ConfigError(f"brain_threshold must be finite, got {brain_threshold!r}")
    frac = float(min_brain_fraction)
    if not 0.0 <= frac <= 1.0:
        raise ConfigError(f"min_brain_fraction must be in [0, 1], got {min_brain_fraction!r}")
    n_tries = int(tries)
    if n_tries < 1:
        raise ConfigError(f"tries must be >= 1, got {tries!r}")
    gen = _as_generator(generator)
    pts = torch.nonzero(m[0, 0] > 0).cpu()
    if not pts.shape[0]:
        return None
    h, w = x.shape[-2:]
    (r0, c0), (r1, c1) = pts.amin(0).tolist(), pts.amax(0).tolist()
    dy = torch.randint(-r0, h - r1, (n_tries,), generator=gen)
    dx = torch.randint(-c0, w - c1, (n_tries,), generator=gen)
    ys = pts[:, 0].view(1, -1) + dy.view(-1, 1)  # (tries, n) shifted lesion pixels, all inside
    xs = pts[:, 1].view(1, -1) + dx.view(-1, 1)
    forbidden = (_dilate(m, d)[0, 0] > 0).cpu()
    brain = (x[0, 0].to(_work_dtype(x)) > thr).cpu()
    ok = ~forbidden[ys, xs].any(1) & (brain[ys, xs].to(torch.float64).mean(1) >= frac - 1e-12)
    hits = torch.nonzero(ok).flatten()
    if not hits.numel():
        return None
    k = int(hits[0])
    return int(dy[k]), int(dx[k])


# ----------------------------------------------------------------------------- MSE matching


class MSEMatch(NamedTuple):
    """Result of :func:`match_mse`."""

    severity: float  #: severity found
    image: torch.Tensor  #: distorted_target_fn(severity), (B,1,H,W)
    mse: float  #: its MSE vs the reference (mean over the batch)


def match_mse(
    reference: torch.Tensor,
    distorted_target_fn: Callable[[float], torch.Tensor],
    target_mse: float,
    *,
    low: float = 0.0,
    high: float = 1.0,
    rtol: float = 0.005,
    max_iter: int = 60,
    max_expand: int = 30,
) -> MSEMatch:
    """Find the severity whose distortion has a given MSE vs ``reference`` (bisection).

    ``distorted_target_fn(severity)`` must return a (B,1,H,W) tensor and be deterministic (fix
    its seed) with an MSE that grows with severity, e.g.
    ``lambda s: rician_noise(ref, s, generator=3)``. The MSE is the mean over the batch; pass
    B=1 for per-image matching. ``high`` is doubled (at most ``max_expand`` times) until it
    overshoots the target. Bisection stops at relative error ``rtol``; the closest evaluated
    severity is returned (check ``.mse`` if the MSE is not continuous in the severity).

    Raises:
        ConfigError: target not positive, ``low`` already above target, or target unreachable.
    """
    reference = _check_image(reference, "reference")
    t = float(target_mse)
    if not (t > 0.0 and math.isfinite(t)):
        raise ConfigError(f"target_mse must be a finite number > 0, got {target_mse!r}")
    lo, hi = float(low), float(high)
    if not hi > lo:
        raise ConfigError(f"high must be > low, got low={low!r}, high={high!r}")

    tried: list[MSEMatch] = []  # holds only the closest result so far

    def evaluate(s: float) -> MSEMatch:
        img = distorted_target_fn(s)
        if not isinstance(img, torch.Tensor) or img.shape != reference.shape:
            got = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
            raise ShapeError(f"distorted_target_fn must return a tensor of shape {tuple(reference.shape)}, got {got}")
        res = MSEMatch(s, img, float(mse(img, reference).mean()))
        if not tried or abs(res.mse - t) < abs(tried[0].mse - t):
            tried[:] = [res]
        return res

    def closest() -> MSEMatch:
        return tried[0]

    r_lo = evaluate(lo)
    if r_lo.mse > t * (1.0 + rtol):
        raise ConfigError(f"the MSE at low={lo:g} ({r_lo.mse:.4g}) already exceeds target_mse={t:.4g}")
    r_hi = evaluate(hi)
    expand = 0
    while r_hi.mse < t:
        if expand >= max_expand:
            raise ConfigError(
                f"target_mse={t:.4g} not reachable: MSE is only {r_hi.mse:.4g} at severity {hi:g}"
            )
        lo, hi = hi, hi * 2.0
        r_hi = evaluate(hi)
        expand += 1
    for _ in range(max_iter):
        if abs(closest().mse - t) <= rtol * t:
            break
        mid = 0.5 * (lo + hi)
        if evaluate(mid).mse < t:
            lo = mid
        else:
            hi = mid
    return closest()
