from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from _baseline_helpers import assert_batch_independent, calibration_pairs, degraded, mr_slice, official

from conftest import need_shared
from kcross_metric.baselines import LPIPSVGG, LPIPSAlex, lpips
from kcross_metric.baselines._backbones import ALEXNET_FILE, ENV_VAR, load_backbone_state, verify_sha256
from kcross_metric.errors import ChannelError, ChecksumError, ImageTooSmallError, WeightsError, WeightsNotFoundError


@pytest.fixture(scope="module")
def weights_dir() -> Path:
    return need_shared("weights", "imagenet")


@pytest.fixture(scope="module")
def alex(weights_dir: Path) -> LPIPSAlex:
    return LPIPSAlex(weights_path=weights_dir)


@pytest.fixture(scope="module")
def vgg(weights_dir: Path) -> LPIPSVGG:
    return LPIPSVGG(weights_path=weights_dir)


@pytest.fixture(scope="module")
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    """One MR crop pair, loaded before any test hides the shared folder."""
    return _mr_batch(1)


def _mr_batch(n: int = 3, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    y = mr_slice()
    crops = [y[40 + 30 * i : 40 + 30 * i + size, 60 : 60 + size] for i in range(n)]
    ref = torch.stack(crops)[:, None]
    dist = torch.stack([degraded(c, seed=i, noise=0.03 * (i + 1)) for i, c in enumerate(crops)])[:, None]
    return dist.float(), ref.float()


def test_lpips_alex_matches_official_tid2013(alex: LPIPSAlex) -> None:
    # results_official.csv's "lpips" is v0.1 AlexNet (calibration_summary: lpips(ours) = alex).
    # Measured max error 4.5e-5 against 4-decimal official values.
    dist, ref = calibration_pairs()
    with torch.no_grad():
        got = LPIPSAlex(data_range=255.0)(dist.float(), ref.float()).numpy()
    np.testing.assert_allclose(got, official("lpips"), atol=1e-4)


@pytest.mark.filterwarnings("ignore::UserWarning:torchvision")
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_matches_reference_package(net: str, weights_dir: Path) -> None:
    """Same numbers as the ``lpips`` package (its v0.1 heads, our ImageNet backbone arrays)."""
    ref_pkg = pytest.importorskip("lpips")
    pil = pytest.importorskip("PIL.Image")
    folder = need_shared("data", "lpips-2afc-example")
    ims = [torch.from_numpy(np.asarray(pil.open(folder / f"{n}.png").convert("RGB"), dtype=np.float32) / 255)
           .permute(2, 0, 1)[None] for n in ("ex_ref", "ex_p0", "ex_p1")]
    reference = ref_pkg.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False).eval()
    state = load_backbone_state(net, weights_dir, heads=False)
    # lpips names the torchvision layers slice<k>.<N>.weight; N is torchvision's index.
    reference.net.load_state_dict({k: state[f"features.{k.split('.', 1)[1]}"] for k in reference.net.state_dict()})
    ours = (LPIPSAlex if net == "alex" else LPIPSVGG)(weights_path=weights_dir)
    with torch.no_grad():
        for p in ims[1:]:
            expected = reference(ims[0], p, normalize=True).flatten()
            torch.testing.assert_close(ours(p, ims[0]), expected, atol=2e-6, rtol=1e-5)


def test_grayscale_policy(alex: LPIPSAlex) -> None:
    x, y = _mr_batch(2)
    with torch.no_grad():
        gray = alex(x, y)
        torch.testing.assert_close(gray, alex(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)))
        # Fixed scaling by data_range, not min-max: a 12-bit copy gives the same value ...
        scaled = LPIPSAlex(data_range=4095.0)
        torch.testing.assert_close(scaled(x * 4095, y * 4095), gray, atol=1e-5, rtol=1e-4)
        # ... and a dimmer image is a different image (min-max scaling would hide this).
        assert alex(x * 0.5, y)[0] > gray[0]


def test_lpips_identity_batch_independence_and_reduction(alex: LPIPSAlex, vgg: LPIPSVGG) -> None:
    x, y = _mr_batch()
    with torch.no_grad():
        for m in (alex, vgg):
            assert torch.all(m(y, y).abs() < 1e-6)
            assert_batch_independent(m, x, y, atol=1e-5)
        assert lpips(x, y, reduction="mean", net="alex").item() == pytest.approx(alex(x, y).mean().item(), rel=1e-5)


def test_lpips_frozen_eval_and_input_gradients(alex: LPIPSAlex) -> None:
    assert all(not p.requires_grad for p in alex.parameters())
    alex.train()
    assert not alex.training and not any(m.training for m in alex.modules())
    x, y = _mr_batch(1)
    x.requires_grad_(True)
    alex(x, y).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("cls,size", [(LPIPSAlex, 31), (LPIPSVGG, 16)])
