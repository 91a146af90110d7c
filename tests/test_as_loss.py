"""K-CROSS as a training loss (kcross_metric.integrations.metrics.kcross_loss): a tiny T1->T2 generator learns,
gradients reach the generator and never the metric's networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("torchmetrics")

from kcross_metric import KCross
from kcross_metric.data.phantom import make_phantom
from kcross_metric.errors import ConfigError, RangeError
from kcross_metric.integrations.metrics import KCrossLoss, kcross_loss


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def t1_t2() -> tuple[torch.Tensor, torch.Tensor]:
    """Four 64x64 phantom slices: T1 (source) and T2 (target), (4,1,64,64) in [0,1]."""
    phantoms = [make_phantom((64, 64), ("t1", "t2"), seed=s) for s in range(4)]
    return torch.cat([p["t1"] for p in phantoms]), torch.cat([p["t2"] for p in phantoms])


def _generator() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1), nn.Sigmoid())


@pytest.mark.parametrize("design, factor", [("v1", 0.8), ("v2", 0.95)])
def test_generator_trained_with_kcross_loss_improves(t1_t2, design: str, factor: float):
    t1, t2 = t1_t2
    gen = _generator()
    loss_fn = kcross_loss(KCross.untrained(seed=0, design=design))
    frozen = {k: v.clone() for k, v in loss_fn.state_dict().items()}
    opt = torch.optim.Adam(gen.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = loss_fn(gen(t1), t2, t1)
        assert loss.dim() == 0 and 0.0 <= loss.item() <= 1.0
        loss.backward()
        # gradients reach every generator parameter ...
        assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in gen.parameters())
        opt.step()
        losses.append(loss.item())
    # ... and none of the metric's networks, which do not change
    assert all(not p.requires_grad and p.grad is None for p in loss_fn.parameters())
    assert all(torch.equal(v, loss_fn.state_dict()[k]) for k, v in frozen.items())
    assert not loss_fn.metric.nets.training
    # measured over 20 steps (Adam, lr 1e-2): v1 0.625 -> 0.330, v2 (monotone heads, random
    # non-negative weights) 0.876 -> 0.789; require a clear, steady decrease
    assert losses[-1] < factor * losses[0]
    assert sum(losses[-5:]) < sum(losses[:5])


def test_loss_is_one_minus_score(t1_t2):
    t1, t2 = t1_t2
    metric = KCross.untrained(seed=0)
    fake = t2.flip(-1)  # a wrong image
    per_sample = KCrossLoss(metric, reduction="none")(fake, t2, t1)
    assert torch.allclose(per_sample, 1.0 - metric(fake, t2, t1), atol=1e-6)
    assert torch.allclose(KCrossLoss(metric)(fake, t2, t1), per_sample.mean(), atol=1e-6)
    assert torch.allclose(KCrossLoss(metric, reduction="sum")(fake, t2, t1), per_sample.sum(), atol=1e-5)
    assert KCrossLoss(metric)(t2, t2, t1).item() == pytest.approx(0.0, abs=1e-5)


def test_out_of_range_generator_output(t1_t2):
    _, t2 = t1_t2
    metric = KCross.untrained(seed=0)
    fake = (t2 * 1.2 - 0.1).requires_grad_(True)  # outside [0, 1], as a linear output layer gives
    with pytest.raises(RangeError):
        KCrossLoss(metric)(fake, t2)
    loss = KCrossLoss(metric, clamp=True)(fake, t2)
    loss.backward()
    inside = (fake.detach() > 0) & (fake.detach() < 1)
    assert float(fake.grad[inside].abs().sum()) > 0
    assert float(fake.grad[~inside].abs().sum()) == 0.0  # clamped pixels get no gradient


def test_loss_arguments():
    with pytest.raises(ConfigError, match="KCross"):
        KCrossLoss(nn.Identity())
    with pytest.raises(ConfigError, match="not both"):
        KCrossLoss(KCross.untrained(seed=0), data_range=2.0)
    with pytest.raises(ConfigError, match="reduction"):
        KCrossLoss(KCross.untrained(seed=0), reduction="max")
