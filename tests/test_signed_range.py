"""Issue 20: GAN tensors as they come. ``data_range=(low, high)`` (e.g. ``(-1, 1)``) for K-CROSS, every
registry metric, the torchmetrics classes, the losses, 2.5D scoring and ``kcross-eval``; 3-channel
grayscale (identical channels) taken as one channel; RangeError hints that name what works.

The contract tested here: a range is mapped ONCE, at the metric's entry, to the package's internal
convention, so scores (and loss gradients) for ``(-1, 1)`` inputs equal those of the same images
rescaled to [0, 1] with ``(x + 1) / 2``, bitwise; ``data_range=R`` and ``(0, R)`` are the same thing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from conftest import imagenet_available
from kcross_metric import KCross, create_metric, list_metrics
from kcross_metric._util.checks import (
    IntensityRange,
    check_data_range,
    format_data_range,
    intensity_range,
    prepare_image_pair,
)
from kcross_metric.baselines.dfd import DFD
from kcross_metric.data.phantom import make_pair
from kcross_metric.errors import ChannelError, ConfigError, NonFiniteError, RangeError
from kcross_metric.evaluation.volume25d import score_25d

CLASSICAL = ("mae", "psnr", "ssim", "ms_ssim", "nlpd", "gmsd")
DEEP = ("lpips_alex", "lpips_vgg", "dists")
#: smallest H = W each metric takes with its defaults (MS-SSIM: 161)
SIZE = {"ms_ssim": 161, "nlpd": 32, "lpips_alex": 32}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _unit_pair(size: int = 64, b: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Phantom (fake, real, source) slices (b,1,size,size) in [0, 1]."""
    pairs = [make_pair((size, size), seed=seed + i, blur_sigma=0.8) for i in range(b)]
    return tuple(torch.cat([p[k] for p in pairs]) for k in range(3))  # type: ignore[return-value]


