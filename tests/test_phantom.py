from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from kcross_metric.data.phantom import (
    CONTRASTS,
    TISSUES,
    make_pair,
    make_phantom,
    signal,
    tissue_maps,
)
from kcross_metric.errors import ConfigError, ShapeError


def _pure(maps: dict[str, np.ndarray], tissue: str) -> np.ndarray:
    return maps[tissue] > 0.999


def _mean(img: np.ndarray, mask: np.ndarray) -> float:
    assert mask.sum() > 20, "too few pure voxels to test"
    return float(img[mask].mean())


@pytest.fixture(scope="module")
def maps2d() -> dict[str, np.ndarray]:
    return tissue_maps((256, 256), seed=0)


def test_tissue_maps_are_partial_volume_fractions(maps2d: dict[str, np.ndarray]) -> None:
    assert set(maps2d) == set(TISSUES)
    total = sum(maps2d.values())
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    for name, m in maps2d.items():
        assert m.shape == (256, 256) and m.dtype == np.float32
        assert m.min() >= 0.0 and m.max() <= 1.0, name
    brain = 1.0 - maps2d["background"]
    assert 0.2 < brain.mean() < 0.6  # a head filling a reasonable part of the field of view
    assert maps2d["background"][0, 0] == pytest.approx(1.0)  # corners are air
    for t in ("csf", "gm", "wm", "edema", "enhancing", "necrosis"):
        assert _pure(maps2d, t).sum() > 20 or maps2d[t].max() > 0.99, t


def test_determinism_and_seed_dependence() -> None:
    a = make_phantom((64, 64), contrasts=CONTRASTS, seed=7, noise=0.02)
    b = make_phantom((64, 64), contrasts=CONTRASTS, seed=7, noise=0.02)
    c = make_phantom((64, 64), contrasts=CONTRASTS, seed=8, noise=0.02)
    for key in (*CONTRASTS, "mask"):
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["t1"], c["t1"])
    assert not torch.equal(a["mask"], c["mask"])


def test_shapes_ranges_dtype() -> None:
    p = make_phantom()
    assert set(p) == {"t1", "t2", "flair", "mask"}
    for key, t in p.items():
        assert t.shape == (1, 1, 256, 256) and t.dtype == torch.float32, key
        assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    assert set(torch.unique(p["mask"]).tolist()) == {0.0, 1.0}
    noisy = make_phantom((64, 64), contrasts=CONTRASTS, noise=0.1, bias=0.3)
    for c in CONTRASTS:
        assert float(noisy[c].min()) >= 0.0 and float(noisy[c].max()) <= 1.0


def _ir(t1: float, t2: float, pd: float, tr: float, ti: float, te: float) -> float:
    return pd * (1 - 2 * math.exp(-ti / t1) + math.exp(-tr / t1)) * math.exp(-te / t2)


def _se(t1: float, t2: float, pd: float, tr: float, te: float) -> float:
    return pd * (1 - math.exp(-tr / t1)) * math.exp(-te / t2)


def test_signal_equation_reference_values(maps2d: dict[str, np.ndarray]) -> None:
    # Stanisz 2005, 1.5 T: WM T1 884 / T2 72 ms, GM 1124 / 95 ms; PD 0.70 / 0.80
    wm, gm = _pure(maps2d, "wm"), _pure(maps2d, "gm")
    t2 = signal(maps2d, "t2")
    assert _mean(t2, gm) / _mean(t2, wm) == pytest.approx(
        _se(1124, 95, 0.80, 4000, 100) / _se(884, 72, 0.70, 4000, 100), rel=1e-3
    )
    t1 = signal(maps2d, "t1")
    assert _mean(t1, wm) == pytest.approx(0.9, abs=1e-3)  # brightest tissue of T1 -> 0.9
    assert _mean(t1, gm) / _mean(t1, wm) == pytest.approx(
        _ir(1124, 95, 0.80, 2000, 800, 10) / _ir(884, 72, 0.70, 2000, 800, 10), rel=1e-3
    )
    # FLAIR inversion time nulls CSF exactly
    assert _mean(signal(maps2d, "flair"), _pure(maps2d, "csf")) < 1e-3


def test_contrast_ordering(maps2d: dict[str, np.ndarray]) -> None:
    wm, gm, csf = (_pure(maps2d, t) for t in ("wm", "gm", "csf"))
    edema, enh, nec = (maps2d[t] > 0.9 for t in ("edema", "enhancing", "necrosis"))
    img = {c: signal(maps2d, c) for c in CONTRASTS}
    # T1: WM > GM > CSF, necrosis dark
    assert _mean(img["t1"], wm) > _mean(img["t1"], gm) + 0.1 > _mean(img["t1"], csf) + 0.2
    assert _mean(img["t1"], nec) < 0.1
    # T2: CSF brightest, GM > WM, edema bright
    assert _mean(img["t2"], csf) > _mean(img["t2"], edema) > _mean(img["t2"], gm) > _mean(img["t2"], wm)
    # PD: GM > WM
    assert _mean(img["pd"], gm) > _mean(img["pd"], wm)
    # FLAIR: CSF dark, edema brightest, lesion brighter than normal tissue
    assert _mean(img["flair"], csf) < 0.05
    assert _mean(img["flair"], edema) > _mean(img["flair"], gm) + 0.2 > _mean(img["flair"], wm) + 0.2
    # T1c: the enhancing rim lights up after contrast, not before
    assert _mean(img["t1c"], enh) > 1.5 * _mean(img["t1c"], wm)
    assert _mean(img["t1"], enh) < _mean(img["t1"], wm)


