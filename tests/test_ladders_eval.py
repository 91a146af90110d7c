"""kcross_metric.evaluation.ladders (behind benchmarks/ladders_table.py and benchmarks/lofo_table.py),
on phantom slices: sets, features, credits, the cache files' names, the pages."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from kcross_metric import KCross
from kcross_metric.core.branches import BRANCHES
from kcross_metric.core.nets.kcross_nets import KCrossNetworks
from kcross_metric.evaluation import ladders as E
from kcross_metric.train.config import Stage2Config
from kcross_metric.train.ratedsets import ladders as L
from kcross_metric.train.ratedsets import twoafc as T
from kcross_metric.train.stage2 import FeatureBank, ScoreHeads, ladder_bank, merge_banks, pair_bank


def _case(seed: int, size: int = 64) -> T.CaseSlices:
    from kcross_metric.data.phantom import make_phantom

    slices = [make_phantom((size, size), contrasts=("t1", "t2"), seed=seed + k) for k in range(2)]
    images = {c: np.stack([s[c][0, 0].numpy() for s in slices]) for c in ("t1", "t2")}
    lesion = np.stack([s["mask"][0, 0].numpy() > 0.5 for s in slices])
    return T.CaseSlices(f"phantom{seed}", [0, 1], images, lesion)


@pytest.fixture(scope="module")
def small_lesions() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(T, "MIN_LESION_PX", 20)
        mp.setattr(L, "MIN_LESION_PX", 20)
        yield


@pytest.fixture(scope="module")
def cases() -> list[T.CaseSlices]:
    return [_case(0), _case(5)]


@pytest.fixture(scope="module")
def data(small_lesions: None, cases: list[T.CaseSlices]) -> E.LadderSet:
    return E.ladder_set_from_cases(cases, n_ladders=1, n_lesion=1, seed=0)


@pytest.fixture(scope="module")
def kcross() -> KCross:
    return KCross.untrained(seed=0)


@pytest.fixture(scope="module")
def encoded(kcross: KCross, data: E.LadderSet) -> E.EncodedLadderSet:
    return E.encode_ladder_set_with(kcross, data)


def test_quality_columns_are_the_score_and_the_branches():
    assert E.QUALITY_COLUMNS[0] == "score" and set(E.QUALITY_COLUMNS) == {"score", *BRANCHES}


def test_set_key_is_the_cache_key_of_the_scripts():
    """The cache under --cache stays readable: the key is the one benchmarks/ladders_table.py always used."""
    text = "validation|a,b|20|30|0|(40, 100)|v1"
    assert E.set_key("validation", ("a", "b"), n_ladders=20, n_lesion=30, seed=0) == hashlib.sha1(text.encode()).hexdigest()[:12]
    assert E.set_key("validation", ["a", "b"], n_ladders=20, n_lesion=30, seed=1) != E.set_key(
        "validation", ["a", "b"], n_ladders=20, n_lesion=30, seed=0)


def test_credits_count_ties_as_half():
    # two ladders of three levels, higher better: ladder 0 ordered, ladder 1 one tie and one inversion
    scores = torch.tensor([0.9, 0.5, 0.1, 0.4, 0.4, 0.6])
    assert E.ladder_credit(scores, 2, 3).tolist() == [1.0, 1.0, 0.5, 0.0]
    a, b = torch.tensor([1.0, 1.0, 2.0]), torch.tensor([2.0, 1.0, 1.0])
    assert E.pair_credit(a, b, torch.tensor([False, True, True])).tolist() == [1.0, 0.5, 1.0]


def test_format_credit():
    assert E.format_credit(np.array([]), True) == "–"
    assert E.format_credit(np.array([1.0, 0.0, 0.5, 1.0]), False) == "0.62"
    text = E.format_credit(np.array([1.0, 0.0, 0.5, 1.0]), True)
    assert re.fullmatch(r"0\.625 \[\d\.\d\d, \d\.\d\d\]", text)
    assert text == E.format_credit(np.array([1.0, 0.0, 0.5, 1.0]), True)  # seeded bootstrap


def test_ladder_set_from_phantoms(data: E.LadderSet):
    lad, les = data["ladders"], data["lesion"]
    n = len(lad["family"])
    assert set(lad["family"]) == set(L.LADDERS) and n == len(L.LADDERS)
    assert lad["images"].shape == (n, 5, 1, 64, 64)
    assert lad["reference"].shape == lad["source"].shape == (n, 1, 64, 64)
    m = len(les["edit"])
    assert m >= 1 and set(les["edit"]) <= set(T.ALL_LESION_EDITS)
    assert les["a"].shape == les["b"].shape == les["reference"].shape == les["source"].shape == (m, 1, 64, 64)
    assert les["a_better"].dtype == torch.bool and les["a_better"].shape == (m,)
    assert data["cases"] == ["phantom0", "phantom5"]


def test_misregistration_set_from_phantoms():
    misreg = E.misregistration_set_from_cases([_case(0, 96)], n_pairs=2, seed=0)
    k = len(misreg["case"])
    assert 1 <= k <= 2
    assert misreg["a"].shape == misreg["b"].shape == misreg["reference"].shape == (k, 1, 96, 96)
    assert misreg["a_better"].shape == (k,)


def test_encoded_features(encoded: E.EncodedLadderSet, data: E.LadderSet, kcross: KCross):
    n, levels = data["ladders"]["images"].shape[:2]
    m = len(data["lesion"]["edit"])
    assert encoded["sha"] == "none" and encoded["design"] == "v2"
    feats = encoded["ladders"]
    for k in (*E.QUALITY_COLUMNS, "norm_complex", "norm_tumor", "norm_structure", "lesion_change"):
        assert feats[k].shape == (n * levels,), k
    assert feats["region"].shape == (n * levels, 64 * 64)
    assert feats["vc"].shape == (n * levels, 512) and feats["vc"].is_complex()
    assert feats["vt"].shape == feats["vs"].shape == (n * levels, 256) and feats["vm"].shape == (n * levels, 2)
    assert encoded["lesion_a"]["score"].shape == encoded["lesion_b"]["score"].shape == (m,)
    # batching does not change the features
    one = E.encode_features(kcross, data["lesion"]["a"], data["lesion"]["reference"], data["lesion"]["source"], batch=1)
    assert torch.allclose(one["score"], encoded["lesion_a"]["score"], atol=1e-6)


def test_branch_analysis(encoded: E.EncodedLadderSet, data: E.LadderSet):
    n, levels = data["ladders"]["images"].shape[:2]
    analysis = E.branch_analysis("untrained", encoded, n, levels)
    labels = [label for label, _ in analysis.columns]
    assert labels[:5] == list(E.QUALITY_COLUMNS) and labels[-1] == "lesion change" and len(labels) == 9
    assert all(credit.shape == (n * (levels - 1),) for _, credit in analysis.columns)
    assert analysis.region_changed.shape == (n * (levels - 1),) and analysis.region_changed.dtype == bool
    # the score column is the score's ladder credit; the size columns count a larger vector as correct
    assert np.array_equal(analysis.columns[0][1], E.ladder_credit(encoded["ladders"]["score"], n, levels))
    assert np.array_equal(analysis.columns[5][1], E.ladder_credit(-encoded["ladders"]["norm_complex"], n, levels))


def test_ladders_page(encoded: E.EncodedLadderSet, data: E.LadderSet):
    n, levels = data["ladders"]["images"].shape[:2]
    m = len(data["lesion"]["edit"])
    columns = [E.CreditColumn("K-CROSS x", E.ladder_credit(encoded["ladders"]["score"], n, levels),
                              E.pair_credit(encoded["lesion_a"]["score"], encoded["lesion_b"]["score"], data["lesion"]["a_better"])),
               E.CreditColumn("psnr", np.ones(n * (levels - 1)), np.zeros(m))]
    misreg = E.MisregistrationTable(2, [("x", {k: np.array([1.0, 0.0]) for k in E.QUALITY_COLUMNS})], [("psnr", np.array([0.5, 0.5]))])
    page = E.render_ladders_page(
        title="T", intro="Findings.", command="python benchmarks/ladders_table.py --out x.md", seconds=12.3, data=data,
        columns=columns, unseen={"motion"}, misregistration=misreg,
        analyses=[E.branch_analysis("x", encoded, n, levels)])
    lines = page.splitlines()
    assert lines[:4] == ["# T", "", "Findings.", ""]
    assert lines[4] == "Generated by `python benchmarks/ladders_table.py --out x.md`"
    assert lines[5].startswith("(12 s including cached parts). Subjects: 2 validation subjects present on the machine (phantom0, phantom5)")
    assert "| family | levels | K-CROSS x | psnr |" in lines
    assert any(line.startswith("| motion *(unseen)* | 0.25, 0.5, 1, 2, 4 | ") for line in lines)
    assert sum(line.startswith("| gaussian_blur | ") for line in lines) == 2  # ladder table and analysis
    assert lines[lines.index("| metric | score | complex | natural | tumor | structure |") + 3] == "| psnr | 0.50 | | | | |"
    assert "| K-CROSS x | 0.500 [" in page
    assert "### K-CROSS x (design v2, sha256 none…)" in lines
    assert lines[-1].startswith("Lowest family of the first column: ")
    without = E.render_ladders_page(title="T", intro=None, command="c", seconds=0, data=data, columns=columns, unseen=set(),
                                    misregistration=None, analyses=[])
    assert "Structure rule" not in without and "*(unseen)*" not in without and "Generated by `c`" in without.splitlines()[2]


def test_cached_set_and_features(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_lesions: None):
    """build_ladder_set / encode_ladder_set write the scripts' cache files and read them back."""
    loads: list[str] = []

    def load_case(case: str, *, slice_range: tuple[int, int]) -> T.CaseSlices:
        assert slice_range == E.SLICE_RANGE
        loads.append(case)
        return _case(int(case.removeprefix("phantom")))

    monkeypatch.setattr(E, "cases_for_split", lambda split: ("phantom0", "phantom5", "missing"))
    monkeypatch.setattr(E, "available_cases", lambda cases: tuple(c for c in cases if c != "missing"))
    monkeypatch.setattr(E, "load_case", load_case)
    data = E.build_ladder_set("validation", tmp_path, n_ladders=1, n_lesion=1, seed=0)
    key = E.set_key("validation", ("phantom0", "phantom5"), n_ladders=1, n_lesion=1, seed=0)
    assert (tmp_path / f"set-{key}.pt").is_file() and data["cases"] == ["phantom0", "phantom5"] and data["seconds"] >= 0
    again = E.build_ladder_set("validation", tmp_path, n_ladders=1, n_lesion=1, seed=0)
    assert loads == ["phantom0", "phantom5"] and torch.equal(again["ladders"]["images"], data["ladders"]["images"])

    misreg = E.build_misregistration_set(data["cases"], tmp_path, key=key, n_pairs=1, seed=0)
    assert (tmp_path / f"misreg-{key}-1.pt").is_file() and len(misreg["case"]) <= 1

    untrained = KCross.untrained(seed=0)
    monkeypatch.setattr(E, "kcross_for", lambda weights: untrained)
    enc = E.encode_ladder_set("any", data, tmp_path, key)
    assert (tmp_path / f"feats2-{key}-none.pt").is_file()
    monkeypatch.setattr(E, "encode_ladder_set_with", lambda *a: pytest.fail("not read from the cache"))
    assert torch.equal(E.encode_ladder_set("any", data, tmp_path, key)["ladders"]["score"], enc["ladders"]["score"])