def _signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1], the generator convention of pix2pix / CycleGAN (tanh output)."""
    return x * 2.0 - 1.0


def _rescaled(x: torch.Tensor) -> torch.Tensor:
    """What a user does by hand today: [-1, 1] -> [0, 1]."""
    return (x + 1.0) / 2.0


def _build(name: str, data_range: object = 1.0) -> Any:
    if name in DEEP and not imagenet_available():
        pytest.skip("ImageNet backbones not on disk (tests never download them)")
    if name == "kcross":
        return KCross.untrained(seed=0, data_range=data_range)
    return create_metric(name, data_range=data_range)


# ------------------------------------------------------------------------------ parsing the range
@pytest.mark.parametrize(
    "value, expected",
    [
        (1.0, IntensityRange(0.0, 1.0)),
        (255, IntensityRange(0.0, 255.0)),
        ((-1, 1), IntensityRange(-1.0, 1.0)),
        ([-1.0, 1.0], IntensityRange(-1.0, 1.0)),
        (torch.tensor([-1.0, 1.0]), IntensityRange(-1.0, 1.0)),
        (np.array([0.0, 4095.0]), IntensityRange(0.0, 4095.0)),
        (torch.tensor(2.0), IntensityRange(0.0, 2.0)),
        (IntensityRange(-0.5, 0.5), IntensityRange(-0.5, 0.5)),
    ],
)
def test_data_range_forms(value: object, expected: IntensityRange) -> None:
    rng = intensity_range(value)
    assert rng == expected and isinstance(rng.low, float) and isinstance(rng.high, float)
    # numbers stay numbers (backward compatible attribute), pairs become float tuples
    stored = check_data_range(value)
    number = not isinstance(value, (tuple, list, IntensityRange)) and getattr(value, "ndim", 0) == 0
    assert isinstance(stored, float) if number else stored == (expected.low, expected.high)


@pytest.mark.parametrize(
    "value, message",
    [
        ((1, 1), "low < high"),
        ((1, -1), "low < high"),
        ((0, float("nan")), "finite"),
        ((float("-inf"), 1), "finite"),
        ((0, 1, 2), "exactly two values"),
        ([1.0], "exactly two values"),
        ((), "exactly two values"),
        (("a", 1), "must be numbers"),
        (0, "positive"),
        (-1.0, "positive"),
        (float("inf"), "positive"),
        ("abc", "positive number R .* or a pair"),
        (None, "positive number R .* or a pair"),
    ],
)
def test_bad_ranges_are_typed_errors_everywhere(value: object, message: str) -> None:
    with pytest.raises(RangeError, match=message) as info:
        check_data_range(value)
    assert isinstance(info.value, ValueError)
    for build in (lambda: KCross.untrained(seed=0, data_range=value), lambda: create_metric("ssim", data_range=value)):
        with pytest.raises(RangeError, match=message):
            build()


def test_range_helpers() -> None:
    rng = intensity_range((-1, 1))
    assert (rng.span, rng.compute_range, str(rng)) == (2.0, 1.0, "[-1, 1]")
    x = torch.linspace(-1, 1, 11)
    assert torch.equal(rng.to_internal(x), (x + 1) / 2)
    assert intensity_range(255.0).compute_range == 255.0 and intensity_range((0, 255)).to_internal(x) is x
    assert format_data_range(1.0) == "1" and format_data_range((-1, 1)) == "(-1, 1)"
    assert torch.equal(rng.clamp(torch.tensor([-3.0, 0.5, 3.0])), torch.tensor([-1.0, 0.5, 1.0]))


def test_prepare_image_pair_maps_once_and_checks_in_user_units() -> None:
    x = torch.rand(1, 1, 8, 8) * 2 - 1
    a, b, dr = prepare_image_pair(x, x, data_range=(-1, 1))
    assert dr == 1.0 and torch.equal(a, _rescaled(x)) and torch.equal(b, _rescaled(x))
    y = torch.rand(1, 1, 8, 8)
    a, b, dr = prepare_image_pair(y, y, data_range=1.0)
    assert dr == 1.0 and a is y and b is y  # a range from 0: no mapping at all
    with pytest.raises(RangeError, match=r"x has values in \[.*\], expected \[-1, 1\]"):
        prepare_image_pair(x * 3, x, data_range=(-1, 1))


# ---------------------------------------------------------------------- scores: the equivalences
@pytest.mark.parametrize("name", ["kcross", *CLASSICAL, *DEEP])
def test_signed_inputs_score_as_the_rescaled_images_bitwise(name: str) -> None:
    size = SIZE.get(name, 48)
    fake, real, source = _unit_pair(size)
    signed, unit = _build(name, (-1, 1)), _build(name, 1.0)
    args = (fake, real, source) if name == "kcross" else (fake, real)
    expected = unit(*args)
    got = signed(*[_signed(t) for t in args])
    assert torch.equal(got, unit(*[_rescaled(_signed(t)) for t in args]))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)  # and (x*2-1+1)/2 ~ x
    assert signed.data_range == (-1.0, 1.0)
    assert ("data_range=(-1.0, 1.0)" if name == "kcross" else "data_range=(-1, 1)") in repr(signed)


@pytest.mark.parametrize("name", ["kcross", "mae", "psnr", "ssim", "gmsd"])
def test_range_from_zero_is_the_number_form_bitwise(name: str) -> None:
    fake, real, source = _unit_pair(48)
    args = [t * 255.0 for t in ((fake, real, source) if name == "kcross" else (fake, real))]
    assert torch.equal(_build(name, (0, 255))(*args), _build(name, 255.0)(*args))


def test_any_range_maps_affinely() -> None:
    fake, real, _ = _unit_pair(48)
    low, high = -1024.0, 3071.0  # e.g. CT-like units
    to = lambda t: t * (high - low) + low  # noqa: E731
    for name in ("psnr", "ssim", "kcross"):
        a = _build(name, (low, high))(to(fake), to(real))
        b = _build(name, 1.0)(fake, real)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_functional_forms_and_every_registry_name_take_a_range() -> None:
    from kcross_metric.baselines import gmsd, mae, ms_ssim, nlpd, psnr, ssim
    from kcross_metric.baselines.dfd import dfd

    fake, real, _ = _unit_pair(48)
    sf, sr = _signed(fake), _signed(real)
    for fn in (mae, psnr, ssim, nlpd, gmsd):
        assert torch.equal(fn(sf, sr, data_range=(-1, 1)), fn(_rescaled(sf), _rescaled(sr), data_range=1.0))
    kw = {"win_size": 3, "weights": (0.5, 0.5)}
    assert torch.equal(ms_ssim(sf, sr, (-1, 1), **kw), ms_ssim(_rescaled(sf), _rescaled(sr), 1.0, **kw))
    assert torch.equal(dfd(sf, sr, (-1, 1), preset="random"), dfd(_rescaled(sf), _rescaled(sr), preset="random"))
    # every registered name is built with a range (the ImageNet ones in the parametrized test above)
    for name in list_metrics():
        if name in DEEP or name == "dfd_vgg16":
            continue
        try:
            m = _build(name, (-1, 1))
        except Exception as exc:  # noqa: BLE001 - bundled weights missing in this build
            if type(exc).__name__ in ("UntrainedWeightsError", "WeightsNotFoundError"):
                continue
            raise
        assert intensity_range(m.data_range) == IntensityRange(-1.0, 1.0), name


class _TinyEncoder(nn.Module):
    """A 1-channel encoder (like SSFD): two feature maps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f = torch.relu(self.a(x))
        return [f, torch.relu(self.b(f))]


