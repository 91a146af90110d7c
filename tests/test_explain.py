"""KCross.explain: the KCross.score result plus error maps, exact contribution identity, error maps
with known values."""

import ast
import math
from pathlib import Path

import pytest
import torch

import kcross_metric.core.metric
from kcross_metric import KCross, KCrossResult
from kcross_metric.core.branches import BRANCHES, FEATURE_BRANCHES
from kcross_metric.core.explain import KSPACE_ERROR_EPS, KCrossExplanation, explain
from kcross_metric.data.phantom import make_pair
from kcross_metric.errors import ConfigError, ShapeError


@pytest.fixture(scope="module")
def metric():
    return KCross.untrained(seed=0)


@pytest.fixture(scope="module")
def volumes():
    """Two 5-slice 32x32 volumes; the second has an empty first slice (not scored)."""
    f, r, s, m = make_pair((16, 32, 32), seed=0, blur_sigma=1.5, lesion_fade=0.8)
    f, r, s, m = (t[:, :, 5:10] for t in (f, r, s, m))
    fake, real, source, mask = torch.cat([f, r]), torch.cat([r, r]), torch.cat([s, s]), torch.cat([m, m])
    fake[1, :, 0] = 0.0
    real[1, :, 0] = 0.0
    return fake, real, source, mask


@pytest.fixture(scope="module")
def pair_result(metric, volumes):
    fake, real, source, mask = volumes
    with torch.no_grad():
        return metric.explain(fake, real, source, mask), metric.score(fake, real, source, mask)


