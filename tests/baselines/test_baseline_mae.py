from __future__ import annotations

import numpy as np
import pytest
import torch
from _baseline_helpers import assert_batch_independent, brats_crop, degraded, mr_slice

from kcross_metric.baselines import MAE, mae
from kcross_metric.errors import ConfigError, DTypeError, RangeError, ShapeError


def test_mae_matches_numpy_on_mr_slice() -> None:
    y = mr_slice()
    x = degraded(y)
    expected = np.abs(x.numpy() - y.numpy()).mean()
    got = mae(x[None, None], y[None, None], data_range=1.0)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    assert mae(x[None, None] * 4095, y[None, None] * 4095, data_range=4095, normalize=True).item() == \
        pytest.approx(expected, rel=1e-9)


def test_mae_3d_volume() -> None:
    y = brats_crop()
    x = degraded(y, seed=1)
    got = MAE(data_range=1.0)(x[None, None], y[None, None])
    assert got.item() == pytest.approx(np.abs(x.numpy() - y.numpy()).mean(), rel=1e-12)


def test_mae_reductions_and_identity() -> None:
    y = torch.rand(3, 2, 16, 16, dtype=torch.float64)
    x = torch.rand(3, 2, 16, 16, dtype=torch.float64)
    per = mae(x, y)
    assert per.shape == (3,)
    assert mae(x, y, reduction="mean").item() == pytest.approx(per.mean().item())
    assert mae(x, y, reduction="sum").item() == pytest.approx(per.sum().item())
    assert torch.all(mae(y, y) == 0)


def test_mae_batch_independent() -> None:
    y = mr_slice()[None, None].repeat(3, 1, 1, 1)
    x = torch.stack([degraded(y[i, 0], seed=i, noise=0.02 * (i + 1)) for i in range(3)])[:, None]
    assert_batch_independent(MAE(), x, y)


def test_mae_gradcheck() -> None:
    x = torch.rand(2, 1, 5, 6, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 1, 5, 6, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: mae(a, y), (x,), fast_mode=True)


def test_mae_errors() -> None:
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ShapeError):
        mae(x, torch.rand(1, 1, 8, 9))
    with pytest.raises(RangeError):
        mae(x * 2, x, data_range=1.0)
    with pytest.raises(DTypeError):
        mae((x * 255).to(torch.uint8), (x * 255).to(torch.uint8), data_range=255)
    with pytest.raises(ConfigError):
        MAE(reduction="max")