@pytest.mark.parametrize("normalization", ["imagenet", "zscore", "none", "minmax"])
def test_dfd_signed_and_gray_rgb(normalization: str) -> None:
    fake, real, _ = _unit_pair(32)
    enc = _TinyEncoder()
    in_ch = 1 if normalization in ("zscore", "none") else 3
    if in_ch == 3:
        enc.a = nn.Conv2d(3, 4, 3, padding=1)
    signed = DFD(enc, normalization=normalization, data_range=(-1, 1))
    unit = DFD(enc, normalization=normalization)
    sf, sr = _signed(fake), _signed(real)
    assert torch.equal(signed(sf, sr), unit(_rescaled(sf), _rescaled(sr)))
    assert torch.equal(signed.features(sf)[0], unit.features(_rescaled(sf))[0])
    rgb = lambda t: t.expand(-1, 3, -1, -1)  # noqa: E731
    assert torch.equal(signed(rgb(sf), rgb(sr)), signed(sf, sr))  # grayscale saved as RGB
    if in_ch == 1:
        with pytest.raises(ChannelError, match=r"mean\(dim=1, keepdim=True\)"):
            signed(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))


def test_explain_with_a_signed_range() -> None:
    fake, real, source = _unit_pair(48)
    a = KCross.untrained(seed=0, data_range=(-1, 1)).explain(_signed(fake), _signed(real), _signed(source))
    b = KCross.untrained(seed=0).explain(_rescaled(_signed(fake)), _rescaled(_signed(real)), _rescaled(_signed(source)))
    assert torch.equal(a.score, b.score) and torch.equal(a.error_map, b.error_map)
    assert torch.equal(a.kspace_error, b.kspace_error) and float(a.error_map.max()) <= 1.0


def test_kcross_volumes_with_a_signed_range() -> None:
    fake_v, real_v, source_v, _ = make_pair((16, 48, 48), seed=3)
    signed = KCross.untrained(seed=0, data_range=(-1, 1))
    unit = KCross.untrained(seed=0)
    a = signed.score(_signed(fake_v), _signed(real_v), _signed(source_v))
    b = unit.score(*[_rescaled(_signed(t)) for t in (fake_v, real_v, source_v)])
    assert torch.equal(a.score, b.score) and torch.equal(a.slice_used, b.slice_used)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- range errors