def test_explain_equals_score_on_volumes(pair_result):
    ex, res = pair_result
    assert isinstance(ex, KCrossExplanation) and isinstance(ex, KCrossResult)
    assert torch.equal(ex.score, res.score)
    for k in BRANCHES:
        assert torch.equal(ex.branches[k], res.branches[k])
        torch.testing.assert_close(ex.slice_branches[k], res.slice_branches[k], rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(ex.slice_contributions[k], res.slice_contributions[k], rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(ex.slice_scores, res.slice_scores, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(ex.slice_used, res.slice_used)
    assert torch.equal(ex.has_lesion, res.has_lesion)
    assert torch.equal(ex.lesion_mask, res.lesion_mask)
    # the empty slice of the second volume is not scored; the identical volume scores exactly 1
    assert ex.slice_used.tolist() == [[True] * 5, [False] + [True] * 4]
    assert math.isnan(float(ex.slice_scores[1, 0]))
    assert float(ex.score[1]) == pytest.approx(1.0, abs=1e-6)
    assert float(ex.score[0]) < 0.999


def test_contributions_decompose_the_score_exactly(pair_result):
    ex, _ = pair_result
    assert ex.combine == "product"
    used = ex.slice_used
    total = ex.slice_contributions["complex"] + ex.slice_contributions["natural"]
    torch.testing.assert_close(total[used], -torch.log(ex.slice_scores[used]), rtol=1e-5, atol=1e-6)
    assert torch.isnan(ex.slice_contributions["complex"][~used]).all()
    for k, q in ex.branches.items():
        torch.testing.assert_close(ex.contributions[k], -torch.log(q))
    # a perfect volume costs nothing in every branch (and no negative zeros)
    assert all(float(ex.contributions[k][1]) == 0.0 and math.copysign(1, float(ex.contributions[k][1])) > 0 for k in ex.contributions)
    shares = ex.shares(0)
    assert sum(shares.values()) == pytest.approx(1.0) and all(v >= 0 for v in shares.values())
    assert ex.shares(1) == {"complex": 0.0, "tumor": 0.0, "structure": 0.0}
    assert sum(ex.shares(0, 2).values()) == pytest.approx(1.0)


def test_worst_slices_are_scored_slices_lowest_first(pair_result):
    ex, _ = pair_result
    worst = ex.worst_slices(3, sample=0)
    s = ex.slice_scores[0]
    assert worst == sorted(range(5), key=lambda i: float(s[i]))[:3]
    assert 0 not in ex.worst_slices(10, sample=1) and len(ex.worst_slices(10, sample=1)) == 4
    with pytest.raises(ConfigError):
        ex.worst_slices(-1)


def test_maps_have_input_shape_and_known_values(pair_result, volumes):
    ex, _ = pair_result
    fake, real, _, _ = volumes
    assert ex.error_map.shape == fake.shape and ex.kspace_error.shape == fake.shape
    assert ex.lesion_mask.dtype == torch.bool
    torch.testing.assert_close(ex.error_map, (fake - real).abs())
    identical = torch.full_like(ex.kspace_error[1], math.log(KSPACE_ERROR_EPS))
    torch.testing.assert_close(ex.kspace_error[1], identical)  # the second volume is fake == real
    assert not ex.score.requires_grad and not ex.error_map.requires_grad


def test_slices_data_range_and_kspace_reference_values(metric):
    """A single-pixel difference has a flat orthonormal spectrum delta/sqrt(HW); a constant offset is
    pure DC, which sits at (H//2, W//2) in the centred k-space."""
    _, real, _, _ = make_pair((32, 32), seed=1)
    real = real * 0.5
    spike = real.clone()
    spike[0, 0, 10, 7] += 0.25
    offset = real + 0.1
    fake = torch.cat([spike, offset]) * 2.0  # data_range 2
    refs = torch.cat([real, real]) * 2.0
    m2 = KCross.untrained(seed=0, data_range=2.0)
    ex = m2.explain(fake, refs)
    assert ex.slice_scores.shape == (2, 1) and ex.error_map.shape == fake.shape
    torch.testing.assert_close(ex.score, m2.score(fake, refs).score, rtol=0, atol=1e-6)
    torch.testing.assert_close(ex.error_map, (fake - refs).abs() / 2.0)
    expected = math.log(0.25 / 32 + KSPACE_ERROR_EPS)
    torch.testing.assert_close(ex.kspace_error[0], torch.full((1, 32, 32), expected), rtol=0, atol=1e-4)
    k = ex.kspace_error[1, 0]
    assert divmod(int(k.argmax()), 32) == (16, 16)
    assert float(k[16, 16]) == pytest.approx(math.log(0.1 * 32), abs=1e-4)
    assert explain(metric, real, real).score.shape == (1,)


def test_explain_equals_score_in_float64(metric, volumes):
    """One computation: the explanation carries KCross.score's values, bit for bit, in every dtype."""
    fake, real, source, _ = (t.double() for t in volumes)
    ex, res = metric.explain(fake, real, source), metric.score(fake, real, source)
    assert ex.score.dtype == torch.float64 and torch.equal(ex.score, res.score)
    assert all(torch.equal(ex.branches[k], res.branches[k]) for k in BRANCHES)


def test_score_of_slices_has_no_per_slice_fields(metric):
    """A result of slice inputs leaves the per-slice fields None; its explanation fills them (D = 1)."""
    fake, real, source, _ = make_pair((32, 32), seed=0)
    res, ex = metric.score(fake, real, source), metric.explain(fake, real, source)
    assert res.slice_scores is None and res.slice_branches is None and res.slice_contributions is None
    assert res.has_lesion.shape == (1,) and ex.has_lesion.shape == (1, 1)
    assert torch.equal(ex.slice_scores[:, 0], res.score) and ex.slice_used.tolist() == [[True]]
    assert all(torch.equal(ex.slice_branches[k][:, 0], res.branches[k]) for k in BRANCHES)
    assert res.shares(0) == ex.shares(0) == ex.shares(0, 0)
    assert ex.worst_slices(3) == [0]
    with pytest.raises(ConfigError, match="per-slice"):
        res.worst_slices(1)
    with pytest.raises(ConfigError, match="per-slice"):
        res.shares(0, 0)


def test_explain_branches_name_is_deprecated():
    import kcross_metric.core.explain as explain_module

    with pytest.warns(DeprecationWarning, match="kcross_metric.core.branches.BRANCHES"):
        assert explain_module.BRANCHES == BRANCHES


def test_metric_never_imports_explain():
    """Imports point one way, explain -> metric, also inside functions."""
    tree = ast.parse(Path(kcross_metric.core.metric.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name if isinstance(node, ast.Import) else f"{node.module or ''}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert not [name for name in imported if "explain" in name]


def test_explain_validates_like_score(metric):
    x = torch.rand(1, 1, 32, 32)
    with pytest.raises(ShapeError):
        metric.explain(x, torch.rand(1, 1, 32, 31))
    with pytest.raises(ShapeError):
        metric.explain(x, x, mask=torch.zeros(1, 1, 16, 16))


def test_no_shares_when_nothing_to_share():
    """Identical images: every contribution ~0, so no branch gets a 'share' (not 62 % of noise)."""
    from kcross_metric.core.explain import MIN_SHARE_TOTAL
    from kcross_metric.report.html import ReportEntry, volume_section

    x = torch.rand(1, 1, 3, 32, 32) * 0.8 + 0.1
    ex = KCross.untrained(seed=0).explain(x, x)
    assert sum(float(ex.contributions[k][0]) for k in FEATURE_BRANCHES) < MIN_SHARE_TOTAL
    assert set(ex.shares(0).values()) == {0.0}
    html = volume_section(ReportEntry("same", ex, x, x, None, {}), worst_n=1)
    assert 'class="bar"' not in html


def test_explain_refuses_an_empty_reference_like_score():
    from kcross_metric.core.metric import KCross
    from kcross_metric.errors import EmptyReferenceError

    metric = KCross.untrained(seed=0)
    real = torch.zeros(1, 1, 4, 32, 32)
    real[0, 0, :, 3, 3] = 1.0  # a few bright voxels: not constant, but no slice with brain
    fake = torch.rand_like(real)
    for call in (metric.score, metric.explain):
        with pytest.raises(EmptyReferenceError, match="no slice with brain"):
            call(fake, real)
