"""KCross module: API contract, shapes, independence of batch items, gradients, errors."""

import pytest
import torch

from kcross_metric import KCross, create_metric
from kcross_metric.data.phantom import make_pair
from kcross_metric.errors import (
    ChannelError,
    ConfigError,
    DTypeError,
    NonFiniteError,
    RangeError,
    ShapeError,
    UntrainedWeightsError,
)


@pytest.fixture(scope="module")
def metric():
    return KCross.untrained(seed=0)


@pytest.fixture(scope="module")
def pair():
    fake, real, source, mask = make_pair((64, 64), seed=1)
    return fake, real, source, mask


def test_identical_inputs_score_one(metric, pair):
    _, real, source, _ = pair
    assert torch.allclose(metric(real, real, source), torch.ones(1), atol=1e-5)


def test_scores_in_unit_interval_and_per_sample_shape(metric, pair):
    fake, real, source, _ = pair
    s = metric(fake, real, source)
    assert s.shape == (1,)
    assert 0.0 <= float(s) < 1.0
    batch = metric(torch.cat([fake, real]), torch.cat([real, real]))
    assert batch.shape == (2,)


def test_score_does_not_depend_on_batch(metric, pair):
    fake, real, source, _ = pair
    alone = metric(fake, real, source)
    other = torch.rand_like(fake)
    batched = metric(torch.cat([fake, other, fake]), torch.cat([real, real, real]), torch.cat([source, source, source]))
    assert torch.allclose(batched[0], alone[0], atol=1e-6)
    assert torch.allclose(batched[2], alone[0], atol=1e-6)


def test_deterministic(metric, pair):
    fake, real, source, _ = pair
    assert torch.equal(metric(fake, real, source), metric(fake, real, source))


def test_data_range_scaling(pair):
    fake, real, source, _ = pair
    a = KCross.untrained(seed=0)(fake, real, source)
    b = KCross.untrained(seed=0, data_range=255.0)(fake * 255, real * 255, source * 255)
    assert torch.allclose(a, b, atol=1e-5)


def test_reductions(pair):
    fake, real, _, _ = pair
    f, r = torch.cat([fake, real]), torch.cat([real, real])
    none = KCross.untrained(reduction="none")(f, r)
    assert torch.allclose(KCross.untrained(reduction="mean")(f, r), none.mean())
    assert torch.allclose(KCross.untrained(reduction="sum")(f, r), none.sum())


def test_gradients_reach_fake_not_networks(metric, pair):
    fake, real, source, _ = pair
    fake = fake.clone().requires_grad_(True)
    metric(fake, real, source).sum().backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in metric.parameters())
    assert not any(p.requires_grad for p in metric.parameters())


def test_metric_stays_in_eval_mode(metric, pair):
    fake, real, _, _ = pair
    before = metric(fake, real)
    metric.train()
    assert not metric.nets.training
    assert torch.equal(metric(fake, real), before)


def test_source_is_optional_and_changes_structure_branch(metric, pair):
    fake, real, source, _ = pair
    with_source = metric.score(fake, real, source)
    without = metric.score(fake, real)
    assert without.score.shape == (1,)
    assert not torch.allclose(with_source.branches["structure"], without.branches["structure"])


def test_user_mask_overrides_and_healthy_drops_tumor_branch(metric, pair):
    fake, real, source, mask = pair
    with_mask = metric.score(fake, real, source, mask=mask)
    assert bool(with_mask.has_lesion[0])
    assert with_mask.lesion_mask.shape == fake.shape
    assert torch.equal(with_mask.lesion_mask, mask > 0.5)
    healthy = metric.score(fake, real, source, mask=torch.zeros_like(mask))
    assert not bool(healthy.has_lesion[0])
    # an empty region zeroes the tumor branch's region vector; what remains of the branch (v2) is the
    # lesion-change term, from the segmenter: with one that sees no lesion anywhere the branch is 1
    assert torch.count_nonzero(metric.slice_features(fake, real, source, torch.zeros_like(mask))["tumor"]) == 0
    blind = KCross.from_networks(metric.nets, segmenter=torch.zeros_like)
    assert float(blind.score(fake, real, source, mask=torch.zeros_like(mask)).branches["tumor"]) == pytest.approx(1.0)
    v1 = KCross.untrained(seed=0, design="v1")
    assert float(v1.score(fake, real, source, mask=torch.zeros_like(mask)).branches["tumor"]) == pytest.approx(1.0)


def test_v2_region_does_not_move_with_the_fake(metric, pair):
    fake, real, source, _ = pair
    # the v2 lesion region comes from real and source only: any fake gives the same region
    seen = KCross.from_networks(metric.nets, segmenter=lambda x: (x > 0.6).float())
    a = seen.score(fake, real, source).lesion_mask
    b = seen.score(torch.zeros_like(fake), real, source).lesion_mask
    assert torch.equal(a, b)
    # ... and a lesion the fake adds shows in the lesion-change features instead
    added = real.clone()
    added[..., 10:30, 10:30] = 0.9
    change = seen.slice_features(added, real, source, None)["lesion_change"]
    assert float(change[0, 0]) > 0 and float(change[0, 1]) == 0.0
    assert torch.equal(seen.slice_features(real, real, source, None)["lesion_change"], torch.zeros(1, 2))


