"""KCross's reference cache (issue 19): the real/source side computed once, scores bit for bit
those of the uncached metric, a bound, an off switch, and invalidation when the networks change."""

import copy
import pickle

import pytest
import torch

from kcross_metric import KCross
from kcross_metric.core.reference_cache import ReferenceCache, content_key
from kcross_metric.data.phantom import make_pair
from kcross_metric.errors import ConfigError


@pytest.fixture(scope="module")
def volume():
    fake, real, source, mask = make_pair((20, 64, 64), source="t1", target="t2", seed=3, blur_sigma=1.0)
    return fake, real, source, mask


def _slices(t: torch.Tensor) -> torch.Tensor:
    return t[0].permute(1, 0, 2, 3).contiguous()  # (1,1,D,H,W) -> (D,1,H,W)


def _noisy(x: torch.Tensor, seed: int, sigma: float = 0.03) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0.0, 1.0)


def _count_segmenter_calls(metric: KCross) -> list[int]:
    calls = [0]
    original = metric.nets.segmenter.forward

    def counted(x):
        calls[0] += x.shape[0]
        return original(x)

    metric.nets.segmenter.forward = counted
    return calls


@pytest.mark.parametrize("with_source", [True, False])
@pytest.mark.parametrize("with_mask", [False, True])
def test_volume_scores_bitwise_equal_uncached_first_and_later_calls(volume, with_source, with_mask):
    fake, real, source, mask = volume
    src = source if with_source else None
    msk = mask if with_mask else None
    plain, cached = KCross(reference_cache_mb=0, slice_batch_size=3), KCross(slice_batch_size=3)
    for epoch in range(3):  # new fakes, same reference
        f = _noisy(fake, epoch)
        a, b = plain.score(f, real, src, msk), cached.score(f, real, src, msk)
        assert torch.equal(a.score, b.score)
        assert torch.equal(a.slice_scores.nan_to_num(-1), b.slice_scores.nan_to_num(-1))
        for k in a.branches:
            assert torch.equal(a.branches[k], b.branches[k])
        assert torch.equal(a.lesion_mask, b.lesion_mask) and torch.equal(a.has_lesion, b.has_lesion)
    info = cached.reference_cache_info()
    chunks = -(-int(a.slice_used.sum()) // 3)
    assert info.misses == chunks and info.hits == 2 * chunks and info.entries == chunks
    assert plain.reference_cache_info().entries == 0


def test_hit_computes_only_the_fake_side(volume):
    fake, real, source, _ = volume
    f, r, s = _slices(fake)[6:10], _slices(real)[6:10], _slices(source)[6:10]
    metric = KCross()
    calls = _count_segmenter_calls(metric)
    metric(f, r, s)
    assert calls[0] == 3 * 4  # real, source and fake slices
    calls[0] = 0
    metric(_noisy(f, 1), r, s)
    assert calls[0] == 4  # the fake only


def test_slices_explain_and_signed_range_match_uncached(volume):
    fake, real, source, _ = volume
    f, r, s = _slices(fake)[5:12], _slices(real)[5:12], _slices(source)[5:12]
    for kwargs, conv in (({}, lambda x: x), ({"data_range": (-1, 1)}, lambda x: 2 * x - 1)):
        plain, cached = KCross(reference_cache_mb=0, **kwargs), KCross(**kwargs)
        for seed in range(2):
            ff = conv(_noisy(f, seed))
            assert torch.equal(plain(ff, conv(r), conv(s)), cached(ff, conv(r), conv(s)))
            ea, eb = plain.explain(ff, conv(r), conv(s)), cached.explain(ff, conv(r), conv(s))
            assert torch.equal(ea.score, eb.score) and torch.equal(ea.error_map, eb.error_map)
        assert cached.reference_cache_info().hits > 0


def test_float64_inputs_match_uncached(volume):
    fake, real, source, _ = volume
    f, r, s = (_slices(t)[8:12].double() for t in (fake, real, source))
    plain, cached = KCross(reference_cache_mb=0), KCross()
    cached(f, r, s)
    out = cached(f, r, s)
    assert out.dtype == torch.float64 and torch.equal(plain(f, r, s), out)


def test_other_content_is_a_miss(volume):
    fake, real, source, _ = volume
    f, r, s = _slices(fake)[8:12], _slices(real)[8:12], _slices(source)[8:12]
    metric = KCross()
    metric(f, r, s)
    r2 = r.clone()
    r2[0, 0, 30, 30] += 1e-3
    plain = KCross(reference_cache_mb=0)
    assert torch.equal(metric(f, r2, s), plain(f, r2, s))
    metric(f, r, None)  # no source: another key
    assert metric.reference_cache_info().hits == 0 and metric.reference_cache_info().misses == 3


def test_gradients_through_cached_reference_equal_uncached(volume):
    fake, real, source, _ = volume
    f, r, s = _slices(fake)[8:12], _slices(real)[8:12], _slices(source)[8:12]
    plain, cached = KCross(reference_cache_mb=0), KCross()
    with torch.inference_mode():  # the entry is made inside inference mode ...
        cached(f, r, s)
    grads = []
    for metric in (plain, cached):  # ... and serves a loss's backward pass outside it
        x = f.clone().requires_grad_(True)
        metric(x, r, s).sum().backward()
        grads.append(x.grad)
    assert cached.reference_cache_info().hits == 1
    assert torch.equal(grads[0], grads[1]) and grads[0].abs().sum() > 0


def test_reference_that_takes_gradient_bypasses_cache(volume):
    fake, real, source, _ = volume
    f, r, s = _slices(fake)[8:12], _slices(real)[8:12].clone().requires_grad_(True), _slices(source)[8:12]
    metric = KCross()
    metric(f, r, s).sum().backward()
    metric(f, r, s)
    assert r.grad is not None and r.grad.abs().sum() > 0
    assert metric.reference_cache_info().entries == 0


def test_bound_admits_nothing_beyond_it_and_off_switch(volume):
    fake, real, source, _ = volume
    f, r, s = _slices(fake)[4:16], _slices(real)[4:16], _slices(source)[4:16]
    plain = KCross(reference_cache_mb=0)
    one_chunk = KCross(slice_batch_size=4)
    one_chunk(f[:4], r[:4], s[:4])
    chunk_bytes = one_chunk.reference_cache_info().bytes
    assert chunk_bytes > 0
    small = KCross(slice_batch_size=4, reference_cache_mb=1.5 * chunk_bytes / 2**20)  # room for one chunk
    for seed in range(2):
        ff = _noisy(f, seed)
        assert torch.equal(small(ff, r, s), plain(ff, r, s))
    info = small.reference_cache_info()
    assert info.entries == 1 and info.bytes == chunk_bytes <= info.max_bytes
    assert info.hits == 1 and info.not_admitted == 4  # the first chunk is kept, the other two never
    small.clear_reference_cache()
    assert small.reference_cache_info().entries == 0 and small.reference_cache_info().bytes == 0


@pytest.mark.parametrize("bad", [-1, float("nan"), "512", True])
def test_bad_cache_size_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="reference_cache_mb"):
        KCross(reference_cache_mb=bad)


