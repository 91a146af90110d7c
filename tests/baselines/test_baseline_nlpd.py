from __future__ import annotations

import numpy as np
import pytest
import torch
from _baseline_helpers import assert_batch_independent, calibration_pairs, degraded, mr_slice, official

from kcross_metric.baselines import NLPD, nlpd, rgb_to_gray
from kcross_metric.errors import ImageTooSmallError

ndimage = pytest.importorskip("scipy.ndimage")

_F = np.outer([0.05, 0.25, 0.4, 0.25, 0.05], [0.05, 0.25, 0.4, 0.25, 0.05])
_SIG = [0.0248, 0.0185, 0.0179, 0.0191, 0.0220, 0.2782]
_DN = [
    [[0, 0.1011, 0], [0.1493, 0, 0.1460], [0, 0.1015, 0]],
    [[0, 0.0757, 0], [0.1986, 0, 0.1846], [0, 0.0837, 0]],
    [[0, 0.0477, 0], [0.2138, 0, 0.2243], [0, 0.0467, 0]],
    [[0, 0, 0], [0.2503, 0, 0.2616], [0, 0, 0]],
    [[0, 0, 0], [0.2598, 0, 0.2552], [0, 0, 0]],
    [[0, 0, 0], [0.2215, 0, 0.0717], [0, 0, 0]],
]


def _nlp_numpy(im: np.ndarray) -> list[np.ndarray]:
    """NLP_dist.m's NLP() with scipy.ndimage (reflect = Matlab 'symmetric', constant = zero pad)."""
    bands, j = [], im
    for _ in range(5):
        low = ndimage.correlate(j, _F, mode="reflect")[::2, ::2]
        odd = (2 * low.shape[0] - j.shape[0], 2 * low.shape[1] - j.shape[1])
        p = np.pad(low, 1, mode="edge")
        r = np.zeros((2 * p.shape[0], 2 * p.shape[1]))
        r[::2, ::2] = 4 * p
        r = ndimage.correlate(r, _F, mode="constant")[2 : r.shape[0] - 2 - odd[0], 2 : r.shape[1] - 2 - odd[1]]
        bands.append(j - r)
        j = low
    bands.append(j)
    out = []
    for k, b in enumerate(bands):
        f = np.zeros((5, 5))
        f[1:4, 1:4] = _DN[k]
        if k == 0:
            f[2, 4] = 0.0072
        out.append(b / (_SIG[k] + ndimage.convolve(np.abs(b), f, mode="constant")))
    return out


def _nlpd_numpy(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([np.sqrt(np.mean((p - q) ** 2)) for p, q in zip(_nlp_numpy(a), _nlp_numpy(b), strict=True)]))


def test_nlpd_matches_official_tid2013() -> None:
    # Official NLP_dist.m on Matlab rgb2gray of the 8-bit images / 255: measured max error 3e-16.
    dist, ref = calibration_pairs()
    got = nlpd(rgb_to_gray(dist, 255.0, quantize=True), rgb_to_gray(ref, 255.0, quantize=True),
               data_range=255.0).numpy()
    np.testing.assert_allclose(got, official("nlpd"), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("shape", [(256, 256), (253, 238)])
def test_nlpd_matches_numpy_reference_on_odd_sizes(shape: tuple[int, int]) -> None:
    y = mr_slice()[: shape[0], : shape[1]]
    x = degraded(y)
    ref = _nlpd_numpy(x.numpy(), y.numpy())
    assert NLPD()(x[None, None], y[None, None]).item() == pytest.approx(ref, rel=1e-9)


def test_nlpd_identity_scale_and_monotonicity() -> None:
    y = mr_slice()[None, None]
    assert nlpd(y, y).item() == pytest.approx(0.0, abs=1e-9)
    mild = degraded(y[0, 0], noise=0.01)[None, None]
    strong = degraded(y[0, 0], noise=0.1)[None, None]
    assert nlpd(mild, y).item() < nlpd(strong, y).item()
    assert nlpd(mild * 1000, y * 1000, data_range=1000).item() == pytest.approx(nlpd(mild, y).item(), rel=1e-9)


def test_nlpd_batch_independent() -> None:
    y = mr_slice()[None, None].repeat(3, 1, 1, 1)
    x = torch.stack([degraded(y[i, 0], seed=i, noise=0.02 * (i + 1)) for i in range(3)])[:, None]
    assert_batch_independent(NLPD(), x, y)


def test_nlpd_gradcheck() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 32, 33, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.rand(1, 1, 32, 33, dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(lambda a: nlpd(a, y), (x,), fast_mode=True)


def test_nlpd_too_small() -> None:
    with pytest.raises(ImageTooSmallError, match=">= 32"):
        nlpd(torch.rand(1, 1, 31, 64), torch.rand(1, 1, 31, 64))