def test_kcross_for_bundled_names_the_shipped_file():
    kcross = E.kcross_for(E.BUNDLED)
    assert kcross.weights_info["pretrained"] and E.weights_sha(kcross) == str(kcross.weights_info["weights_sha256"])[:16]
    assert len(E.weights_sha(kcross)) == 16


def test_lofo_config_trains_on_every_family():
    path = Path(E.__file__).resolve().parents[1] / "train" / "configs" / "stage2.yaml"
    config = E.lofo_config(path, threads=1)
    assert config.ladder_families == list(L.LADDERS) and config.lesion_edits == list(T.ALL_LESION_EDITS) and config.threads == 1


def test_lofo_bank_key_is_the_cache_key_of_the_script():
    config = Stage2Config(epochs=1, threads=1)
    text = f"{'ab' * 32}|{sorted(vars(config).items())}"
    assert E.lofo_bank_key(config, "ab" * 32) == hashlib.sha1(text.encode()).hexdigest()[:12]
    assert E.lofo_bank_key(Stage2Config(epochs=2, threads=1), "ab" * 32) != E.lofo_bank_key(config, "ab" * 32)


def test_leave_one_out_rows(encoded: E.EncodedLadderSet, data: E.LadderSet, kcross: KCross):
    torch.manual_seed(0)
    heads = ScoreHeads("v2")
    all_credits = E.heads_credits(heads, encoded, data)
    n, levels = data["ladders"]["images"].shape[:2]
    assert all_credits[0].shape == (n * (levels - 1),) and all_credits[1].shape == (len(data["lesion"]["edit"]),)
    dropped: list[str] = []

    def fit(drop: str) -> ScoreHeads:
        dropped.append(drop)
        return heads

    rows = list(E.leave_one_out_rows(fit, encoded, data, all_credits))
    edits = [e for e in T.ALL_LESION_EDITS if e in data["lesion"]["edit"]]
    assert dropped == [*L.LADDERS, *edits]
    assert [r.label for r in rows] == [*L.LADDERS, *(f"{e} (lesion rule)" for e in edits)]
    first = rows[0]
    assert first.all_credit.size == levels - 1 and np.array_equal(first.all_credit, first.left_credit)  # same heads
    assert re.fullmatch(rf"\| {first.label} \| 4 \| \d\.\d\d \| \d\.\d{{3}} \[\d\.\d\d, \d\.\d\d\] \|", first.markdown())
    header = E.render_lofo_header(command="python benchmarks/lofo_table.py --out x", seconds=3.2, config_name="stage2.yaml",
                                  n_train_pairs=7, base_name="k.safetensors", base_sha="ab" * 32, data=data)
    assert header[2] == "Generated by `python benchmarks/lofo_table.py --out x`"
    assert header[3].startswith("(3 s so far at the first fit). Score heads refitted with `stage2.yaml` on the training subjects' "
                                "pairs (7 pairs incl. every family) on the networks of `k.safetensors` (sha256 abababababababab…)")
    assert header[-1] == "|---|---|---|---|"
    assert E.render_lofo_footer(9.6)[-1].endswith("Total time 10 s.")