@pytest.mark.parametrize("name", ["kcross", *CLASSICAL])
@pytest.mark.parametrize(
    "data_range, scale, hint",
    [
        (1.0, "signed", r"values look like \[-1, 1\]: pass data_range=\(-1, 1\)"),
        (2.0, "signed", r"values look like \[-1, 1\]: pass data_range=\(-1, 1\)"),  # the second try
        ((-1, 1), "8bit", r"values look like \[0, 255\]: pass data_range=255\.0"),
        (1.0, "overshoot", r"values slightly overshoot \[0, 1\].*clamp\(0, 1\).*data_range="),
        (1.0, "zscore", r"pass data_range= \(kcross-eval: --data-range\) matching your intensity scale"),
    ],
)
def test_range_error_names_what_works(name: str, data_range: object, scale: str, hint: str) -> None:
    fake, real, _ = _unit_pair(SIZE.get(name, 48), b=1)
    x = {
        "signed": _signed(fake),
        "8bit": fake * 255.0,
        "overshoot": fake * 1.05 - 0.02,
        "zscore": (fake - fake.mean()) / fake.std(),
    }[scale]
    expected = intensity_range(data_range)
    ok = real if expected.low == 0.0 else real * expected.span + expected.low
    with pytest.raises(RangeError, match=rf"(fake|x) has values in \[.*\], expected {re.escape(str(expected))}; {hint}"):
        _build(name, data_range)(x, ok)


def test_pix2pix_first_try_message() -> None:
    """The exact situation of the issue: [-1, 1] tensors passed to a default metric."""
    fake, real, _ = _unit_pair(48, b=1)
    with pytest.raises(RangeError) as info:
        KCross.untrained(seed=0)(_signed(fake), _signed(real))
    msg = str(info.value)
    assert msg.startswith("fake has values in [") and "expected [0, 1]" in msg
    assert msg.endswith("values look like [-1, 1]: pass data_range=(-1, 1)")
    # and following the hint works
    assert KCross.untrained(seed=0, data_range=(-1, 1))(_signed(fake), _signed(real)).shape == (1,)


def test_tolerance_scales_with_the_span() -> None:
    fake, real, _ = _unit_pair(48, b=1)
    m = _build("psnr", (-1, 1))
    x = _signed(fake)
    x[0, 0, 0, 0] = -1.0 - 0.5e-3 * 2  # inside: tolerance is 1e-3 of the span (2)
    assert torch.isfinite(m(x, _signed(real))).all()
    x[0, 0, 0, 0] = -1.0 - 2e-3 * 2
    with pytest.raises(RangeError, match=r"expected \[-1, 1\]"):
        m(x, _signed(real))


# -------------------------------------------------------------------------- grayscale as RGB
def test_kcross_takes_grayscale_saved_as_rgb() -> None:
    fake, real, source = _unit_pair(48)
    m = KCross.untrained(seed=0)
    rgb = lambda t: torch.cat([t, t, t], dim=1)  # noqa: E731
    expected = m(fake, real, source)
    assert torch.equal(m(rgb(fake), rgb(real), rgb(source)), expected)
    assert torch.equal(m(fake.expand(-1, 3, -1, -1), real), m(fake, real))  # one RGB, one gray
    mask = torch.zeros_like(real)
    mask[:, :, 10:20, 10:20] = 1
    assert torch.equal(m(rgb(fake), rgb(real), mask=rgb(mask)), m(fake, real, mask=mask))
    assert torch.equal(m(rgb(fake), rgb(real), mask=mask), m(fake, real, mask=mask))
    # signed and RGB at once, as a pix2pix loop with grayscale images saved as RGB has them
    signed = KCross.untrained(seed=0, data_range=(-1, 1))
    assert torch.equal(signed(rgb(_signed(fake)), rgb(_signed(real))), m(_rescaled(_signed(fake)), _rescaled(_signed(real))))
    res = signed.score(rgb(_signed(fake)), rgb(_signed(real)))
    assert res.lesion_mask.shape == (2, 1, 48, 48)
    vol_f, vol_r, _, _ = make_pair((16, 32, 32), seed=1)
    assert torch.equal(m(rgb(vol_f), rgb(vol_r)), m(vol_f, vol_r))


