"""The library behind benchmarks/volume25d_table.py (2.5D 2AFC table: kcross_metric.evaluation.volume_pairs,
kcross_metric.evaluation.volume25d_table) and benchmarks/twoafc_table.py (kcross_metric.evaluation.score_cache,
kcross_metric.evaluation.twoafc_table), and thin end-to-end runs of both scripts' main()."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from kcross_metric.data.phantom import make_phantom
from kcross_metric.errors import ConfigError, FileFormatError
from kcross_metric.evaluation import score_cache as C
from kcross_metric.evaluation import twoafc_table as T
from kcross_metric.evaluation import volume25d_table as VT
from kcross_metric.evaluation import volume_pairs as V
from kcross_metric.evaluation.volume25d import score_25d
from kcross_metric.train.ratedsets.twoafc import TwoAFCPair, load_twoafc_set, write_twoafc_set

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module




# ----------------------------------------------------------------------------- 2.5D table


@pytest.fixture(scope="module")
def phantom() -> dict[str, torch.Tensor]:
    p = make_phantom((20, 32, 32), contrasts=("t1", "t2"), seed=1)
    return {"t1": p["t1"], "t2": p["t2"]}


@pytest.fixture(scope="module")
def cheap_metrics() -> dict[str, tuple[nn.Module, bool]]:
    return V.build_metrics(["psnr", "mae"])


def _noise_pairs(vols: dict[str, torch.Tensor]) -> list:
    return V.build_pairs(vols, families=["noise", "blur"], contrasts=["t2"], replicates=2, seed=3)


def test_build_pairs_deterministic_and_labelled(phantom: dict[str, torch.Tensor]) -> None:
    p1, p2 = _noise_pairs(phantom), _noise_pairs(phantom)
    assert [q.pair_id for q in p1] == ["v000", "v001", "v002", "v003"]
    assert [q.family for q in p1] == ["noise", "noise", "blur", "blur"]
    for q1, q2 in zip(p1, p2):
        assert torch.equal(q1.a, q2.a) and torch.equal(q1.b, q2.b) and q1.better == q2.better
        mild, strong = (q1.severity_a, q1.severity_b) if q1.better == "a" else (q1.severity_b, q1.severity_a)
        fam = V.FAMILIES[q1.family]
        assert fam.mild[0] <= mild <= fam.mild[1] and fam.strong[0] <= strong <= fam.strong[1]
        assert q1.a.shape == phantom["t2"].shape
    other = V.build_pairs(phantom, families=["noise"], contrasts=["t2"], seed=4)
    assert not torch.equal(other[0].a, p1[0].a)
    with pytest.raises(ConfigError, match="unknown families"):
        V.build_pairs(phantom, families=["nope"], contrasts=["t2"])
    with pytest.raises(ConfigError, match="no volume"):
        V.build_pairs(phantom, contrasts=["flair"])


def test_every_family_is_milder_by_mse(phantom: dict[str, torch.Tensor]) -> None:
    """The strong copy must differ more from the real volume than the mild one (constructed order)."""
    pairs = V.build_pairs(phantom, contrasts=["t2"], seed=0)
    assert {q.family for q in pairs} == set(V.FAMILIES)
    real = phantom["t2"]
    for q in pairs:
        mse = {s: float((getattr(q, s) - real).pow(2).mean()) for s in "ab"}
        worse = "b" if q.better == "a" else "a"
        assert mse[worse] > mse[q.better] > 0.0, (q.family, mse)


def test_plane_scores_stride1_matches_score_25d(phantom: dict[str, torch.Tensor],
                                                cheap_metrics: dict[str, tuple[nn.Module, bool]]) -> None:
    fake = V.FAMILIES["noise"].apply(phantom["t2"], 0.03, 0)
    module = cheap_metrics["psnr"][0]
    got = V.plane_scores(module, fake, phantom["t2"], None, stride=1)
    ref = score_25d(module, fake, phantom["t2"])
    for plane in ("axial", "coronal", "sagittal"):
        assert got[plane] == pytest.approx(float(ref.planes[plane][0]), rel=1e-6)
    assert got["2.5D"] == pytest.approx(float(ref.value[0]), rel=1e-6)
    strided = V.plane_scores(module, fake, phantom["t2"], None, stride=3)
    assert strided["axial"] != pytest.approx(got["axial"], rel=1e-9)  # a different slice subset


def test_evaluate_table_and_expected_accuracies(phantom: dict[str, torch.Tensor],
                                                cheap_metrics: dict[str, tuple[nn.Module, bool]]) -> None:
    pairs = _noise_pairs(phantom)
    res = V.evaluate_pairs(pairs, phantom, {"t2": phantom["t1"]}, cheap_metrics, stride=2, n_boot=100)
    # mild vs clearly stronger noise/blur: PSNR and MAE order every pair correctly in every view
    for name in ("psnr", "mae"):
        for view in V.VIEWS:
            acc, lo, hi = res.accuracy[name][view]
            assert (acc, lo, hi) == (1.0, 1.0, 1.0), (name, view)
    # the three plane margins average to the 2.5D margin
    for name in ("psnr", "mae"):
        planes = np.mean([res.margins(name, p) for p in ("axial", "coronal", "sagittal")], axis=0)
        np.testing.assert_allclose(planes, res.margins(name, "2.5D"), rtol=1e-9)
        assert (res.margins(name, "2.5D") > 0).all()
    table = VT.accuracy_markdown(res).splitlines()
    assert table[0] == "| metric | axial | coronal | sagittal | 2.5D |"
    assert [r.split(" | ")[0] for r in table[2:]] == ["| psnr", "| mae"]
    assert table[2].count("1.000 [1.000, 1.000]") == 4
    fam = VT.family_markdown(res).splitlines()
    assert fam[2] == "| noise (n=2) | 2/2/2/2 | 2/2/2/2 |" and fam[3].startswith("| blur (n=2) |")
    sens = VT.sensitivity_markdown(res).splitlines()
    assert len(sens) == 4 and sens[2].startswith("| noise | ")
    ratios = [float(x) for x in sens[2].split(" | ")[1].split("/")]
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.01)

    # flipped labels -> 0; identical sides -> ties -> 0.5
    flipped = [V.VolumePair(q.pair_id, q.family, q.contrast, q.severity_a, q.severity_b,
                            "b" if q.better == "a" else "a", q.a, q.b) for q in pairs]
    same = [V.VolumePair(q.pair_id, q.family, q.contrast, q.severity_a, q.severity_a, "a", q.a, q.a.clone())
            for q in pairs]
    r_flip = V.evaluate_pairs(flipped, phantom, {"t2": None}, cheap_metrics, stride=2, n_boot=50)
    r_same = V.evaluate_pairs(same, phantom, {"t2": None}, cheap_metrics, stride=2, n_boot=50)
    for view in V.VIEWS:
        assert r_flip.accuracy["psnr"][view][0] == 0.0
        assert r_same.accuracy["mae"][view][0] == 0.5
    assert "2.5D beats the best single plane for no metric" in VT.summary_text(res)


def test_evaluate_score_cache(tmp_path: Path, phantom: dict[str, torch.Tensor],
                              cheap_metrics: dict[str, tuple[nn.Module, bool]]) -> None:
    pairs = _noise_pairs(phantom)[:2]
    kw = {"stride": 2, "n_boot": 20, "cache_dir": tmp_path / "cache"}
    first = V.evaluate_pairs(pairs, phantom, {"t2": phantom["t1"]}, cheap_metrics, **kw)
    assert first.from_cache == [] and (tmp_path / "cache" / "scores_psnr.csv").is_file()
    again = V.evaluate_pairs(pairs, phantom, {"t2": phantom["t1"]}, cheap_metrics, **kw)
    assert again.from_cache == ["psnr", "mae"]
    for view in V.VIEWS:
        assert np.array_equal(again.scores["psnr"][view][0], first.scores["psnr"][view][0])
    # another stride scores other slices: a different cache key, recomputed
    other = V.evaluate_pairs(pairs, phantom, {"t2": phantom["t1"]}, cheap_metrics, **{**kw, "stride": 1})
    assert other.from_cache == []
    assert other.scores["psnr"]["axial"][0][0] != first.scores["psnr"]["axial"][0][0]


def test_evaluate_rejects_mismatched_pairs(phantom: dict[str, torch.Tensor],
                                           cheap_metrics: dict[str, tuple[nn.Module, bool]]) -> None:
    q = _noise_pairs(phantom)[0]
    bad = V.VolumePair("x", "noise", "t2", 0.0, 0.0, "a", q.a[..., :-1], q.b[..., :-1])
    with pytest.raises(Exception, match="do not match"):
        V.evaluate_pairs([bad], phantom, {"t2": None}, cheap_metrics)
    with pytest.raises(ConfigError):
        V.evaluate_pairs([], phantom, {}, cheap_metrics)


def test_3d_distortions_identity_and_range(phantom: dict[str, torch.Tensor]) -> None:
    x = phantom["t2"]
    assert torch.equal(V.blur3d(x, 0.0), x)
    assert torch.allclose(V.bias3d(x, 0.0, 1), x)
    y = V.blur3d(x, 1.0)
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    # blur keeps the mean of a constant volume and smooths along D as well (3-D, not slice-wise)
    c = torch.full((1, 1, 9, 9, 9), 0.5)
    assert torch.allclose(V.blur3d(c, 1.0), c, atol=1e-6)
    spike = torch.zeros(1, 1, 9, 9, 9)
    spike[0, 0, 4, 4, 4] = 1.0
    b = V.blur3d(spike, 1.0)[0, 0]
    assert float(b[3, 4, 4]) == pytest.approx(float(b[4, 3, 4]), rel=1e-5)
    assert float(b[3, 4, 4]) / float(b[4, 4, 4]) == pytest.approx(np.exp(-0.5), rel=1e-3)  # Gaussian along D
    f = V.bias3d(torch.full((1, 1, 8, 8, 8), 0.5), 0.3, 7) / 0.5
    assert float(f.min()) >= np.exp(-0.3) - 1e-5 and float(f.max()) <= np.exp(0.3) + 1e-5
    assert float(f.max()) == pytest.approx(np.exp(0.3), rel=1e-4) or float(f.min()) == pytest.approx(np.exp(-0.3), rel=1e-4)


# ----------------------------------------------------------------------------- score cache (twoafc, 2.5D)


def _compute_counter(values: dict[str, np.ndarray]):
    calls: list[np.ndarray] = []

    def compute(idx: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        calls.append(idx.copy())
        return {c: (v[idx], -v[idx]) for c, v in values.items()}

    return compute, calls


def test_cached_scores_computes_only_missing(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vals = {"m": rng.standard_normal(5).astype(np.float32), "m2": rng.standard_normal(5)}
    ids, digs = [f"p{i}" for i in range(5)], [f"d{i}" for i in range(5)]
    path = tmp_path / "scores_m.csv"
    compute, calls = _compute_counter(vals)
    out, n = C.cached_scores(path, ids, digs, "s1", ("m", "m2"), compute)
    assert n == 5 and len(calls) == 1 and calls[0].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(out["m"][0], vals["m"].astype(np.float64))
    np.testing.assert_array_equal(out["m2"][1], -vals["m2"])
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == C.CACHE_COLUMNS and len(rows) == 1 + 10

    again, n = C.cached_scores(path, ids, digs, "s1", ("m", "m2"), compute)
    assert n == 0 and len(calls) == 1  # nothing recomputed
    for c in ("m", "m2"):  # bit-identical round trip through the CSV
        assert np.array_equal(again[c][0], out[c][0]) and np.array_equal(again[c][1], out[c][1])

    digs2 = list(digs)
    digs2[3] = "changed"
    _, n = C.cached_scores(path, ids, digs2, "s1", ("m", "m2"), compute)
    assert n == 1 and calls[-1].tolist() == [3]
    _, n = C.cached_scores(path, ids, digs, "s2", ("m", "m2"), compute)
    assert n == 5  # other settings (e.g. new weights): everything again
    _, n = C.cached_scores(path, ids, digs, "s1", ("m", "m2", "m3"), lambda idx: {
        "m": (idx * 0.0, idx * 0.0), "m2": (idx * 0.0, idx * 0.0), "m3": (idx * 1.0, idx * 1.0)})
    assert n == 5  # a new column is missing for every pair

    with pytest.raises(ConfigError, match="no scores for columns"):
        C.cached_scores(None, ids, digs, "s1", ("zz",), compute)
    path.write_text("a,b\n1,2\n")
    with pytest.raises(FileFormatError, match="not a score cache"):
        C.cached_scores(path, ids, digs, "s1", ("m",), compute)


def _pair(i: int, better: str, scale: float = 1.0) -> TwoAFCPair:
    g = torch.Generator().manual_seed(i)
    ref = torch.rand(1, 1, 64, 64, generator=g) * 0.8
    noise = torch.randn(1, 1, 64, 64, generator=g)
    mild, strong = (ref + 0.02 * scale * noise).clamp(0, 1), (ref + 0.1 * scale * noise).clamp(0, 1)
    a, b = (mild, strong) if better == "a" else (strong, mild)
    return TwoAFCPair(f"p{i:03d}", "synthetic", i, "t2", "t1", "same_family", "gaussian_noise",
                      0.02 if better == "a" else 0.1, 0.1 if better == "a" else 0.02, better, ref, a, b,
                      source=(1.0 - ref).clamp(0, 1))


def test_digest_and_settings_keys() -> None:
    p = _pair(0, "a")
    d = T.pair_digest(p)
    assert d == T.pair_digest(_pair(0, "a")) and len(d) == 40
    q = _pair(0, "a")
    q.b = q.b.clone()
    q.b[0, 0, 0, 0] += 1e-3
    assert T.pair_digest(q) != d
    q = _pair(0, "a")
    q.source = None
    assert T.pair_digest(q) != d
    # the volume pairs' digest: the same hashing, over a, b, the real volume and the source
    x, y = torch.zeros(1, 1, 2, 3, 4), torch.ones(1, 1, 2, 3, 4)
    vp = V.VolumePair("v000", "noise", "t2", 0.1, 0.2, "a", x, y)
    assert V.volume_pair_digest(vp, x, None) == C.tensors_digest([("a", x), ("b", y), ("real", x), ("source", None)])
    assert V.volume_pair_digest(vp, x, None) != V.volume_pair_digest(vp, x, y)
    assert C.tensors_digest([("a", x), ("b", y)]) != C.tensors_digest([("b", y), ("a", x)])
    torch.manual_seed(0)
    m1 = nn.Conv2d(1, 2, 3)
    m2 = nn.Conv2d(1, 2, 3)
    assert C.metric_settings(m1) != C.metric_settings(m2)  # same class and shape, other weights
    m2.load_state_dict(m1.state_dict())
    assert C.metric_settings(m1) == C.metric_settings(m2)


def body(t: str) -> str:
    """A page without its first paragraph (which names the run's seconds and the cache folder)."""
    return t.split("\n\n", 1)[1]


def test_twoafc_scores_and_page_use_cache(tmp_path: Path) -> None:
    pairs = [_pair(i, "a" if i % 2 else "b") for i in range(4)]
    csv_path = write_twoafc_set(pairs, tmp_path / "set")
    loaded = load_twoafc_set(csv_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    lines: list[str] = []
    first = T.score_twoafc_set(loaded, baselines=["psnr", "mae"], cache_dir=cache, log=lines.append)
    assert "psnr: 4 pairs computed, 0 from cache" in "\n".join(lines)
    assert first.from_cache == [] and first.n_pairs == 4
    assert list(first.scores) == [*T.KCROSS_VARIANTS, "psnr", "mae"]
    assert first.scores["psnr"][2] is True and first.scores["mae"][2] is False
    assert {p.name for p in cache.glob("scores_*.csv")} == {"scores_kcross.csv", "scores_psnr.csv", "scores_mae.csv"}
    lines.clear()
    second = T.score_twoafc_set(loaded, baselines=["psnr", "mae"], cache_dir=cache, log=lines.append)
    assert "kcross: 0 pairs computed, 4 from cache" in lines[0] and "mae: 0 pairs computed" in lines[2]
    assert second.from_cache == ["kcross", "psnr", "mae"]
    for name, (sa, sb, _) in first.scores.items():  # bit-identical through the cache
        assert np.array_equal(second.scores[name][0], sa) and np.array_equal(second.scores[name][1], sb)
    t1 = T.twoafc_page(first, pairs_path=csv_path, n_boot=50, cache_dir=cache)
    t2 = T.twoafc_page(second, pairs_path=csv_path, n_boot=50, cache_dir=cache)
    assert body(t1) == body(t2)
    assert "| psnr | 1.000 [1.000, 1.000] | 1.000 [1.000, 1.000] |" in t1
    assert "| mae | 1.000 [1.000, 1.000] | 1.000 [1.000, 1.000] |" in t1
    assert "0 of 3 metrics read from the per-pair score cache" in t1
    assert "3 of 3 metrics read from the per-pair score cache" in t2
    assert "**Read this before quoting the table.**" in t1 and "mae, psnr make the same choice" not in t1
    assert "psnr, mae make the same choice on every pair" in t1
    assert t1.endswith("None of this is radiologist agreement (docs/radiologist-agreement.md).\n")
    assert "per-pair score cache" not in T.twoafc_page(first, pairs_path=csv_path, n_boot=50)


def test_same_choice_groups_and_dfd_note() -> None:
    credits = {"x": np.array([1.0, 0.0]), "y": np.array([1.0, 0.0]), "z": np.array([0.5, 1.0])}
    assert T.same_choice_groups(credits, ["x", "z", "y"]) == [["x", "y"]]
    rules = np.array(["lesion_vs_global", "same_family"])
    families = np.array(["lesion_erase|rician_noise", "gaussian_blur"])
    acc = {"x": {"all": 0.5}}
    assert T.dfd_note(acc, credits, rules, families) == ""  # the three DFDs were not all scored
    acc = {n: {"all": 0.5, "same_family": 0.0, "lesion_vs_global": 1.0} for n in ("dfd_vgg16", "dfd_random", "dfd_ssfd")}
    acc["K-CROSS"] = {"all": 0.9}
    credits = {n: np.array([1.0, 0.0]) for n in acc}
    note = T.dfd_note(acc, credits, rules, families)
    assert "all three at 0.00 on `same_family`" in note and "dfd_vgg16 rician_noise 1/1" in note
    assert "within 0.05 of the ImageNet encoder" in note and "All three stay below K-CROSS (0.900)" in note


def test_twoafc_table_script_end_to_end_uses_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The script is a thin main over the library: its page is twoafc_page's, its cache score_twoafc_set's."""
    script = _load("twoafc_table")
    pairs = [_pair(i, "a" if i % 2 else "b") for i in range(4)]
    csv_path = write_twoafc_set(pairs, tmp_path / "set")
    out1, out2 = tmp_path / "t1.md", tmp_path / "t2.md"
    args = ["--baselines", "psnr,mae", "--n-boot", "50"]
    assert script.main([str(csv_path), "--out", str(out1), *args]) == 0
    first = capsys.readouterr().out
    assert "psnr: 4 pairs computed, 0 from cache" in first
    assert {p.name for p in csv_path.parent.glob("scores_*.csv")} == {
        "scores_kcross.csv", "scores_psnr.csv", "scores_mae.csv"}
    assert script.main([str(csv_path), "--out", str(out2), *args]) == 0
    second = capsys.readouterr().out
    assert "kcross: 0 pairs computed, 4 from cache" in second and "mae: 0 pairs computed" in second
    t1, t2 = out1.read_text(encoding="utf-8"), out2.read_text(encoding="utf-8")
    assert body(t1) == body(t2)
    assert "| psnr | 1.000 [1.000, 1.000] | 1.000 [1.000, 1.000] |" in t1
    assert "| mae | 1.000 [1.000, 1.000] | 1.000 [1.000, 1.000] |" in t1
    assert "3 of 3 metrics read from the per-pair score cache" in t2
    library = T.score_twoafc_set(load_twoafc_set(csv_path), baselines=["psnr", "mae"], cache_dir=csv_path.parent)
    assert body(T.twoafc_page(library, pairs_path=csv_path, n_boot=50, cache_dir=csv_path.parent)) == body(t2)


# ----------------------------------------------------------------------------- 2.5D page and script


def test_scoring_cost_keeps_the_last_full_run(tmp_path: Path, phantom: dict[str, torch.Tensor],
                                              cheap_metrics: dict[str, tuple[nn.Module, bool]]) -> None:
    pairs = _noise_pairs(phantom)[:2]
    kw = {"stride": 2, "n_boot": 20, "cache_dir": tmp_path}
    run = VT.Volume25DRun("case", (20, 32, 32), stride=2)
    first = V.evaluate_pairs(pairs, phantom, {"t2": None}, cheap_metrics, **kw)
    cost = VT.scoring_cost(first, run, tmp_path)
    assert list(cost) == ["psnr", "mae"] and cost["psnr"][0] == run.timing_settings(2) and cost["psnr"][3] == 2
    again = V.evaluate_pairs(pairs, phantom, {"t2": None}, cheap_metrics, **kw)
    assert again.from_cache == ["psnr", "mae"]
    rounded = {n: (s, round(w, 1), round(c, 1), k) for n, (s, w, c, k) in cost.items()}
    assert VT.scoring_cost(again, run, tmp_path) == rounded  # the full run's cost, read from timing.csv
    assert VT.read_timing(tmp_path / "timing.csv") == rounded
    other = VT.Volume25DRun("case", (20, 32, 32), stride=2, seed=1)
    assert VT.scoring_cost(again, other, tmp_path) == {}  # no full run with these settings
    assert VT.scoring_cost(again, run, None) == {}


def test_volume25d_script_end_to_end(tmp_path: Path, phantom: dict[str, torch.Tensor],
                                     monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The script is a thin main over the library (the validation case replaced by a phantom)."""
    script = _load("volume25d_table")
    vols = {"t1": phantom["t1"], "t2": phantom["t2"], "flair": phantom["t2"].flip(-1)}
    monkeypatch.setattr(script, "load_validation_volumes", lambda *a, **k: ("phantom", vols, (40, 64, 64)))
    out = tmp_path / "page.md"
    args = ["--out", str(out), "--metrics", "psnr,mae", "--families", "noise,blur", "--stride", "2",
            "--n-boot", "20", "--cache-dir", str(tmp_path / "cache")]
    assert script.main(args) == 0
    printed = capsys.readouterr().out
    assert "4 pairs built" in printed and "psnr: 4 of 4 pairs scored" in printed
    page = out.read_text(encoding="utf-8")
    assert page.startswith("# 2.5D results: single planes vs tri-planar mean\n")
    assert f"Command: `python benchmarks/volume25d_table.py --out {out}` (seed 0, 20 bootstrap resamples" in page
    assert "validation case `phantom` only" in page and "D x H x W = 20 x 32 x 32" in page
    assert "(axial 10, coronal 16, sagittal\n16 slices" in page and "every 2nd slice" in page
    assert "The strong copy has the larger MSE in 4 of the 4 pairs." in page
    assert "| psnr | 1.000 [1.000, 1.000] | 1.000 [1.000, 1.000] | 1.000 [1.000, 1.000] | 1.000 [1.000, 1.000] |" in page
    assert "| noise (n=2) | 2/2/2/2 | 2/2/2/2 |" in page and "- `blur` (3-D): " in page
    assert "Metrics read from the score cache" not in page
    assert script.main(args) == 0
    again = out.read_text(encoding="utf-8")
    assert "Metrics read from the score cache this run: psnr, mae." in again
    def steady(t: str) -> str:  # without the run's own timings
        return "\n".join(line for line in t.splitlines() if not line.startswith(("This run:", "building the pairs")))

    assert steady(again) == steady(page)  # the cost line comes from timing.csv
