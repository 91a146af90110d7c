"""Determinism: the same input gives bitwise the same score (twice, in a fresh instance, in a fresh
process), scoring never touches the global RNG, and a sample's score does not depend on the other
samples of its batch, for K-CROSS (slices and volumes) and every baseline.

tests/test_metric.py and tests/baselines/test_baseline_common.py already check batch independence
on mild, similar images; here the neighbours are extreme (empty, constant, saturated noise), volumes
are included, and K-CROSS with ``slice_batch_size=1`` must be bitwise batch-independent.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
import torch

from conftest import imagenet_available
from kcross_metric import KCross, create_metric, metric_info
from kcross_metric.errors import EmptyReferenceError

CLASSICAL = ["mae", "psnr", "ssim", "ms_ssim", "nlpd", "gmsd"]
DEEP = ["lpips_alex", "lpips_vgg", "dists"]
BASELINES = CLASSICAL + DEEP
SIZE = {"ms_ssim": 168, "nlpd": 40, "lpips_alex": 40}
#: Small-window settings so the 3-D baselines run on 12-slice volumes.
VOLUME_KWARGS: dict[str, dict[str, Any]] = {"mae": {}, "psnr": {}, "ssim": {"win_size": 5},
                                             "ms_ssim": {"win_size": 3, "weights": (0.5, 0.5)}}
DATA_RANGE = 255.0
_MODELS: dict[str, Any] = {}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """One intra-op thread: the 2 cores are shared with training runs, and OpenMP threads fighting
    for them make small K-CROSS calls ~10x slower. Multi-threaded repeatability is checked in
    ``test_kcross_bitwise_repeatable_and_instance_independent[2]``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _metric(name: str, **kwargs: Any) -> Any:
    if name in DEEP and not imagenet_available():
        pytest.skip("ImageNet backbones not on disk (tests never download them)")
    key = name + repr(sorted(kwargs.items()))
    if key not in _MODELS:
        _MODELS[key] = (KCross.untrained(seed=0, data_range=DATA_RANGE, **kwargs) if name == "kcross"
                        else create_metric(name, data_range=DATA_RANGE, **kwargs))
    return _MODELS[key]