def test_changed_networks_empty_the_cache(volume):
    fake, real, source, _ = volume
    f, r, s = _slices(fake)[8:12], _slices(real)[8:12], _slices(source)[8:12]
    metric, plain = KCross(), KCross(reference_cache_mb=0)
    before = metric(f, r, s)
    with torch.no_grad():
        for m in (metric, plain):  # an in-place change (its version counter moves)
            next(m.nets.complex_unet.parameters()).mul_(1.5)
    after = metric(f, r, s)
    assert not torch.equal(before, after)
    assert torch.equal(after, plain(f, r, s))


def test_copies_and_pickles_start_empty(volume):
    fake, real, source, _ = volume
    f, r, s = _slices(fake)[8:12], _slices(real)[8:12], _slices(source)[8:12]
    metric = KCross(reference_cache_mb=64)
    expected = metric(f, r, s)
    for clone in (copy.deepcopy(metric), pickle.loads(pickle.dumps(metric))):
        info = clone.reference_cache_info()
        assert info.entries == 0 and info.max_bytes == 64 * 2**20
        assert torch.equal(clone(f, r, s), expected)


def test_torchmetrics_class_keeps_cache_across_epochs(volume):
    pytest.importorskip("torchmetrics")
    from kcross_metric.integrations.metrics import KCrossMetric

    fake, real, source, _ = volume
    f, r, s = _slices(fake)[6:14], _slices(real)[6:14], _slices(source)[6:14]
    metric, plain = KCrossMetric(), KCrossMetric(reference_cache_mb=0)
    for epoch in range(2):
        ff = _noisy(f, epoch)
        for m in (metric, plain):
            m.reset()
            m.update(ff[:4], r[:4], s[:4])
            m.update(ff[4:], r[4:], s[4:])
        assert torch.equal(metric.compute(), plain.compute())
    assert metric.module.reference_cache_info().hits == 2