def test_lesion_mask_inside_brain_and_in_white_matter() -> None:
    for seed in range(4):
        maps = tissue_maps((128, 128), seed=seed)
        healthy = tissue_maps((128, 128), seed=seed, lesion=False)
        mask = make_phantom((128, 128), contrasts=("t1",), seed=seed)["mask"][0, 0].numpy() > 0.5
        assert 50 < mask.sum() < 0.3 * (maps["background"] < 0.5).sum()
        assert not mask[maps["background"] > 0.5].any()
        # lesion centre lies in (healthy) white matter
        cy, cx = (round(float(v)) for v in np.argwhere(mask).mean(axis=0))
        assert healthy["wm"][cy, cx] > 0.5, seed
        # same anatomy without the lesion: CSF and background unchanged
        np.testing.assert_array_equal(maps["csf"], healthy["csf"])
        np.testing.assert_array_equal(maps["background"], healthy["background"])


def test_healthy_has_empty_mask() -> None:
    p = make_phantom((64, 64), contrasts=("flair",), lesion=False)
    assert float(p["mask"].sum()) == 0.0
    maps = tissue_maps((64, 64), lesion=False)
    assert all(float(maps[t].max()) == 0.0 for t in ("edema", "enhancing", "necrosis"))


def test_3d_volume() -> None:
    p = make_phantom((32, 48, 48), contrasts=("t1", "flair"), seed=1)
    assert p["t1"].shape == (1, 1, 32, 48, 48) and p["mask"].shape == (1, 1, 32, 48, 48)
    assert float(p["mask"].sum()) > 0
    t1 = p["t1"][0, 0]
    # D is inferior->superior: top and bottom slices are (nearly) empty, the middle is not
    assert float(t1[0].mean()) < 0.02 and float(t1[-1].mean()) < 0.02 and float(t1[16].mean()) > 0.2


def test_rician_noise_floor_and_bias() -> None:
    sigma = 0.05
    maps = tissue_maps((128, 128), seed=2)
    noisy = signal(maps, "t2", noise=sigma, seed=3)
    air = maps["background"] > 0.999
    # Rayleigh mean sigma*sqrt(pi/2) in the air
    assert float(noisy[air].mean()) == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.05)
    clean = signal(maps, "t2")
    biased = signal(maps, "t2", bias=0.2, seed=3)
    ratio = biased[clean > 0.2] / clean[clean > 0.2]
    assert ratio.min() > 0.8 - 1e-5 and ratio.max() < 1.2 + 1e-5
    assert ratio.max() - ratio.min() > 0.1  # a visible, smooth shading across the brain
    assert np.all(biased[air] <= 1.2 * clean[air] + 1e-7)  # bias multiplies the signal: air stays dark


def test_make_pair_degrades_the_lesion() -> None:
    fake, real, source, mask = make_pair((128, 128), source="t1", target="flair", seed=5)
    for t in (fake, real, source, mask):
        assert t.shape == (1, 1, 128, 128) and t.dtype == torch.float32
    ref = make_phantom((128, 128), contrasts=("t1", "flair"), seed=5)
    assert torch.equal(real, ref["flair"]) and torch.equal(source, ref["t1"]) and torch.equal(mask, ref["mask"])
    m = mask.bool()
    err = (fake - real).abs()
    assert float(err[m].mean()) > 3 * float(err[~m].mean())
    assert float(fake[m].mean()) < float(real[m].mean()) - 0.05  # bright FLAIR lesion faded
    same = make_pair((64, 64), blur_sigma=0.0, lesion_fade=0.0)
    assert torch.equal(same[0], same[1])


def test_speed() -> None:
    t0 = time.perf_counter()
    make_phantom((256, 256))
    assert time.perf_counter() - t0 < 1.0


def test_validation() -> None:
    with pytest.raises(ConfigError, match="t3"):
        make_phantom((64, 64), contrasts=("t1", "t3"))
    with pytest.raises(ShapeError):
        make_phantom((8, 64))
    with pytest.raises(ShapeError):
        tissue_maps((4, 64, 64, 64))
    with pytest.raises(ConfigError):
        signal(tissue_maps((32, 32)), "t1", noise=-0.1)
    with pytest.raises(ConfigError):
        signal(tissue_maps((32, 32)), "t1", bias=1.5)
    with pytest.raises(ConfigError):
        make_pair((64, 64), lesion_fade=2.0)
