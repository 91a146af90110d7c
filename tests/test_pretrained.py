"""The bundled weights on real MR data: sanity of orderings that hold by construction.

These are checks that a trained K-CROSS behaves like a quality score (identical = 1, more
distortion = lower), not claims of radiologist agreement. Skipped where the shared data or the
bundled weights are absent.
"""

import numpy as np
import pytest
import torch

from conftest import need_shared
from kcross_metric import KCross
from kcross_metric.data.distortions import gaussian_blur, rician_noise, undersample
from kcross_metric.weights import bundled_dir


@pytest.fixture(scope="module")
def metric():
    if not (bundled_dir() / "kcross.safetensors").exists():
        pytest.skip("no bundled weights in this build")
    return KCross()


@pytest.fixture(scope="module")
def brats_slices():
    need_shared("data", "brats", "BraTS-GLI-00001-000")
    from kcross_metric.train.data import case_slices, load_case

    case = load_case("BraTS-GLI-00001-000")  # a validation case, never trained on
    images, _ = case_slices(case, [60, 70, 80], 256)
    return images


def test_bundled_weights_are_pretrained(metric):
    assert metric.version["pretrained"] is True
    assert len(metric.version["weights_sha256"]) == 64


def test_identical_is_one_and_distortions_lower(metric, brats_slices):
    real = torch.from_numpy(brats_slices["t2"][:, None])
    source = torch.from_numpy(brats_slices["t1"][:, None])
    assert torch.allclose(metric(real, real, source), torch.ones(3), atol=1e-5)
    for distorted in (gaussian_blur(real, 2.0), rician_noise(real, 0.05, generator=0)):
        s = metric(distorted.clamp(0, 1), real, source)
        assert (s < 0.999).all()


def test_more_severe_distortion_scores_lower(metric, brats_slices):
    real = torch.from_numpy(brats_slices["flair"][:, None])
    mild = metric(gaussian_blur(real, 0.7).clamp(0, 1), real)
    severe = metric(gaussian_blur(real, 3.0).clamp(0, 1), real)
    assert (severe < mild).all()
    r2 = metric(undersample(real, 2, 0.16).clamp(0, 1), real)
    r8 = metric(undersample(real, 8, 0.04).clamp(0, 1), real)
    assert (r8 < r2).all()


def test_real_volume_scores_and_slices(metric):
    path = need_shared("data", "brats", "BraTS-GLI-00001-000", "BraTS-GLI-00001-000-t2w.nii.gz")
    from kcross_metric.data.io import load_volume, normalize_volume

    vol = normalize_volume(load_volume(path).data)[60:68]  # 8 slices keep the test fast
    real = torch.from_numpy(np.ascontiguousarray(vol))[None, None]
    fake = gaussian_blur(real[0].permute(1, 0, 2, 3), 1.5).permute(1, 0, 2, 3)[None].clamp(0, 1)
    res = metric.score(fake, real)
    assert res.score.shape == (1,) and 0.0 < float(res.score) < 1.0
    assert res.slice_used.all() and torch.isfinite(res.slice_scores).all()
