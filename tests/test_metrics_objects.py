"""torchmetrics classes (kcross_metric.integrations.metrics): running sums, per-sample values, registry metadata,
lazy import, K-CROSS wrapping with and without a weights file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("torchmetrics")
from conftest import imagenet_available
from kcross_metric import KCross, create_metric, list_metrics, metric_info
from kcross_metric.data.phantom import make_pair
from kcross_metric.errors import ConfigError, RangeError, ShapeError
from kcross_metric.integrations.metrics import (
    DISTSMetric,
    GMSDMetric,
    KCrossMetric,
    LPIPSAlexMetric,
    LPIPSVGGMetric,
    MAEMetric,
    MSSSIMMetric,
    NLPDMetric,
    PSNRMetric,
    RegistryMetric,
    SSIMMetric,
    metric_class,
)

ALIASES = {
    "kcross": KCrossMetric,
    "mae": MAEMetric,
    "psnr": PSNRMetric,
    "ssim": SSIMMetric,
    "ms_ssim": MSSSIMMetric,
    "nlpd": NLPDMetric,
    "gmsd": GMSDMetric,
    "lpips_alex": LPIPSAlexMetric,
    "lpips_vgg": LPIPSVGGMetric,
    "dists": DISTSMetric,
}
DEEP = ("lpips_alex", "lpips_vgg", "dists")


def _pairs(n: int, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n phantom T1->T2 pairs of increasing synthesis error: fake, real, source (n,1,size,size)."""
    fakes, reals, sources = [], [], []
    for i in range(n):
        fake, real, source, _ = make_pair((size, size), seed=seed + i, blur_sigma=0.5 + 0.4 * i, lesion_fade=0.1 * i)
        fakes.append(fake)
        reals.append(real)
        sources.append(source)
    return torch.cat(fakes), torch.cat(reals), torch.cat(sources)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Small tensors: one intra-op thread is faster, and much faster when the cores are busy.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def untrained() -> KCross:
    return KCross.untrained(seed=0)


def test_every_registered_metric_has_a_class_with_registry_metadata():
    assert set(ALIASES) <= set(list_metrics())
    for name, cls in ALIASES.items():
        info = metric_info(name)
        assert metric_class(name) is cls
        assert cls.higher_is_better is info.higher_is_better
        assert cls.is_differentiable is info.differentiable
        assert cls.full_state_update is False
    assert SSIMMetric.plot_lower_bound == -1.0 and SSIMMetric.plot_upper_bound == 1.0
    assert PSNRMetric.plot_upper_bound is None  # unbounded above
    assert KCrossMetric.higher_is_better and not LPIPSVGGMetric.higher_is_better


def test_registry_metric_returns_the_named_class():
    m = RegistryMetric("ssim", data_range=2.0)
    assert type(m) is SSIMMetric
    assert m.module.data_range == 2.0
    assert type(RegistryMetric("GMSD")) is GMSDMetric
    with pytest.raises(ConfigError, match="unknown metric"):
        RegistryMetric("not_a_metric")
    with pytest.raises(ConfigError, match="metric name"):
        RegistryMetric()
    with pytest.raises(ConfigError, match="wraps 'ssim'"):
        SSIMMetric("psnr")


@pytest.mark.parametrize("name", ["mae", "psnr", "ssim", "nlpd", "gmsd", "lpips_alex", "dists"])
def test_running_mean_equals_mean_of_per_sample_values(name):
    if name in DEEP and not imagenet_available():
        pytest.skip("ImageNet backbones not on disk (tests never download them)")
    fake, real, _ = _pairs(5)
    metric = RegistryMetric(name)
    for sl in (slice(0, 2), slice(2, 3), slice(3, 5)):  # uneven batches
        metric.update(fake[sl], real[sl])
    expected = create_metric(name)(fake, real)  # (5,) per-sample values in one batch
    assert expected.shape == (5,)
    assert metric.count.item() == 5
    assert metric.compute().dtype == torch.float64
    assert metric.compute().item() == pytest.approx(expected.double().mean().item(), rel=1e-6, abs=1e-7)
    # values differ across samples, so a wrong count or a last-batch-only mean would fail
    assert float(expected.max() - expected.min()) > 1e-3


