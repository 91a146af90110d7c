import math

import pytest
import torch

from kcross_metric.train.losses import (
    complex_distance,
    frequency_loss,
    inconsistency_loss,
    laplacian_pyramid,
    laplacian_pyramid_l1,
    mmd_loss,
    ranking_loss,
    structure_loss,
    tumor_loss,
)


def test_complex_distance_is_modulus_of_difference():
    a = torch.complex(torch.tensor([1.0]), torch.tensor([2.0]))
    b = torch.complex(torch.tensor([4.0]), torch.tensor([-2.0]))
    assert float(complex_distance(a, b)) == pytest.approx(5.0)


def test_frequency_loss_known_answer():
    target = torch.zeros(1, 1, 4, 4, dtype=torch.complex64)
    pred = target.clone()
    pred[0, 0, 1, 2] = complex(3.0, 4.0)  # |d| = 5, the only error, focal weight 1
    pred[0, 0, 3, 3] = complex(0.0, 1.0)  # |d| = 1, focal weight 1/5
    expected = (25.0 * 1.0 + 1.0 * 0.2) / 16
    assert float(frequency_loss(pred, target)) == pytest.approx(expected, rel=1e-5)
    assert float(frequency_loss(target, target)) == pytest.approx(0.0, abs=1e-9)


def test_frequency_loss_weight_has_no_gradient():
    target = torch.zeros(1, 1, 2, 2, dtype=torch.complex64)
    pred = torch.complex(torch.tensor([[[[2.0, 0.0], [0.0, 0.0]]]]), torch.zeros(1, 1, 2, 2)).requires_grad_(True)
    frequency_loss(pred, target).backward()
    # d/dRe of w*|d|^2 / 4 with w fixed at 1: 2*2/4 = 1
    assert float(pred.grad.real[0, 0, 0, 0]) == pytest.approx(1.0, rel=1e-4)


def test_mmd_zero_for_same_set_positive_for_shifted():
    torch.manual_seed(0)
    x = torch.randn(16, 8)
    assert float(mmd_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    near = float(mmd_loss(x, torch.randn(16, 8)))
    far = float(mmd_loss(x, torch.randn(16, 8) + 3.0))
    assert far > near > 0.0


def test_mmd_single_kernel_known_value():
    # one sample each, one kernel, bandwidth = mean pairwise squared distance over off-diagonal
    x, y = torch.tensor([[0.0]]), torch.tensor([[2.0]])
    # pooled d2: [[0,4],[4,0]], base = 8/2 = 4 -> k(x,y)=exp(-1); MMD = 1 + 1 - 2 exp(-1)
    assert float(mmd_loss(x, y, n_kernels=1)) == pytest.approx(2.0 - 2.0 * math.exp(-1.0), rel=1e-6)


def test_laplacian_pyramid_reconstructs():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 32, 32, dtype=torch.float64)
    bands = laplacian_pyramid(x, levels=4)
    assert len(bands) == 4 and bands[-1].shape[-1] == 4
    rec = bands[-1]
    for band in reversed(bands[:-1]):
        rec = torch.nn.functional.interpolate(rec, size=band.shape[-2:], mode="bilinear", align_corners=False) + band
    assert torch.allclose(rec, x)


def test_laplacian_l1_constant_offset_only_in_lowpass():
    x = torch.rand(1, 1, 32, 32, dtype=torch.float64)
    loss = laplacian_pyramid_l1(x + 0.5, x, levels=3)
    assert float(loss) == pytest.approx(0.5 * 2.0 ** (-4), rel=1e-6)


def test_tumor_loss_uses_mask_and_perceptual():
    x = torch.rand(2, 1, 16, 16)
    mask = torch.zeros_like(x)
    mask[..., 4:12, 4:12] = 1
    y = x.clone()
    y[..., 0:2, 0:2] += 1.0  # outside the mask: no effect
    assert float(tumor_loss(y, x, mask)) == 0.0
    calls = []
    perceptual = lambda a, b: (calls.append(1), torch.ones(a.shape[0]))[1]  # noqa: E731
    assert float(tumor_loss(x, x, mask, perceptual, 0.5)) == pytest.approx(0.5)
    assert calls


def test_structure_inconsistency_and_ranking_losses():
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0])
    assert float(structure_loss(a, b)) == pytest.approx(1.5)
    assert float(inconsistency_loss(a, b)) == pytest.approx(2.5)
    s = torch.tensor([0.5])
    assert float(ranking_loss(s, s, torch.tensor([1.0]))) == pytest.approx(math.log(2.0))
    good = float(ranking_loss(torch.tensor([0.9]), torch.tensor([0.1]), torch.tensor([1.0])))
    bad = float(ranking_loss(torch.tensor([0.9]), torch.tensor([0.1]), torch.tensor([0.0])))
    assert good < 1e-6 < bad


def test_weighted_ranking_loss_is_the_weighted_mean_of_the_pair_losses():
    sa, sb = torch.tensor([0.9, 0.2, 0.5]), torch.tensor([0.1, 0.4, 0.5])
    better = torch.tensor([1.0, 1.0, 0.0])
    per_pair = [float(ranking_loss(sa[i : i + 1], sb[i : i + 1], better[i : i + 1])) for i in range(3)]
    w = torch.tensor([2.0, 0.0, 1.0])
    assert float(ranking_loss(sa, sb, better, weight=w)) == pytest.approx((2 * per_pair[0] + per_pair[2]) / 3)
    assert float(ranking_loss(sa, sb, better, weight=torch.ones(3))) == pytest.approx(sum(per_pair) / 3)


def test_balanced_weights_give_every_pair_set_the_same_total():
    from kcross_metric.errors import ConfigError
    from kcross_metric.train.stage2 import balanced_weights

    w = balanced_weights([2, 6, 0, 4])
    assert w.shape == (12,) and float(w.mean()) == pytest.approx(1.0)
    assert float(w[:2].sum()) == pytest.approx(float(w[2:8].sum())) == pytest.approx(float(w[8:].sum())) == pytest.approx(4.0)
    with pytest.raises(ConfigError):
        balanced_weights([0, 0])