def test_different_channels_say_how_to_reduce_them() -> None:
    fake, real, _ = _unit_pair(48, b=1)
    m = KCross.untrained(seed=0)
    colour = torch.cat([fake, fake * 0.9, fake * 0.8], dim=1)
    with pytest.raises(ChannelError) as info:
        m(colour, real.repeat(1, 3, 1, 1))
    msg = str(info.value)
    assert "fake must have 1 channel(s) in dim 1, got 3 that differ" in msg
    assert "fake.mean(dim=1, keepdim=True)" in msg and "rgb_to_gray(fake)" in msg and "fake[:, :1]" in msg
    with pytest.raises(ChannelError, match=r"must have 1 channel\(s\) in dim 1, got 2"):
        m(fake.repeat(1, 2, 1, 1), real.repeat(1, 2, 1, 1))
    nan = fake.repeat(1, 3, 1, 1)
    nan[0, 1, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError):
        m(nan, real)
    mask = torch.zeros(1, 3, 48, 48)
    mask[:, 0, :4, :4] = 1
    with pytest.raises(ChannelError, match="mask must have 1 channel"):
        m(fake, real, mask=mask)


def test_baselines_keep_scoring_every_channel() -> None:
    """The baselines already take C channels (RGB for LPIPS/DISTS); identical channels score as one."""
    fake, real, _ = _unit_pair(48)
    rgb = lambda t: t.repeat(1, 3, 1, 1)  # noqa: E731
    for name in ("mae", "psnr", "ssim"):
        m = _build(name, (-1, 1))
        torch.testing.assert_close(m(rgb(_signed(fake)), rgb(_signed(real))), m(_signed(fake), _signed(real)))


# ------------------------------------------------------------------------------------ the losses
def _generator_step_grads(data_range: object, to_input) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    pytest.importorskip("torchmetrics")
    from kcross_metric.integrations.metrics import KCrossLoss

    fake, real, source = _unit_pair(48)
    leaf = _signed(fake).clone().requires_grad_(True)  # a tanh generator's output
    loss_fn = KCrossLoss(KCross.untrained(seed=0, data_range=data_range))
    loss = loss_fn(to_input(leaf), to_input(_signed(real)), to_input(_signed(source)))
    loss.backward()
    assert leaf.grad is not None
    return loss.detach(), leaf.grad


def test_kcross_loss_values_and_gradients_equal_the_rescaled_ones() -> None:
    loss_a, grad_a = _generator_step_grads((-1, 1), lambda t: t)
    loss_b, grad_b = _generator_step_grads(1.0, _rescaled)  # the user rescales by hand
    assert torch.equal(loss_a, loss_b) and torch.equal(grad_a, grad_b)
    assert float(grad_a.abs().sum()) > 0


def test_kcross_loss_clamps_to_the_range() -> None:
    pytest.importorskip("torchmetrics")
    from kcross_metric.integrations.metrics import KCrossLoss

    fake, real, _ = _unit_pair(48, b=1)
    over = (_signed(fake) * 1.2).requires_grad_(True)  # a linear output layer overshoots
    with pytest.raises(RangeError, match=r"expected \[-1, 1\]"):
        KCrossLoss(KCross.untrained(seed=0, data_range=(-1, 1)))(over, _signed(real))
    loss = KCrossLoss(KCross.untrained(seed=0, data_range=(-1, 1)), clamp=True)(over, _signed(real))
    expected = KCrossLoss(KCross.untrained(seed=0), clamp=True)(_rescaled(over), _rescaled(_signed(real)))
    torch.testing.assert_close(loss, expected)


