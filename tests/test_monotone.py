"""Design v2 (issue 16): monotone score heads, a lesion region that does not move with the fake,
lesion-change features, severity ladders and lesion rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kcross_metric import KCross
from kcross_metric.core.branches import lesion_change_features
from kcross_metric.core.nets.kcross_nets import KCrossNetworks, head_energies
from kcross_metric.core.nets.score import MonotoneScoreNet, complex_monotone_inputs
from kcross_metric.errors import ConfigError, WeightsError
from kcross_metric.train.ratedsets import ladders as L
from kcross_metric.train.ratedsets import twoafc as T


@pytest.mark.parametrize("seed", range(5))
def test_monotone_head_never_lowers_the_distance(seed: int):
    """Property: whatever the weights, a larger difference in any input never lowers the distance."""
    gen = torch.Generator().manual_seed(seed)
    head = MonotoneScoreNet(40, 8)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 3)
    x = torch.rand(64, 40, generator=gen)
    step = torch.rand(64, 40, generator=gen) * (torch.rand(64, 40, generator=gen) < 0.2)
    assert (head(x + step) >= head(x) - 1e-6).all()
    assert torch.equal(head(torch.zeros(3, 40)), torch.zeros(3))


def test_complex_inputs_are_non_negative_and_zero_at_zero():
    z = torch.randn(16, 8, dtype=torch.complex64)
    v = complex_monotone_inputs(z)
    assert v.shape == (16, 16) and (v >= 0).all()
    assert torch.allclose(v[:, :8], z.abs(), atol=1e-5)
    assert torch.count_nonzero(complex_monotone_inputs(torch.zeros(2, 8, dtype=torch.complex64))) == 0


def test_designs_and_head_energies():
    assert KCrossNetworks.design_of(KCrossNetworks("v1").state_dict()) == "v1"
    assert KCrossNetworks.design_of(KCrossNetworks("v2").state_dict()) == "v2"
    with pytest.raises(WeightsError):
        KCrossNetworks("v3")
    nets = KCrossNetworks("v2")
    vc = torch.randn(4, 512, dtype=torch.complex64) * 0.1
    vt, vs = torch.rand(4, 256) * 0.1, torch.rand(4, 256) * 0.1
    ec, en = head_energies("v2", nets.complex_score, nets.natural_score, vc, vt, vs, None)
    _, en_more = head_energies("v2", nets.complex_score, nets.natural_score, vc, vt, vs, torch.ones(4, 2))
    assert ec.shape == en.shape == (4,) and (en_more >= en).all()


def test_lesion_change_features():
    real = torch.zeros(1, 1, 32, 32)
    real[..., 8:16, 8:16] = 1.0
    assert torch.equal(lesion_change_features(real, real), torch.zeros(1, 2))
    moved = torch.roll(real, 10, dims=-1)
    added, removed = lesion_change_features(moved, real)[0]
    assert float(added) > 0 and float(removed) > 0 and float(added) == pytest.approx(float(removed))
    erased_half = real.clone()
    erased_half[..., 8:12, :] = 0
    a, r = lesion_change_features(erased_half, real)[0]
    assert float(a) == 0 and 0 < float(r) < float(lesion_change_features(torch.zeros_like(real), real)[0, 1])


def _case(seed: int = 0, size: int = 64) -> T.CaseSlices:
    from kcross_metric.data.phantom import make_phantom

    slices = [make_phantom((size, size), contrasts=("t1", "t2"), seed=seed + k) for k in range(2)]
    images = {c: np.stack([s[c][0, 0].numpy() for s in slices]) for c in ("t1", "t2")}
    lesion = np.stack([s["mask"][0, 0].numpy() > 0.5 for s in slices])
    return T.CaseSlices(f"phantom{seed}", [0, 1], images, lesion)


def test_ladders_are_strictly_ordered_by_mse_and_cover_every_family(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(T, "MIN_LESION_PX", 20)
    monkeypatch.setattr(L, "MIN_LESION_PX", 20)
    ladders = L.build_ladders([_case(0), _case(5)], n_per_family=1, seed=0)
    assert {lad.family for lad in ladders} == set(L.LADDERS)
    for lad in ladders:
        assert lad.images.shape == (5, 1, 64, 64)
        assert all(b > a for a, b in zip(lad.mse, lad.mse[1:]))
        assert lad.source is not None and lad.source_contrast != lad.contrast
    again = L.build_ladders([_case(0), _case(5)], n_per_family=1, seed=0)
    assert all(torch.equal(a.images, b.images) for a, b in zip(ladders, again))
    with pytest.raises(ConfigError, match="unknown ladder"):
        L.build_ladders([_case(0)], families=["warp"], n_per_family=1)


def test_consecutive_pairs():
    better, worse = L.consecutive_pairs(2, 4)
    assert better.tolist() == [0, 1, 2, 4, 5, 6] and worse.tolist() == [1, 2, 3, 5, 6, 7]


def test_lesion_rules_for_every_edit(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(T, "MIN_LESION_PX", 20)
    monkeypatch.setattr(L, "MIN_LESION_PX", 20)
    pairs = L.build_lesion_rules([_case(0, 96), _case(7, 96)], n_per_edit=1, seed=0)
    assert {p.family for p in pairs} <= set(T.ALL_LESION_EDITS)
    assert {"lesion_erase", "lesion_invent"} <= {p.family for p in pairs}
    for p in pairs:
        worse = p.a if p.better == "b" else p.b
        better = p.b if p.better == "b" else p.a
        m_w, m_b = float(((worse - p.reference) ** 2).mean()), float(((better - p.reference) ** 2).mean())
        assert m_b == pytest.approx(m_w, rel=T.MSE_MATCH_TOL + 1e-6)


def test_stage2_on_ladders_exports_a_v2_file(tmp_path, monkeypatch: pytest.MonkeyPatch):
    from kcross_metric.train.config import Stage2Config
    from kcross_metric.train.stage2 import ScoreHeads, ladder_bank, merge_banks, select_pairs, train_stage2

    monkeypatch.setattr(L, "MIN_LESION_PX", 20)
    kcross = KCross.untrained(seed=0)
    ladders = L.build_ladders([_case(0)], families=["gaussian_blur", "rician_noise"], n_per_family=2, seed=0)
    bank = ladder_bank(kcross, ladders)
    assert len(bank["rules"]) == 4 * len(ladders) and bank["vc"].shape[0] == 4 * len(ladders)
    merged = merge_banks([bank, bank], balance=True)
    assert len(merged["rules"]) == 2 * len(bank["rules"]) and float(merged["weight"].mean()) == pytest.approx(1.0)
    blur_only = select_pairs(bank, lambda r: r.endswith("gaussian_blur"))
    assert set(blur_only["rules"]) == {"ladder:gaussian_blur"}
    heads = train_stage2(Stage2Config(epochs=2, threads=1), tmp_path / "s2", kcross.nets, train_bank=bank, verbose=False)
    assert isinstance(heads, ScoreHeads) and heads.design == "v2"


def test_misregistration_pairs_have_equal_mse():
    pairs = L.build_misregistration_pairs([_case(0, 96)], n_pairs=3, seed=0)
    assert pairs and all(p.rule == "misregistration_vs_global" and p.family == "misregistration" for p in pairs)
    for p in pairs:
        worse, better = (p.a, p.b) if p.better == "b" else (p.b, p.a)
        m_w, m_b = float(((worse - p.reference) ** 2).mean()), float(((better - p.reference) ** 2).mean())
        assert m_b == pytest.approx(m_w, rel=T.MSE_MATCH_TOL + 1e-6)