def test_custom_segmenter_callable(pair):
    fake, real, source, mask = pair
    calls = []

    def seg(image):
        calls.append(image.shape)
        return mask.expand(image.shape[0], -1, -1, -1)

    m = KCross.untrained(segmenter=seg)
    res = m.score(fake, real, source)
    assert calls and bool(res.has_lesion[0])


def test_segment_returns_the_mask_the_metric_uses(pair):
    fake, real, source, mask = pair
    half = mask[..., :, : mask.shape[-1] // 2]

    def seg(image):  # depends on the image, so a wrong crop/pad would show
        return (image > 0.5).float()

    m = KCross.untrained(segmenter=seg)
    odd = real[..., :101, :99]
    out = m.segment(odd)
    assert out.dtype == torch.bool and out.shape == odd.shape
    assert torch.equal(out, odd > 0.5)
    with pytest.raises(ShapeError):
        m.segment(half[0])
    with pytest.raises(RangeError):
        m.segment(real * 3)


def test_custom_segmenter_bad_output_is_clear_error(pair):
    fake, real, _, _ = pair
    m = KCross.untrained(segmenter=lambda x: torch.zeros(3))
    with pytest.raises(ShapeError, match="segmenter must return"):
        m(fake, real)


def test_volume_scoring_matches_slices_and_skips_empty(metric):
    torch.manual_seed(0)
    real = torch.zeros(1, 1, 6, 64, 64)
    real[:, :, 1:5, 16:48, 16:48] = torch.rand(1, 1, 4, 32, 32) * 0.8 + 0.1
    fake = (real + 0.05 * torch.rand_like(real)).clamp(0, 1) * (real > 0)
    res = metric.score(fake, real)
    assert res.slice_scores.shape == (1, 6)
    assert res.slice_used.tolist() == [[False, True, True, True, True, False]]
    assert torch.isnan(res.slice_scores[0, 0]) and torch.isnan(res.slice_scores[0, 5])
    per_slice = metric(fake[0].permute(1, 0, 2, 3)[1:5], real[0].permute(1, 0, 2, 3)[1:5])
    assert torch.allclose(res.slice_scores[0, 1:5], per_slice, atol=1e-6)
    assert torch.allclose(res.score, per_slice.mean()[None], atol=1e-6)
    assert res.lesion_mask.shape == real.shape


def test_slice_batch_size_does_not_change_scores():
    torch.manual_seed(1)
    real = torch.rand(2, 1, 5, 32, 32)
    fake = (real + 0.1 * torch.rand_like(real)).clamp(0, 1)
    a = KCross.untrained(slice_batch_size=1)(fake, real)
    b = KCross.untrained(slice_batch_size=16)(fake, real)
    assert torch.allclose(a, b, atol=1e-6)


def test_odd_sizes_are_padded(metric):
    x = torch.rand(1, 1, 37, 50)
    assert metric(x, x).shape == (1,)


@pytest.mark.parametrize(
    "fake, real, error",
    [
        (torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), ChannelError),
        (torch.rand(1, 1, 32), torch.rand(1, 1, 32), ShapeError),
        (torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 31), ShapeError),
        (torch.full((1, 1, 32, 32), float("nan")), torch.rand(1, 1, 32, 32), NonFiniteError),
        (torch.rand(1, 1, 32, 32) * 2, torch.rand(1, 1, 32, 32), RangeError),
        (torch.randint(0, 2, (1, 1, 32, 32)), torch.rand(1, 1, 32, 32), DTypeError),
        (torch.rand(1, 1, 32, 32).double(), torch.rand(1, 1, 32, 32), DTypeError),
    ],
)
def test_bad_inputs_raise_typed_errors(metric, fake, real, error):
    with pytest.raises(error):
        metric(fake, real)
    assert issubclass(error, (ValueError, TypeError))


def test_bad_arguments():
    with pytest.raises(ConfigError):
        KCross.untrained(reduction="avg")
    with pytest.raises(RangeError):
        KCross.untrained(data_range=0)
    with pytest.raises(ConfigError):
        KCross.untrained(combine="max")


def test_missing_weights_is_untrained_error_not_random(tmp_path, monkeypatch):
    from kcross_metric import weights

    monkeypatch.setenv("KCROSS_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(weights, "bundled_dir", lambda: tmp_path)  # a build without bundled weights
    with pytest.raises(UntrainedWeightsError):
        KCross()


def test_registry_builds_kcross_with_metadata():
    from kcross_metric import metric_info

    info = metric_info("kcross")
    assert info.higher_is_better and info.uses_source and info.score_range == (0.0, 1.0)
    assert KCross.higher_is_better and KCross.is_differentiable
    with pytest.raises(ConfigError):
        create_metric("no-such-metric")


def test_version_info_reports_untrained(metric):
    assert metric.version["pretrained"] is False