def test_cyclic25d_loss_with_a_signed_range() -> None:
    from kcross_metric.integrations.losses import Cyclic25DLoss, PlanePerceptualLoss

    fake_v, real_v, _, _ = make_pair((16, 16, 16), seed=2)

    def run(data_range: object, to_input) -> tuple[torch.Tensor, torch.Tensor, dict]:  # type: ignore[no-untyped-def]
        loss = Cyclic25DLoss(alpha=1.0, beta=0.5, gamma=0.5, data_range=data_range,
                             perceptual=PlanePerceptualLoss(lambda t: t, imagenet_norm=False))
        leaf = _signed(fake_v).clone().requires_grad_(True)
        value = loss(to_input(leaf), to_input(_signed(real_v)), 0)
        value.backward()
        return value.detach(), leaf.grad, dict(loss.last)  # type: ignore[return-value]

    va, ga, la = run((-1, 1), lambda t: t)
    vb, gb, lb = run(1.0, _rescaled)
    assert torch.equal(va, vb) and torch.equal(ga, gb) and la == lb
    loss = Cyclic25DLoss(beta=1.0, gamma=0.0, data_range=(-1, 1))
    assert torch.equal(loss(_signed(fake_v).repeat(1, 3, 1, 1, 1), _signed(real_v)), loss(_signed(fake_v), _signed(real_v)))
    with pytest.raises(RangeError, match=r"fake has values .* expected \[-1, 1\]"):
        loss(_signed(fake_v) * 3, _signed(real_v))
    # a float range keeps the old behaviour exactly
    old = Cyclic25DLoss(beta=1.0, gamma=0.0, data_range=1.0)
    assert torch.equal(old(fake_v, real_v), Cyclic25DLoss(beta=1.0, gamma=0.0, data_range=(0, 1))(fake_v, real_v))


# ----------------------------------------------------------------------------------- 2.5D scoring
def test_score_25d_with_a_signed_range() -> None:
    fake_v, real_v, _, _ = make_pair((16, 24, 24), seed=4)
    sf, sr = _signed(fake_v), _signed(real_v)
    for metric in ("psnr", "ssim"):
        a = score_25d(metric, sf, sr, data_range=(-1, 1))
        b = score_25d(metric, _rescaled(sf), _rescaled(sr), data_range=1.0)
        torch.testing.assert_close(a.value, b.value)
        assert all(torch.equal(a.n_slices[p], b.n_slices[p]) for p in a.planes)  # same brain mask
    # a module with the same range; padding uses the range's lower bound (the background)
    m = create_metric("ssim", data_range=(-1, 1), reduction="none")
    a = score_25d(m, sf, sr, data_range=(-1, 1), spacing=(2.0, 1.0, 1.0))
    b = score_25d("ssim", _rescaled(sf), _rescaled(sr), data_range=1.0, spacing=(2.0, 1.0, 1.0))
    torch.testing.assert_close(a.value, b.value, rtol=1e-5, atol=1e-5)
    k = score_25d(KCross.untrained(seed=0, data_range=(-1, 1)), sf.repeat(1, 3, 1, 1, 1), sr, data_range=(-1, 1),
                  planes=("axial",))
    kb = score_25d(KCross.untrained(seed=0), _rescaled(sf), _rescaled(sr), planes=("axial",))
    torch.testing.assert_close(k.value, kb.value)
    with pytest.raises(ConfigError, match=r"data_range=\(-1\.0, 1\.0\) but score_25d got data_range=1"):
        score_25d(m, fake_v, real_v, data_range=1.0)