def test_ms_ssim_and_lpips_vgg_wrappers():
    fake, real, _ = _pairs(2, size=176)
    ms = MSSSIMMetric()
    ms.update(fake, real)
    assert ms.compute().item() == pytest.approx(create_metric("ms_ssim")(fake, real).mean().item(), rel=1e-6)
    if not imagenet_available():
        pytest.skip("ImageNet backbones not on disk (tests never download them)")
    vgg = LPIPSVGGMetric()
    vgg.update(fake[:, :, :64, :64], real[:, :, :64, :64])
    ref = create_metric("lpips_vgg")(fake[:, :, :64, :64], real[:, :, :64, :64]).mean()
    assert vgg.compute().item() == pytest.approx(ref.item(), rel=1e-6)


def test_reset_forward_and_state_dtype():
    fake, real, _ = _pairs(4)
    m = MAEMetric()
    batch_value = m(fake[:2], real[:2])  # forward: value of this batch, also accumulated
    assert batch_value.item() == pytest.approx((fake[:2] - real[:2]).abs().mean().item(), rel=1e-6)
    m.update(fake[2:], real[2:])
    assert m.count.item() == 4
    assert m.compute().item() == pytest.approx((fake - real).abs().mean().item(), rel=1e-6)
    m.reset()
    assert m.count.item() == 0 and m.value_sum.item() == 0.0
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert torch.isnan(m.compute())
    m.update(fake[3:], real[3:])
    assert m.compute().item() == pytest.approx((fake[3:] - real[3:]).abs().mean().item(), rel=1e-6)
    m32 = MAEMetric(state_dtype=torch.float32)
    m32.update(fake, real)
    assert m32.compute().dtype == torch.float32
    with pytest.raises(ConfigError, match="state_dtype"):
        MAEMetric(state_dtype=torch.int64)


def test_keep_per_sample_and_errors():
    fake, real, source = _pairs(3)
    m = SSIMMetric(keep_per_sample=True)
    m.update(fake[:1], real[:1])
    m.update(fake[1:], real[1:])
    per = m.per_sample()
    assert per.shape == (3,)
    assert torch.allclose(per, create_metric("ssim")(fake, real), atol=1e-6)
    assert m.compute().item() == pytest.approx(per.double().mean().item(), rel=1e-6)
    with pytest.raises(ConfigError, match="keep_per_sample"):
        SSIMMetric().per_sample()
    with pytest.raises(ConfigError, match="does not take source"):
        m.update(fake, real, source)
    with pytest.raises(ConfigError, match="does not take mask"):
        m.update(fake, real, mask=torch.ones_like(fake))
    with pytest.raises(ConfigError, match="reduction"):
        SSIMMetric(reduction="mean")
    with pytest.raises(ConfigError, match="reduction='none'"):
        SSIMMetric(module=create_metric("ssim", reduction="mean"))
    with pytest.raises(ConfigError, match="not both"):
        SSIMMetric(module=create_metric("ssim"), data_range=1.0)
    with pytest.raises(ConfigError, match="KCross"):
        KCrossMetric(module=create_metric("ssim"))
    with pytest.raises(RangeError):  # the wrapped metric's own validation still applies
        SSIMMetric().update(fake * 3.0, real)


def test_torchmetrics_options_are_passed_through():
    m = SSIMMetric(compute_with_cache=False, sync_on_compute=False, data_range=2.0)
    assert m.compute_with_cache is False and m.sync_on_compute is False and m.module.data_range == 2.0


def test_metric_collection():
    from torchmetrics import MetricCollection

    fake, real, _ = _pairs(3)
    coll = MetricCollection({"ssim": SSIMMetric(), "psnr": PSNRMetric(), "mae": MAEMetric()})
    coll.update(fake, real)
    out = coll.compute()
    assert out["mae"].item() == pytest.approx((fake - real).abs().mean().item(), rel=1e-6)
    assert out["psnr"].item() == pytest.approx(create_metric("psnr")(fake, real).mean().item(), rel=1e-6)
    assert out["ssim"].item() == pytest.approx(create_metric("ssim")(fake, real).mean().item(), rel=1e-6)


# ------------------------------------------------------------------------------------- K-CROSS
def test_kcross_metric_wraps_a_module(untrained):
    fake, real, source = _pairs(3)
    expected = untrained(fake, real, source)  # (3,)
    m = KCrossMetric(module=untrained, keep_per_sample=True)
    m.update(fake[:2], real[:2], source[:2])
    m.update(fake[2:], real[2:], source[2:])
    assert torch.allclose(m.per_sample(), expected, atol=1e-6)
    assert m.compute().item() == pytest.approx(expected.double().mean().item(), abs=1e-6)
    assert m.module is untrained and not any(p.requires_grad for p in m.parameters())
    # a mask goes through to K-CROSS (an empty mask drops the tumor branch)
    m2 = KCrossMetric(module=untrained, keep_per_sample=True)
    m2.update(fake, real, source, mask=torch.zeros_like(fake))
    assert torch.allclose(m2.per_sample(), untrained(fake, real, source, torch.zeros_like(fake)), atol=1e-6)