def test_fit_heads_leaves_a_family_out(monkeypatch: pytest.MonkeyPatch, kcross: KCross, small_lesions: None):
    ladders = L.build_ladders([_case(0)], families=["gaussian_blur", "rician_noise"], n_per_family=1, seed=0)
    lesion = L.build_lesion_rules([_case(0, 96)], edits=["lesion_erase"], n_per_edit=1, seed=0)
    bank = merge_banks([ladder_bank(kcross, ladders), pair_bank(kcross, lesion)])
    seen: list[set[str]] = []
    real_train = E.train_stage2

    def train_stage2(config: Stage2Config, run_dir: str, nets: KCrossNetworks, *, train_bank: FeatureBank, resume: bool,
                     verbose: bool) -> ScoreHeads:
        seen.append(set(train_bank["rules"]))
        return real_train(config, run_dir, nets, train_bank=train_bank, resume=resume, verbose=verbose)

    monkeypatch.setattr(E, "train_stage2", train_stage2)
    config = Stage2Config(epochs=1, threads=1)
    assert isinstance(E.fit_heads(config, kcross.nets, bank), ScoreHeads)
    E.fit_heads(config, kcross.nets, bank, "gaussian_blur")
    assert "ladder:gaussian_blur" in seen[0] and "ladder:gaussian_blur" not in seen[1] and "ladder:rician_noise" in seen[1]