# --------------------------------------------------------------- torchmetrics classes (pix2pix)
def test_pix2pix_loop_passes_its_tensors_straight_in() -> None:
    pytest.importorskip("torchmetrics")
    from kcross_metric.integrations.metrics import KCrossMetric, PSNRMetric, RegistryMetric, SSIMMetric

    batches = [_unit_pair(48, b=2, seed=s) for s in (0, 2)]
    signed = {
        "kcross": KCrossMetric(module=KCross.untrained(seed=0, data_range=(-1, 1))),
        "ssim": SSIMMetric(data_range=(-1, 1)),
        "psnr": PSNRMetric(data_range=(-1, 1)),
        "mae": RegistryMetric("mae", data_range=(-1, 1)),
    }
    unit = {
        "kcross": KCrossMetric(module=KCross.untrained(seed=0)),
        "ssim": SSIMMetric(data_range=1.0),
        "psnr": PSNRMetric(data_range=1.0),
        "mae": RegistryMetric("mae", data_range=1.0),
    }
    rgb = lambda t: t.repeat(1, 3, 1, 1)  # noqa: E731
    for fake, real, source in batches:
        sf, sr, ss = _signed(fake), _signed(real), _signed(source)
        signed["kcross"].update(rgb(sf), rgb(sr), rgb(ss))  # grayscale saved as RGB too
        unit["kcross"].update(_rescaled(sf), _rescaled(sr), _rescaled(ss))
        for key in ("ssim", "psnr", "mae"):
            signed[key].update(sf, sr)
            unit[key].update(_rescaled(sf), _rescaled(sr))
    for key in signed:
        assert torch.equal(signed[key].compute(), unit[key].compute()), key
    with pytest.raises(RangeError, match=r"pass data_range=\(-1, 1\)"):
        SSIMMetric(data_range=1.0).update(_signed(batches[0][0]), _signed(batches[0][1]))


# ------------------------------------------------------------------------------- kcross-eval CLI
def _pair_csv(folder: Path, transform) -> Path:  # type: ignore[no-untyped-def]
    fake, real, _ = _unit_pair(32, b=2)
    rows = ["reference,a,b,better"]
    for i in range(2):
        np.save(folder / f"r{i}.npy", transform(real[i, 0]).numpy())
        np.save(folder / f"a{i}.npy", transform(fake[i, 0]).numpy())
        np.save(folder / f"b{i}.npy", transform(real[i, 0].flip(-1)).numpy())
        rows.append(f"r{i}.npy,a{i}.npy,b{i}.npy,a")
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    return folder / "pairs.csv"


def test_eval_cli_and_library_take_a_range(tmp_path: Path) -> None:
    from kcross_metric.cli.eval import build_parser, main
    from kcross_metric.evaluation.rated import score_pairs

    (tmp_path / "s").mkdir()
    (tmp_path / "u").mkdir()
    signed_csv = _pair_csv(tmp_path / "s", _signed)
    unit_csv = _pair_csv(tmp_path / "u", lambda t: _rescaled(_signed(t)))
    _, a = score_pairs(signed_csv, ["psnr", "ssim"], data_range=(-1, 1))
    _, b = score_pairs(unit_csv, ["psnr", "ssim"], data_range=1.0)
    for m in ("psnr", "ssim"):
        assert np.array_equal(a[m][0], b[m][0]) and np.array_equal(a[m][1], b[m][1])
    # --clip clips to the range, not to [0, R]
    _, c = score_pairs(signed_csv, ["psnr"], data_range=(-1, 1), clip=True)
    assert np.array_equal(c["psnr"][0], a["psnr"][0])

    parser = build_parser()
    base = ["2afc", str(signed_csv), "--metrics", "psnr"]
    assert parser.parse_args([*base, "--data-range=-1,1"]).data_range == (-1.0, 1.0)
    assert parser.parse_args([*base, "--data-range", "2"]).data_range == 2.0
    for bad in ("1,1", "0,nan", "1,2,3", "a,b", "0"):
        with pytest.raises(SystemExit):
            parser.parse_args([*base, f"--data-range={bad}"])
    out = tmp_path / "2afc.md"
    # "--data-range -1,1" (space) works too: main() joins it before argparse sees "-1,1"
    assert main([*base, "--data-range", "-1,1", "--n-boot", "0", "--out", str(out)]) == 0
    assert "data_range=(-1, 1)" in out.read_text(encoding="utf-8")
    assert main([*base, "--data-range", "1", "--n-boot", "0", "--out", str(tmp_path / "bad.md")]) == 2