def test_content_key_separates_shape_dtype_and_missing_parts():
    x = torch.zeros(2, 1, 4, 4)
    keys = {
        content_key((x, None), ()),
        content_key((x.view(1, 2, 4, 4), None), ()),
        content_key((x.double(), None), ()),
        content_key((x, x), ()),
        content_key((x, None), ("cuda:0",)),
        content_key((x.bool(), None), ()),
    }
    assert len(keys) == 6
    assert content_key((x, None), ()) == content_key((x.clone(), None), ())


def test_cache_store_counts():
    cache = ReferenceCache(100)
    entry = {"a": torch.zeros(10)}  # 40 bytes
    assert cache.put(b"1", entry) and cache.put(b"2", entry) and not cache.put(b"3", entry)
    assert cache.get(b"1") is entry and cache.get(b"3") is None
    info = cache.info()
    assert (info.hits, info.misses, info.entries, info.bytes, info.not_admitted) == (1, 1, 2, 80, 1)
    cache.check_fingerprint(("a",))
    assert len(cache) == 0


def test_metric_built_inside_inference_mode(volume):
    fake, real, source, _ = volume
    f, r, s = _slices(fake)[8:12], _slices(real)[8:12], _slices(source)[8:12]
    with torch.inference_mode():
        metric = KCross()
        first, second = metric(f, r, s), metric(_noisy(f, 0), r, s)
    plain = KCross(reference_cache_mb=0)
    assert torch.equal(first, plain(f, r, s)) and torch.equal(second, plain(_noisy(f, 0), r, s))
    assert metric.reference_cache_info().hits == 1


def test_cases_the_cache_does_not_serve(volume):
    fake, real, source, _ = volume
    f, r, s = _slices(fake)[8:12], _slices(real)[8:12], _slices(source)[8:12]
    plain_callable = KCross(segmenter=lambda x: (x > 0.7).float())
    plain_callable(f, r, s)
    assert plain_callable.reference_cache_info().entries == 0  # a plain callable's state is not visible
    metric = KCross()
    metric.nets.requires_grad_(True)  # a user training through the metric
    metric(f, r, s)
    assert metric.reference_cache_info().entries == 0
    from kcross_metric.integrations.metrics import KCrossLoss

    assert KCrossLoss().metric.reference_cache_info().max_bytes == 0  # new references every batch


def test_module_segmenter_changes_and_device_moves_empty_the_cache(volume):
    fake, real, source, _ = volume
    f, r, s = _slices(fake)[8:12], _slices(real)[8:12], _slices(source)[8:12]
    seg = torch.nn.Conv2d(1, 1, 3, padding=1)
    with torch.no_grad():
        seg.weight.fill_(0.2)
        seg.bias.fill_(-1.0)
    seg.requires_grad_(False)
    metric = KCross(segmenter=lambda_module(seg))
    metric(f, r, s)
    assert metric.reference_cache_info().entries == 1
    with torch.no_grad():
        seg.bias.fill_(-0.5)  # in place: the version counter moves
    plain = KCross(segmenter=lambda_module(seg), reference_cache_mb=0)
    assert torch.equal(metric(f, r, s), plain(f, r, s))
    metric.to("cpu")
    assert metric.reference_cache_info().entries == 0


class _SigmoidModule(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.inner(x))


def lambda_module(inner: torch.nn.Module) -> torch.nn.Module:
    return _SigmoidModule(inner)