def test_kcross_metric_ignores_module_reduction_and_takes_volumes():
    vol_fake = torch.stack([_pairs(1, seed=s)[0][0] for s in range(3)], dim=1)[None]  # (1,1,3,64,64)
    vol_real = torch.stack([_pairs(1, seed=s)[1][0] for s in range(3)], dim=1)[None]
    reduced = KCross.untrained(seed=0, reduction="mean")
    m = KCrossMetric(module=reduced)
    m.update(vol_fake, vol_real)
    m.update(vol_fake, vol_real)
    assert m.count.item() == 2  # one value per volume
    expected = KCross.untrained(seed=0)(vol_fake, vol_real)
    assert m.compute().item() == pytest.approx(float(expected), abs=1e-6)


def test_kcross_metric_from_weights_file(tmp_path: Path):
    from kcross_metric.core.nets.kcross_nets import KCrossNetworks
    from kcross_metric.weights import save_safetensors

    torch.manual_seed(3)
    nets = KCrossNetworks()
    path = tmp_path / "kcross.safetensors"
    save_safetensors(nets.state_dict(), path)
    fake, real, source = _pairs(2)
    m = KCrossMetric(weights=path, data_range=1.0)
    m.update(fake, real, source)
    expected = KCross.from_networks(nets)(fake, real, source)
    assert m.compute().item() == pytest.approx(expected.double().mean().item(), abs=1e-6)
    assert m.module.weights_info["pretrained"] is True


def test_kcross_metric_forward_is_differentiable(untrained):
    fake, real, source = _pairs(2)
    fake = fake.clone().requires_grad_(True)
    m = KCrossMetric(module=untrained)
    value = m(fake, real, source)
    value.backward()
    assert fake.grad is not None and float(fake.grad.abs().sum()) > 0
    assert m.value_sum.grad_fn is None  # accumulated state holds no graph
    assert m.count.item() == 2


def test_kcross_metric_bad_input_is_typed_error(untrained):
    m = KCrossMetric(module=untrained)
    with pytest.raises(ShapeError):
        m.update(torch.rand(2, 1, 64, 64), torch.rand(2, 1, 32, 32))


# ------------------------------------------------------------------------------ lazy import
def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)


def test_import_kcross_metric_does_not_import_torchmetrics():
    res = _run(
        "import sys, kcross_metric\n"
        "kcross_metric.list_metrics(); kcross_metric.KCross\n"
        "assert 'torchmetrics' not in sys.modules, 'torchmetrics imported'\n"
    )
    assert res.returncode == 0, res.stderr


def test_missing_torchmetrics_is_a_clear_error():
    res = _run(
        "import sys\n"
        "sys.modules['torchmetrics'] = None  # as if not installed\n"
        "try:\n"
        "    import kcross_metric.integrations.metrics\n"
        "except ImportError as e:\n"
        "    print(e)\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    assert res.returncode == 0, res.stderr
    assert "torchmetrics" in res.stdout and "pip install" in res.stdout


# ------------------------------------------------------------------------------ channels_last
@pytest.mark.parametrize("name", ["kcross", "ssim", "lpips_alex"])
def test_channels_last_matches_default_layout(name):
    """channels_last changes float32 rounding only: within 1e-6 (K-CROSS measured 3.6e-7 at 256x256)."""
    if name in DEEP and not imagenet_available():
        pytest.skip("ImageNet backbones not on disk (tests never download them)")
    fake, real, source = _pairs(3)

    def build(**kw: object) -> RegistryMetric:
        module = {"module": KCross.untrained(seed=0)} if name == "kcross" else {}
        return RegistryMetric(name, keep_per_sample=True, **module, **kw)

    default, fast = build(), build(channels_last=True)
    args = (fake, real, source) if name == "kcross" else (fake, real)
    default.update(*args)
    fast.update(*args)
    assert fast.channels_last and not default.channels_last
    if name == "kcross":
        weight = fast.module.nets.structure.encoder.levels[1][0].weight  # (32,16,3,3)
        assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert torch.allclose(fast.per_sample(), default.per_sample(), rtol=1e-6, atol=1e-6)