def test_lpips_gradcheck(cls: type, size: int, weights_dir: Path) -> None:
    m = cls(weights_path=weights_dir).double()
    g = torch.Generator().manual_seed(0)
    y = torch.rand(1, 1, size, size, dtype=torch.float64, generator=g)
    x = (0.5 * y + 0.5 * torch.rand(1, 1, size, size, dtype=torch.float64, generator=g)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: m(a, y), (x,), fast_mode=True, atol=1e-5)


def test_lpips_input_errors(alex: LPIPSAlex) -> None:
    with pytest.raises(ImageTooSmallError, match=">= 31"):
        alex(torch.rand(1, 1, 30, 64), torch.rand(1, 1, 30, 64))
    with pytest.raises(ChannelError):
        alex(torch.rand(1, 2, 64, 64), torch.rand(1, 2, 64, 64))


# ---------------------------------------------------------------- weight resolution and integrity


def _link(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / src.name
    os.symlink(src, dst)
    return dst


@pytest.fixture
def no_default_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Hide every default location: no env dir, an empty shared folder, an empty hub cache."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    empty = tmp_path / "shared"
    (empty / "data").mkdir(parents=True)
    monkeypatch.setenv("KCROSS_SHARED_DIR", str(empty))
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


def test_weights_not_found_is_clear(no_default_weights: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match=ENV_VAR):
        LPIPSAlex()
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        LPIPSAlex(weights_path=no_default_weights / "missing.npz")


def test_env_var_and_explicit_file(weights_dir: Path, pair: tuple[torch.Tensor, torch.Tensor],
                                   no_default_weights: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    local = _link(weights_dir / ALEXNET_FILE, tmp_path / "env")
    monkeypatch.setenv(ENV_VAR, str(local.parent))
    x, y = pair
    with torch.no_grad():
        expected = LPIPSAlex(weights_path=weights_dir / ALEXNET_FILE)(x, y)
        torch.testing.assert_close(LPIPSAlex()(x, y), expected)


def test_torch_hub_cache_fallback_never_downloads(weights_dir: Path, pair: tuple[torch.Tensor, torch.Tensor],
                                                  no_default_weights: Path) -> None:
    state = load_backbone_state("alex", weights_dir, heads=True)  # LPIPS heads: bundled
    ckpt = {k: v for k, v in state.items() if k.startswith("features.")}
    ckpt["classifier.1.weight"] = torch.zeros(2, 2)  # torchvision checkpoints hold more than features
    (no_default_weights / "checkpoints").mkdir(parents=True)
    torch.save(ckpt, no_default_weights / "checkpoints" / "alexnet-owt-7be5be79.pth")
    x, y = pair
    with torch.no_grad():
        torch.testing.assert_close(LPIPSAlex()(x, y), LPIPSAlex(weights_path=weights_dir)(x, y))


def test_sha256_is_verified(weights_dir: Path, tmp_path: Path) -> None:
    local = _link(weights_dir / ALEXNET_FILE, tmp_path / "w")
    assert verify_sha256(weights_dir / ALEXNET_FILE) is True  # the shared SHA256SUMS lists it
    (tmp_path / "w" / "SHA256SUMS").write_text(f"{'0' * 64}  {ALEXNET_FILE}\n")
    with pytest.raises(ChecksumError, match="SHA-256"):
        LPIPSAlex(weights_path=local)
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    (tmp_path / "w" / "SHA256SUMS").write_text(f"{digest}  {ALEXNET_FILE}\n")
    assert verify_sha256(local) is True


def test_strict_keys_and_no_pickle(weights_dir: Path, tmp_path: Path) -> None:
    with np.load(weights_dir / ALEXNET_FILE) as data:
        arrays = {k: data[k] for k in data.files}
    bad = tmp_path / "missing" / ALEXNET_FILE
    bad.parent.mkdir()
    np.savez(bad, **{k: v for k, v in arrays.items() if k != "lpips_lin4.weight"})
    with pytest.raises(WeightsError, match="missing keys"):
        LPIPSAlex(weights_path=bad)
    extra = tmp_path / "extra" / ALEXNET_FILE
    extra.parent.mkdir()
    np.savez(extra, **arrays, **{"features.99.weight": np.zeros(3, np.float32)})
    with pytest.raises(WeightsError, match="unexpected keys"):
        LPIPSAlex(weights_path=extra)
    pickled = tmp_path / "pickled" / ALEXNET_FILE
    pickled.parent.mkdir()
    np.savez(pickled, **{k: np.array([v], dtype=object) for k, v in arrays.items()})
    with pytest.raises(WeightsError):
        LPIPSAlex(weights_path=pickled)
