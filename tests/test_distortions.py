"""Defining properties of the MR distortions (synthetic 64x64 phantoms, no data needed)."""

from __future__ import annotations

import math

import pytest
import torch

from kcross_metric.data import distortions as D
from kcross_metric.errors import ChannelError, ConfigError, RangeError, ShapeError

H = W = 64


def _phantom(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """A textured elliptical 'brain' (0.3..0.55) on a zero background with a bright round lesion (0.9)."""
    yy, xx = torch.meshgrid(torch.arange(H, dtype=dtype), torch.arange(W, dtype=dtype), indexing="ij")
    brain = ((yy - 32) ** 2 / 28**2 + (xx - 32) ** 2 / 24**2 <= 1).to(dtype)
    tissue = 0.42 + 0.08 * torch.sin(xx / 4.0) + 0.05 * torch.cos(yy / 6.0)
    lesion = ((yy - 26) ** 2 + (xx - 36) ** 2 <= 7**2).to(dtype)
    x = torch.where(lesion > 0, torch.full_like(tissue, 0.9), tissue) * brain
    return x[None, None], lesion[None, None]


def _ring(mask: torch.Tensor, width: int = 4) -> torch.Tensor:
    return D._dilate(mask, width) - mask


def _contrast(img: torch.Tensor, mask: torch.Tensor) -> float:
    ring = _ring(mask)
    return float((img * mask).sum() / mask.sum() - (img * ring).sum() / ring.sum())


@pytest.fixture
def phantom() -> tuple[torch.Tensor, torch.Tensor]:
    return _phantom()


# ------------------------------------------------------------------ k-space


@pytest.mark.parametrize("pattern", ["equispaced", "random"])
def test_undersample_identity_cases(phantom, pattern):
    x, _ = phantom
    torch.testing.assert_close(D.undersample(x, 1.0, 0.08, pattern=pattern), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(D.undersample(x, 6.0, 1.0, pattern=pattern), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("pattern", ["equispaced", "random"])
@pytest.mark.parametrize("acc", [2, 4, 8])
def test_cartesian_mask_line_count_and_centre(pattern, acc):
    mask = D.cartesian_mask(256, acc, 0.08, pattern=pattern, generator=3)
    assert mask.dtype == torch.bool and mask.shape == (256,)
    n_low = round(256 * 0.08)
    start = (256 - n_low + 1) // 2
    assert bool(mask[start : start + n_low].all())
    if pattern == "equispaced":
        assert abs(int(mask.sum()) - 256 / acc) <= 2
    else:  # binomial line count: check its mean over seeds
        counts = [int(D.cartesian_mask(256, acc, 0.08, pattern="random", generator=s).sum()) for s in range(100)]
        assert abs(sum(counts) / len(counts) - 256 / acc) < 1.5


def test_undersample_equispaced_r2_without_centre_is_half_fov_aliasing(phantom):
    # every other line kept: the image plus a copy shifted by W/2, each at half amplitude
    x, _ = phantom
    y = D.undersample(x, 2.0, 0.0, pattern="equispaced", generator=0)
    mask = D.cartesian_mask(W, 2.0, 0.0, generator=0)
    assert int(mask.sum()) == W // 2
    k = torch.fft.fft2(x.double(), norm="ortho") * torch.fft.ifftshift(mask).double()
    torch.testing.assert_close(y.double(), torch.fft.ifft2(k, norm="ortho").abs().clamp(0, 1), atol=1e-5, rtol=0)
    assert float(D.mse(y, x)) > 1e-3


def test_undersample_severity_and_determinism(phantom):
    x, _ = phantom
    mild = D.undersample(x, 2, 0.08, pattern="random", generator=1)
    severe = D.undersample(x, 8, 0.08, pattern="random", generator=1)
    assert float(D.mse(severe, x)) > 2 * float(D.mse(mild, x))
    torch.testing.assert_close(mild, D.undersample(x, 2, 0.08, pattern="random", generator=1), atol=0, rtol=0)
    assert not torch.equal(mild, D.undersample(x, 2, 0.08, pattern="random", generator=2))


def test_ghosting_zero_phase_is_identity(phantom):
    x, _ = phantom
    torch.testing.assert_close(D.ghosting(x, 0.0), x, atol=1e-5, rtol=0)


def test_ghosting_pi_is_a_half_fov_shift(phantom):
    x, _ = phantom
    torch.testing.assert_close(D.ghosting(x, math.pi), torch.roll(x, W // 2, dims=-1), atol=1e-5, rtol=0)


def test_ghost_amplitude_is_sin_half_phase():
    # object in the left quarter only: its ghost lands in an empty region with amplitude |sin(phi/2)|
    x = torch.zeros(1, 1, H, W)
    x[..., 20:40, 4:14] = 0.8
    phi = 0.7
    y = D.ghosting(x, phi)
    ghost = y[..., 20:40, 4 + W // 2 : 14 + W // 2]
    torch.testing.assert_close(ghost, torch.full_like(ghost, 0.8 * abs(math.sin(phi / 2))), atol=1e-4, rtol=0)
    obj = y[..., 20:40, 4:14]
    torch.testing.assert_close(obj, torch.full_like(obj, 0.8 * abs(math.cos(phi / 2))), atol=1e-4, rtol=0)


def test_motion_identity_energy_and_severity(phantom):
    x, _ = phantom
    torch.testing.assert_close(D.motion(x, 0.0, 3.0), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(D.motion(x, 0.4, 0.0), x, atol=1e-5, rtol=0)
    y = D.motion(x, 0.4, 3.0, generator=5)
    # phase-only k-space corruption keeps the energy (Parseval), up to clipping at 1
    assert abs(float(y.pow(2).sum() / x.pow(2).sum()) - 1.0) < 0.03
    small = D.motion(x, 0.4, 0.5, generator=5)
    assert float(D.mse(y, x)) > 3 * float(D.mse(small, x)) > 0


def test_spike_identity_and_stripe_amplitude():
    x = torch.full((1, 1, H, W), 0.5)
    torch.testing.assert_close(D.spike(x, 0.0), x, atol=1e-5, rtol=0)
    y = D.spike(x, 0.2, position=(5, 9), generator=0)
    # |c + 0.2 c exp(i psi)| over a full period of psi: ranges over [0.4, 0.6]
    assert abs(float(y.min()) - 0.4) < 0.01 and abs(float(y.max()) - 0.6) < 0.01
    spec = torch.fft.fft2(y[0, 0] - y.mean()).abs()
    spec[0, 0] = 0
    peak = int(spec.argmax())
    assert (peak // W, peak % W) in {(5, 9), (H - 5, W - 9)}


# ------------------------------------------------------------------ global


def test_rician_noise_identity_and_rayleigh_background():
    x = torch.zeros(1, 1, 128, 128)
    x[..., :, 64:] = 0.6
    torch.testing.assert_close(D.rician_noise(x, 0.0), x, atol=0, rtol=0)
    s = 0.05
    y = D.rician_noise(x, s, generator=0)
    # background: Rayleigh with mean sigma*sqrt(pi/2); bright half: ~ sqrt(A^2 + sigma^2)
    assert abs(float(y[..., :, :64].mean()) / (s * math.sqrt(math.pi / 2)) - 1) < 0.03
    assert abs(float(y[..., :, 64:].mean()) - math.sqrt(0.36 + s * s)) < 0.003


def test_gaussian_noise_std(phantom):
    x = torch.full((1, 1, 128, 128), 0.5)
    torch.testing.assert_close(D.gaussian_noise(x, 0.0), x, atol=0, rtol=0)
    y = D.gaussian_noise(x, 0.05, generator=1)
    assert abs(float((y - x).std()) / 0.05 - 1) < 0.03


def test_gaussian_blur_identity_and_second_moment():
    x = torch.zeros(1, 1, H, W)
    torch.testing.assert_close(D.gaussian_blur(_phantom()[0], 0.0), _phantom()[0], atol=0, rtol=0)
    x[..., 32, 32] = 1.0
    sigma = 2.0
    y = D.gaussian_blur(x, sigma)[0, 0].double()
    assert abs(float(y.sum()) - 1.0) < 1e-5
    t = torch.arange(W, dtype=torch.float64) - 32
    assert abs(float((y.sum(0) * t**2).sum()) - sigma**2) < 0.01
    assert abs(float((y.sum(1) * t**2).sum()) - sigma**2) < 0.01


def test_bias_field_identity_and_range():
    x = torch.full((2, 1, H, W), 0.4)
    torch.testing.assert_close(D.bias_field(x, 0.0), x, atol=1e-7, rtol=0)
    a = 0.3
    y = D.bias_field(x, a, generator=2)
    ratio = (y / x).flatten(1)
    # field = exp(a*s) with max|s| = 1 reached on the grid: one extreme equals e^{+-a}
    for r in ratio:
        assert float(r.max()) <= math.exp(a) + 1e-5 and float(r.min()) >= math.exp(-a) - 1e-5
        assert min(abs(float(r.max()) - math.exp(a)), abs(float(r.min()) - math.exp(-a))) < 1e-5
    assert not torch.equal(y[0], y[1])  # one field per sample
    # smooth: neighbouring pixels differ by far less than the field range
    assert float((y[..., 1:, :] - y[..., :-1, :]).abs().max()) < 0.02


def test_contrast_change(phantom):
    x, _ = phantom
    torch.testing.assert_close(D.contrast_change(x), x, atol=0, rtol=0)
    torch.testing.assert_close(D.contrast_change(x, gamma=2.0), x**2, atol=1e-6, rtol=0)
    torch.testing.assert_close(D.contrast_change(x, scale=0.5, offset=0.1), (0.5 * x + 0.1).clamp(0, 1))


def test_intensity_change_in_mask(phantom):
    x, m = phantom
    y = D.intensity_change_in_mask(x, m, 0.5)
    torch.testing.assert_close(y[m == 0], x[m == 0], atol=0, rtol=0)
    torch.testing.assert_close(y[m > 0], 0.5 * x[m > 0])
    torch.testing.assert_close(D.intensity_change_in_mask(x, m, 1.0), x, atol=0, rtol=0)


# ------------------------------------------------------------------ lesion edits


def test_erase_lesion_removes_contrast_without_a_hole(phantom):
    x, m = phantom
    before = _contrast(x, m)
    y = D.erase_lesion(x, m, generator=0)
    after = _contrast(y, m)
    assert before > 0.4
    assert abs(after) < 0.1 * before
    ring = _ring(m)
    ring_mean = float((x * ring).sum() / ring.sum())
    fill_mean = float((y * m).sum() / m.sum())
    assert abs(fill_mean - ring_mean) < 0.1 * ring_mean  # healthy tissue level, not a black hole
    outside = D._dilate(m, 2) == 0
    torch.testing.assert_close(y[outside], x[outside], atol=0, rtol=0)


def test_erase_lesion_texture_determinism_and_empty_mask(phantom):
    x, m = phantom
    a = D.erase_lesion(x, m, generator=1)
    torch.testing.assert_close(a, D.erase_lesion(x, m, generator=1), atol=0, rtol=0)
    assert not torch.equal(a, D.erase_lesion(x, m, generator=2))
    flat = D.erase_lesion(x, m, texture=False)
    assert float((a - flat)[m > 0].std()) > 1e-3  # texture adds variation inside the fill
    torch.testing.assert_close(D.erase_lesion(x, torch.zeros_like(m)), x, atol=0, rtol=0)


def test_shrink_lesion(phantom):
    x, m = phantom
    y = D.shrink_lesion(x, m, 3, generator=0)
    bright_before = int((x > 0.8).sum())
    bright_after = int((y > 0.8).sum())
    assert bright_after < 0.6 * bright_before
    core = D._erode(m, 3)
    torch.testing.assert_close(y[core > 0], x[core > 0], atol=0, rtol=0)
    # eroding away the whole lesion is the same as erasing it
    torch.testing.assert_close(D.shrink_lesion(x, m, 20, generator=4), D.erase_lesion(x, m, generator=4))
    with pytest.raises(ConfigError):
        D.shrink_lesion(x, m, -1)


def test_change_lesion_intensity(phantom):
    x, m = phantom
    torch.testing.assert_close(D.change_lesion_intensity(x, m, 1.0), x, atol=1e-6, rtol=0)
    c0 = _contrast(x, m)
    half = D.change_lesion_intensity(x, m, 0.5)
    assert 0.4 * c0 < _contrast(half, m) < 0.6 * c0
    assert abs(_contrast(D.change_lesion_intensity(x, m, 0.0), m)) < 0.1 * c0
    torch.testing.assert_close(half[m == 0], x[m == 0], atol=0, rtol=0)


SHIFT = (14, -16)  # phantom lesion (centre (26, 36), r=7) -> centre (40, 20): on brain, clear of the original


def _shifted(mask: torch.Tensor, shift: tuple[int, int]) -> torch.Tensor:
    out = torch.roll(mask, shift, dims=(-2, -1))
    assert float(out.sum()) == float(mask.sum())  # nothing wrapped around
    return out


def test_implant_and_move_identity_cases(phantom):
    x, m = phantom
    for fn in (D.implant_lesion, D.move_lesion):
        torch.testing.assert_close(fn(x, m, (0, 0)), x, atol=0, rtol=0)
        torch.testing.assert_close(fn(x, torch.zeros_like(m), SHIFT), x, atol=0, rtol=0)


def test_implant_lesion_copies_the_lesion(phantom):
    x, m = phantom
    y = D.implant_lesion(x, m, SHIFT, feather=2)
    ms = _shifted(m, SHIFT)
    core = D._erode(ms, 1)
    torch.testing.assert_close(y[core > 0], _shifted(x, SHIFT)[core > 0], atol=0, rtol=0)
    torch.testing.assert_close(y[ms > 0], x[m > 0], atol=0, rtol=0)  # w is 1 on the whole shifted lesion
    outside = D._dilate(ms, 2) == 0
    torch.testing.assert_close(y[outside], x[outside], atol=0, rtol=0)
    torch.testing.assert_close(y[m > 0], x[m > 0], atol=0, rtol=0)  # the original lesion stays
    # soft border: the feathered ring lies between the tissue and the copied surroundings
    ring = (D._dilate(ms, 2) - ms) > 0
    src = _shifted(x, SHIFT)
    lo, hi = torch.minimum(x, src), torch.maximum(x, src)
    assert bool(((y[ring] >= lo[ring] - 1e-6) & (y[ring] <= hi[ring] + 1e-6)).all())
    hard = D.implant_lesion(x, m, SHIFT, feather=0)
    torch.testing.assert_close(hard, torch.where(ms > 0, src, x), atol=0, rtol=0)


def test_move_lesion_erases_and_pastes(phantom):
    x, m = phantom
    y = D.move_lesion(x, m, SHIFT, generator=0)
    ms = _shifted(m, SHIFT)
    torch.testing.assert_close(y[ms > 0], x[m > 0], atol=0, rtol=0)  # original content at the target
    c0 = _contrast(x, m)
    assert abs(_contrast(y, m)) < 0.1 * c0  # original lesion erased
    assert _contrast(y, ms) > 0.9 * c0
    away = D._dilate(ms, 2) == 0
    torch.testing.assert_close(y[away], D.erase_lesion(x, m, generator=0)[away], atol=0, rtol=0)
    untouched = (D._dilate(ms, 2) == 0) & (D._dilate(m, 2) == 0)
    torch.testing.assert_close(y[untouched], x[untouched], atol=0, rtol=0)


@pytest.mark.parametrize("fn", [D.implant_lesion, D.move_lesion], ids=["implant", "move"])
@pytest.mark.parametrize(
    "shift",
    [(40, 0), (-20, 0), (0, 30), (0, -30), (1.5, 0), (1.0, 2), (True, 0), (1,), (1, 2, 3), "ab", 3],
)
def test_lesion_shift_errors(phantom, fn, shift):
    x, m = phantom  # lesion rows 19..33, columns 29..43
    with pytest.raises(ConfigError):
        fn(x, m, shift)


def test_lesion_shift_edge_of_image_and_feather_error(phantom):
    x, m = phantom
    assert D.implant_lesion(x, m, (-19, 20)).shape == x.shape  # lesion touches the top-right corner
    with pytest.raises(ConfigError):
        D.implant_lesion(x, m, SHIFT, feather=-1)


def _disc_brain(radius: float, lesion_r: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    brain = ((yy - 32) ** 2 + (xx - 32) ** 2 <= radius**2).float()
    lesion = ((yy - 32) ** 2 + (xx - 30) ** 2 <= lesion_r**2).float()
    x = (0.5 * brain + 0.4 * lesion).clamp(0, 1)
    return x[None, None], lesion[None, None]


def test_find_lesion_shift_meets_its_conditions():
    x, m = _disc_brain(26.0)
    shifts = set()
    for seed in range(5):
        s = D.find_lesion_shift(x, m, generator=seed, min_distance=6)
        assert s is not None and all(type(v) is int for v in s)
        ms = torch.roll(m, s, dims=(-2, -1))
        assert float(ms.sum()) == float(m.sum())  # (a) inside the image, no wrap-around
        assert float((ms * D._dilate(m, 6)).sum()) == 0  # (b) clearly elsewhere
        assert float((x[ms > 0] > 0.05).float().mean()) >= 0.95  # (c) on brain
        assert s == D.find_lesion_shift(x, m, generator=seed, min_distance=6)  # deterministic
        assert s == D.find_lesion_shift(x, m, generator=torch.Generator().manual_seed(seed), min_distance=6)
        shifts.add(s)
        D.implant_lesion(x, m, s)  # a valid shift for the edits
    assert len(shifts) > 1


def test_find_lesion_shift_none_and_errors():
    x, m = _disc_brain(7.0)  # the brain barely holds the lesion: nowhere else to put it
    assert D.find_lesion_shift(x, m, generator=0) is None
    x, m = _disc_brain(26.0)
    assert D.find_lesion_shift(x, torch.zeros_like(m)) is None
    with pytest.raises(ShapeError):
        D.find_lesion_shift(x.repeat(2, 1, 1, 1), m.repeat(2, 1, 1, 1))
    with pytest.raises(ConfigError):
        D.find_lesion_shift(x, m, min_brain_fraction=1.5)
    with pytest.raises(ConfigError):
        D.find_lesion_shift(x, m, tries=0)


# ------------------------------------------------------------------ MSE matching


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, s: D.rician_noise(x, s, generator=3),
        lambda x, s: D.gaussian_noise(x, s, generator=3),
        lambda x, s: D.gaussian_blur(x, s),
        lambda x, s: D.bias_field(x, s, generator=3),
    ],
    ids=["rician", "gaussian", "blur", "bias"],
)
@pytest.mark.parametrize("target", [5e-4, 3e-3])
def test_match_mse_hits_target(phantom, fn, target):
    x, _ = phantom
    res = D.match_mse(x, lambda s: fn(x, s), target, high=0.05)
    assert abs(res.mse / target - 1) < 0.02
    assert abs(float(D.mse(res.image, x)) / target - 1) < 0.02
    torch.testing.assert_close(res.image, fn(x, res.severity))


def test_match_mse_errors(phantom):
    x, _ = phantom
    with pytest.raises(ConfigError, match="not reachable"):
        D.match_mse(x, lambda s: D.gaussian_blur(x, s), 0.5, high=2.0, max_expand=0)
    with pytest.raises(ConfigError):
        D.match_mse(x, lambda s: x, -1.0)
    with pytest.raises(ShapeError):
        D.match_mse(x, lambda s: x[..., :10, :10], 1e-3)


# ------------------------------------------------------------------ contract


ALL = {
    "undersample": lambda x, m: D.undersample(x, 4, 0.08),
    "ghosting": lambda x, m: D.ghosting(x, 0.5),
    "motion": lambda x, m: D.motion(x, 0.3, 2.0),
    "spike": lambda x, m: D.spike(x, 0.2),
    "rician_noise": lambda x, m: D.rician_noise(x, 0.05),
    "gaussian_noise": lambda x, m: D.gaussian_noise(x, 0.05),
    "gaussian_blur": lambda x, m: D.gaussian_blur(x, 1.0),
    "bias_field": lambda x, m: D.bias_field(x, 0.3),
    "contrast_change": lambda x, m: D.contrast_change(x, 0.5, 1.5),
    "intensity_change_in_mask": lambda x, m: D.intensity_change_in_mask(x, m, 1.5),
    "erase_lesion": lambda x, m: D.erase_lesion(x, m),
    "shrink_lesion": lambda x, m: D.shrink_lesion(x, m, 2),
    "change_lesion_intensity": lambda x, m: D.change_lesion_intensity(x, m, 0.3),
    "implant_lesion": lambda x, m: D.implant_lesion(x, m, SHIFT),
    "move_lesion": lambda x, m: D.move_lesion(x, m, SHIFT),
}


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_range_and_determinism(name, dtype):
    x, m = _phantom(dtype)
    x, m = x.repeat(2, 1, 1, 1), m.repeat(2, 1, 1, 1)
    y = ALL[name](x, m)
    assert y.shape == x.shape and y.dtype == dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert float(D.mse(y, x).min()) > 1e-6  # every one of these severities changes the image
    torch.testing.assert_close(ALL[name](x, m), y, atol=0, rtol=0)


def test_torch_generator_is_accepted_and_advances(phantom):
    x, _ = phantom
    g = torch.Generator().manual_seed(7)
    first = D.rician_noise(x, 0.05, generator=g)
    second = D.rician_noise(x, 0.05, generator=g)
    assert not torch.equal(first, second)
    torch.testing.assert_close(first, D.rician_noise(x, 0.05, generator=7), atol=0, rtol=0)


def test_input_validation(phantom):
    x, m = phantom
    with pytest.raises(ShapeError):
        D.gaussian_blur(x[0], 1.0)
    with pytest.raises(ChannelError):
        D.gaussian_blur(x.repeat(1, 3, 1, 1), 1.0)
    with pytest.raises(RangeError):
        D.gaussian_blur(x * 3, 1.0)
    with pytest.raises(ConfigError):
        D.rician_noise(x, -0.1)
    with pytest.raises(ConfigError):
        D.undersample(x, 0.5)
    with pytest.raises(ConfigError):
        D.undersample(x, 4, 0.08, pattern="spiral")
    with pytest.raises(ConfigError):
        D.motion(x, 1.5, 1.0)
    with pytest.raises(ConfigError):
        D.rician_noise(x, 0.1, generator="seed")  # type: ignore[arg-type]
    with pytest.raises(ShapeError):
        D.erase_lesion(x, m[..., :10])


def test_misregister_identity_shift_and_rotation():
    x = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    x[..., 10:20, 12:16] = 1.0
    assert torch.equal(D.misregister(x, 0.0), x)
    moved = D.misregister(x, 0.0, (2.0, 3.0))
    assert torch.equal(moved[..., 12:22, 15:19], x[..., 10:20, 12:16]) and moved.dtype == torch.float64
    turned = D.misregister(x, 90.0)
    assert float(turned.sum()) == pytest.approx(float(x.sum()), rel=0.05) and not torch.equal(turned, x)
    with pytest.raises(ConfigError):
        D.misregister(x, float("nan"))