def _batch(spatial: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(fake, real) batches of 4: a realistic pair, then extreme neighbours (empty, constant, noise)."""
    g = torch.Generator().manual_seed(seed)
    real = torch.zeros(4, 1, *spatial)
    inner = tuple(slice(n // 4, n - n // 4) if n >= 4 else slice(None) for n in spatial)
    real[(0, 0, *inner)] = 0.2 + 0.8 * torch.rand(real[(0, 0, *inner)].shape, generator=g)
    fake = real.clone()
    fake[0] = (0.9 * real[0] + 0.05 * torch.rand(real[0].shape, generator=g)).clamp(0, 1)
    fake[1], real[1] = 0.0, 0.0  # empty pair
    fake[2], real[2] = 0.3, 0.7  # constants
    fake[3] = torch.rand(real[3].shape, generator=g)  # saturated noise vs an empty reference
    real[3] = 0.0
    return fake * DATA_RANGE, real * DATA_RANGE


def _assert_batch_independent(fn: Any, fake: torch.Tensor, real: torch.Tensor, *, exact: bool,
                              atol: float = 1e-5, singles: torch.Tensor | None = None) -> torch.Tensor:
    """Batched scores equal the scores of each sample alone, in any order and with any neighbours.

    ``singles`` (the per-sample scores computed one at a time) may be passed to save time.
    Returns the batched scores.
    """

    def same(a: torch.Tensor, b: torch.Tensor) -> None:
        if exact:
            assert torch.equal(a, b), (a, b)
        else:
            torch.testing.assert_close(a, b, atol=atol, rtol=1e-5)

    with torch.no_grad():
        batched = fn(fake, real)
        assert batched.shape == (fake.shape[0],) and torch.isfinite(batched).all()
        if singles is None:
            singles = torch.cat([fn(fake[i : i + 1], real[i : i + 1]) for i in range(fake.shape[0])])
        same(batched, singles)
        perm = torch.arange(fake.shape[0]).roll(1)
        same(fn(fake[perm], real[perm]), batched[perm])
    return batched


# ---------------------------------------------------------------------------------------------
# K-CROSS (each call has a fixed overhead, so calls are kept few)


@pytest.mark.parametrize("threads", [1, 2])
def test_kcross_bitwise_repeatable_and_instance_independent(threads: int) -> None:
    fake, real = _batch((32, 32))
    m = _metric("kcross")
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            first, second = m(fake, real), m(fake, real)
            fresh = KCross.untrained(seed=0, data_range=DATA_RANGE)(fake, real)
            other = KCross.untrained(seed=1, data_range=DATA_RANGE)(fake, real)
    finally:
        torch.set_num_threads(1)
    assert torch.equal(first, second) and torch.equal(first, fresh)
    assert not torch.equal(first, other)  # the check above can fail: the parameters matter


def test_kcross_leaves_the_global_rng_alone() -> None:
    fake, real = _batch((32, 32))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    m = KCross.untrained(seed=7, data_range=DATA_RANGE)
    with torch.no_grad():
        m(fake, real)
    assert torch.equal(torch.get_rng_state(), state)


def test_kcross_grad_and_no_grad_give_the_same_bits() -> None:
    fake, real = _batch((32, 32))
    m = _metric("kcross")
    with torch.no_grad():
        ref = m(fake, real)
    f = fake.clone().requires_grad_(True)
    assert torch.equal(m(f, real).detach(), ref)


def test_kcross_slices_batch_independent() -> None:
    """Bitwise with ``slice_batch_size=1`` (each slice its own forward pass); to 1e-6 when slices
    share a forward pass (BLAS blocking depends on the batch size)."""
    fake, real = _batch((36, 44))
    with torch.no_grad():
        singles = torch.cat([_metric("kcross")(fake[i : i + 1], real[i : i + 1]) for i in range(4)])
    _assert_batch_independent(_metric("kcross", slice_batch_size=1), fake, real, exact=True, singles=singles)
    _assert_batch_independent(_metric("kcross"), fake, real, exact=False, atol=1e-6, singles=singles)


def test_kcross_volumes_batch_independent() -> None:
    """Volumes with different numbers of brain slices (2 of 4, all) share a batch; a volume whose
    reference has no brain at all is an error naming it, never a silent score."""
    fake, real = _batch((4, 32, 32), seed=1)
    with pytest.raises(EmptyReferenceError, match=r"\[1, 2\]"):  # empty and noise-vs-empty references
        _metric("kcross").score(fake[[0, 1, 3]], real[[0, 1, 3]])
    fake, real = fake[[0, 2]], real[[0, 2]]  # realistic, constant
    real[0, :, [0, 3]] = 0.0  # sample 0: only slices 1-2 contain brain
    fake[0, :, [0, 3]] = 0.0
    m1 = _metric("kcross", slice_batch_size=1)
    _assert_batch_independent(m1, fake, real, exact=True)
    _assert_batch_independent(_metric("kcross"), fake, real, exact=False, atol=1e-6)
    with torch.no_grad():
        res = m1.score(fake, real)
        alone = m1.score(fake[:1], real[:1])
    assert res.slice_used[0].tolist() == [False, True, True, False]
    assert bool(res.slice_used[1:].all())  # a constant 0.7 reference: brain everywhere
    assert torch.equal(res.slice_scores[:1].nan_to_num(-1), alone.slice_scores.nan_to_num(-1))
    assert torch.equal(res.lesion_mask[:1], alone.lesion_mask)


# ---------------------------------------------------------------------------------------------
# Baselines


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_bitwise_repeatable(name: str) -> None:
    s = SIZE.get(name, 32)
    fake, real = _batch((s, s))
    with torch.no_grad():
        first = _metric(name)(fake, real)
        second = _metric(name)(fake, real)
        fresh = create_metric(name, data_range=DATA_RANGE)(fake, real)
    assert torch.equal(first, second) and torch.equal(first, fresh)


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_batch_independent_with_extreme_neighbours(name: str) -> None:
    s = SIZE.get(name, 32)
    fake, real = _batch((s, s))
    _assert_batch_independent(_metric(name), fake, real, exact=False)


@pytest.mark.parametrize("name", list(VOLUME_KWARGS))
def test_3d_baseline_batch_independent_on_volumes(name: str) -> None:
    assert metric_info(name).supports_3d
    fake, real = _batch((12, 20, 16))
    m = _metric(name, **VOLUME_KWARGS[name])
    _assert_batch_independent(m, fake, real, exact=False)
    with torch.no_grad():
        assert torch.equal(m(fake, real), m(fake, real))


# ---------------------------------------------------------------------------------------------
# Across processes

_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    from kcross_metric import KCross, create_metric
    torch.set_num_threads(int(sys.argv[1]))  # the same thread count as the test process
    g = torch.Generator().manual_seed(11)
    real = torch.rand(2, 1, 40, 40, generator=g)
    fake = (real + 0.1 * torch.rand(2, 1, 40, 40, generator=g)).clamp(0, 1)
    out = {"kcross": KCross.untrained(seed=0)(fake, real)}
    for name in ("mae", "psnr", "ssim", "gmsd", "nlpd"):
        out[name] = create_metric(name)(fake, real)
    for name, v in out.items():
        print(name, " ".join(float(x).hex() for x in v.detach().double()))
    """
)


def test_scores_are_bitwise_identical_in_a_fresh_process() -> None:
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(torch.get_num_threads())], capture_output=True,
                          text=True, check=True, timeout=300)
    there = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    g = torch.Generator().manual_seed(11)
    real = torch.rand(2, 1, 40, 40, generator=g)
    fake = (real + 0.1 * torch.rand(2, 1, 40, 40, generator=g)).clamp(0, 1)
    here = {"kcross": KCross.untrained(seed=0)(fake, real)}
    for name in ("mae", "psnr", "ssim", "gmsd", "nlpd"):
        here[name] = create_metric(name)(fake, real)
    for name, v in here.items():
        assert there[name] == " ".join(float(x).hex() for x in v.detach().double()), name
