"""Clinically ordered 2AFC set: generation rules, IO, synthesized-epoch hook, case loading."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from kcross_metric.cli.train import main as train_main
from kcross_metric.data import distortions as D
from kcross_metric.errors import (
    ConfigError,
    FileFormatError,
    OutputExistsError,
    ShapeError,
)
from kcross_metric.train import data as train_data
from kcross_metric.train import splits
from kcross_metric.train.ratedsets import twoafc as T

S = 64


def _case(name: str, seed: int, *, lesion: bool = True) -> T.CaseSlices:
    """Three 64x64 slices, two contrasts, with a lesion of >= MIN_LESION_PX pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:S, :S].astype(np.float32)
    brain = ((yy - 32) ** 2 / 29**2 + (xx - 32) ** 2 / 27**2) <= 1
    images: dict[str, list[np.ndarray]] = {"t1": [], "t2": []}
    masks = []
    for k in range(3):
        cy, cx = 30 + rng.integers(-3, 4), 33 + rng.integers(-3, 4)
        les = (yy - cy) ** 2 + (xx - cx) ** 2 <= 12.5**2
        tissue = 0.45 + 0.08 * np.sin(xx / (3.0 + k)) + 0.05 * np.cos(yy / 5.0) + 0.02 * rng.standard_normal((S, S))
        images["t1"].append((np.where(les, 0.2, tissue) * brain).astype(np.float32))
        images["t2"].append((np.where(les, 0.95, 1.0 - tissue) * brain).astype(np.float32))
        masks.append(les)
    return T.CaseSlices(
        name,
        [60, 61, 62],
        {c: np.clip(np.stack(v), 0, 1) for c, v in images.items()},
        np.stack(masks) if lesion else None,
    )


@pytest.fixture(scope="module")
def cases() -> list[T.CaseSlices]:
    return [_case("synthA", 0), _case("synthB", 1, lesion=False)]


@pytest.fixture(scope="module")
def pairs(cases) -> list[T.TwoAFCPair]:
    return T.generate_pairs(cases, n_pairs_per_rule=12, seed=0)


def test_lesion_mask_meets_threshold(cases):
    assert cases[0].lesion is not None
    assert all(int(m.sum()) >= T.MIN_LESION_PX for m in cases[0].lesion)


def test_counts_ids_and_fields(pairs):
    assert [p.rule for p in pairs].count("same_family") == 12
    assert [p.rule for p in pairs].count("lesion_vs_global") == 12
    assert len({p.pair_id for p in pairs}) == len(pairs)
    for p in pairs:
        assert p.better in ("a", "b")
        assert p.a.shape == p.b.shape == p.reference.shape == (1, 1, S, S)
        assert p.source is not None and p.source_contrast != p.contrast
        assert float(p.a.min()) >= 0 and float(p.b.max()) <= 1
    assert {p.better for p in pairs} == {"a", "b"}  # the better side is randomised


def _sides(p: T.TwoAFCPair) -> tuple[torch.Tensor, torch.Tensor]:
    return (p.a, p.b) if p.better == "a" else (p.b, p.a)


def test_same_family_worse_side_has_larger_mse(pairs):
    same = [p for p in pairs if p.rule == "same_family"]
    assert len({p.family for p in same}) >= 8  # families are cycled
    for p in same:
        better, worse = _sides(p)
        m_b, m_w = float(D.mse(better, p.reference)), float(D.mse(worse, p.reference))
        assert m_w >= T.MSE_RATIO * m_b and m_w - m_b >= T.MSE_GAP, p.family
        sev_b, sev_w = (p.severity_a, p.severity_b) if p.better == "a" else (p.severity_b, p.severity_a)
        if p.family == "contrast":
            assert abs(np.log(sev_b)) < abs(np.log(sev_w))
        elif p.family == "lesion_intensity":
            assert sev_b > sev_w  # remaining lesion contrast
        else:
            assert sev_b < sev_w


def test_lesion_rule_equal_mse_and_lesion_edit_is_worse(pairs):
    les = [p for p in pairs if p.rule == "lesion_vs_global"]
    assert les and all(p.case == "synthA" for p in les)  # only the case with a mask
    for p in les:
        fam_a, fam_b = p.family.split("|")
        worse_fam = fam_b if p.better == "a" else fam_a
        better_fam = fam_a if p.better == "a" else fam_b
        assert worse_fam in T.LESION_EDITS and better_fam in T.GLOBAL_FOR_MATCH
        better, worse = _sides(p)
        m_b, m_w = float(D.mse(better, p.reference)), float(D.mse(worse, p.reference))
        assert abs(m_b / m_w - 1) <= T.MSE_MATCH_TOL
        assert p.mask is not None
        m = p.mask > 0.5
        # the worse image's error sits in the lesion, the better one's is spread out
        assert float(((worse - p.reference) ** 2)[m].mean()) > 5 * float(((better - p.reference) ** 2)[m].mean())
        sev_global = p.severity_a if p.better == "a" else p.severity_b
        assert 0 < sev_global <= T.GLOBAL_MAX_SEVERITY[better_fam]


def test_determinism_and_seed_dependence(cases, pairs):
    again = T.generate_pairs(cases, n_pairs_per_rule=12, seed=0)
    assert [(p.family, p.better, p.severity_a) for p in again] == [(p.family, p.better, p.severity_a) for p in pairs]
    for p, q in zip(pairs, again):
        assert torch.equal(p.a, q.a) and torch.equal(p.b, q.b)
    other = T.generate_pairs(cases, n_pairs_per_rule=12, seed=1)
    assert [(p.family, p.severity_a) for p in other] != [(p.family, p.severity_a) for p in pairs]


def test_no_lesion_cases_skip_lesion_rules(cases):
    with pytest.warns(UserWarning, match="lesion_vs_global"):
        got = T.generate_pairs([cases[1]], n_pairs_per_rule=4, seed=0)
    assert {p.rule for p in got} == {"same_family"}
    assert not any(T.FAMILIES[p.family].needs_lesion for p in got)
    assert all(p.mask is None for p in got)


def test_write_load_roundtrip_and_overwrite(tmp_path, pairs):
    out = tmp_path / "set"
    csv_path = T.write_twoafc_set(pairs, out)
    with open(csv_path, newline="") as fh:
        header = next(csv.reader(fh))
    assert tuple(header) == T.CSV_COLUMNS
    loaded = T.load_twoafc_set(csv_path)
    assert len(loaded) == len(pairs)
    for p, q in zip(pairs, loaded):
        assert (p.pair_id, p.rule, p.family, p.better, p.case, p.slice) == (q.pair_id, q.rule, q.family, q.better, q.case, q.slice)
        assert p.severity_a == q.severity_a and p.severity_b == q.severity_b
        for name in ("reference", "a", "b", "source", "mask"):
            u, v = getattr(p, name), getattr(q, name)
            assert (u is None) == (v is None)
            if u is not None:
                torch.testing.assert_close(u, v, atol=0, rtol=0)
    # references are shared between pairs of the same slice and contrast
    assert len(list((out / "arrays").glob("img_*.npy"))) < 2 * len(pairs)
    with pytest.raises(OutputExistsError):
        T.write_twoafc_set(pairs[:2], out)
    T.write_twoafc_set(pairs[:2], out, overwrite=True)
    assert len(T.load_twoafc_set(csv_path)) == 2
    assert len(list((out / "arrays").glob("pair_*.npy"))) == 4  # stale arrays removed


def test_load_rejects_bad_files(tmp_path):
    with pytest.raises(FileFormatError):
        T.load_twoafc_set(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("pair_id,case\np0,x\n")
    with pytest.raises(FileFormatError, match="lacks columns"):
        T.load_twoafc_set(bad)


# ------------------------------------------------------------------ rule 3


def _records(real: torch.Tensor, mask: torch.Tensor) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(real.shape, generator=g)
    lesion_err = torch.zeros_like(real)
    lesion_err[mask > 0] = 0.1
    fakes = {
        1: real + 0.10 * noise,  # noisy
        2: real + 0.03 * noise,  # clearly better than 1 on both errors
        3: real + 0.01 * noise + lesion_err,  # lowest global MSE, but a lesion error above 1's and 2's
        4: real + 0.12 * noise,  # later and worse than everything on both errors
    }
    return [
        {"fake": f.clamp(0, 1), "real": real, "generator": "cyclegan", "epoch": e, "mask": mask, "case": "c", "slice": 7}
        for e, f in fakes.items()
    ]


def _orderings(pairs: list[T.TwoAFCPair]) -> set[tuple[int, int]]:
    out = set()
    for p in pairs:
        sev = {"a": int(p.severity_a), "b": int(p.severity_b)}
        out.add((sev[p.better], sev[p.worse]))
    return out


def test_pairs_from_synthesized_constructed_ordering():
    real = torch.rand(S, S, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.25
    mask = torch.zeros(S, S)
    mask[20:30, 20:30] = 1
    recs = _records(real, mask)
    got = T.pairs_from_synthesized(recs, margin=0.1, seed=0)
    # only 2 > 1: the later epoch is lower on both errors; 3 trades global for lesion error
    assert _orderings(got) == {(2, 1)}
    p = got[0]
    assert p.rule == "synthesized_epochs" and p.family == "cyclegan"
    assert p.mask is not None and p.reference.shape == (1, 1, S, S)
    # earlier epochs win against the degraded epoch 4 only on request
    both = T.pairs_from_synthesized(recs, margin=0.1, allow_earlier_better=True)
    assert _orderings(both) == {(2, 1), (1, 4), (2, 4), (3, 4)}
    # a margin larger than every improvement gives nothing
    assert T.pairs_from_synthesized(recs, margin=0.95) == []


def test_pairs_from_synthesized_needs_mask_and_same_real():
    real = torch.rand(S, S)
    recs = _records(real, torch.zeros(S, S))
    assert T.pairs_from_synthesized(recs) == []  # lesion criterion cannot be checked
    recs = _records(real, torch.ones(S, S))
    recs[1]["real"] = torch.rand(S, S)
    with pytest.raises(ConfigError, match="differ"):
        T.pairs_from_synthesized(recs)
    with pytest.raises(ConfigError, match="lacks"):
        T.pairs_from_synthesized([{"fake": real, "real": real, "epoch": 1}])
    with pytest.raises(ShapeError):
        T.pairs_from_synthesized([{"fake": real[:10], "real": real, "epoch": 1, "generator": "g"}])


def _write_synthesized(root, real: torch.Tensor, masks: dict[str, torch.Tensor]) -> str:
    """A minimal synthesized.csv (the layout of `kcross-train synthesize`): two generators on one
    slice, whose fakes get better with the epoch; each generator has its own lesion mask."""
    from kcross_metric.train.translation.synthesize import COLUMNS

    rows = []
    (root / "refs").mkdir()
    np.save(root / "refs" / "real.npy", real.numpy())
    np.save(root / "refs" / "source.npy", (1 - real).numpy())
    for g, mask in masks.items():
        np.save(root / "refs" / f"mask_{g}.npy", mask.numpy())
        for epoch, err in ((1, 0.3), (2, 0.1), (3, 0.02)):
            fake = (real + err * torch.sin(torch.arange(S * S, dtype=torch.float32).reshape(S, S))).clamp(0, 1)
            np.save(root / f"{g}_e{epoch}.npy", fake.numpy())
            rows.append({"fake": f"{g}_e{epoch}.npy", "real": "refs/real.npy", "source": "refs/source.npy",
                         "mask": f"refs/mask_{g}.npy", "mask_kind": "segmenter", "generator": g, "family": g.split("_")[0],
                         "direction": "t1-t2", "source_contrast": "t1", "target_contrast": "t2", "epoch": epoch,
                         "case": "c1", "slice": 7})
    with open(root / "synthesized.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        w.writeheader()
        w.writerows(rows)
    return str(root / "synthesized.csv")


def test_rule3_set_from_a_synthesized_set_keeps_distinct_masks(tmp_path):
    real = torch.rand(S, S, generator=torch.Generator().manual_seed(3)) * 0.5 + 0.25
    m1, m2 = torch.zeros(S, S), torch.zeros(S, S)
    m1[10:20, 10:20] = 1
    m2[30:50, 30:50] = 1
    index = _write_synthesized(tmp_path, real, {"pix2pix_t1-t2": m1, "cyclegan_t1-t2": m2})
    out = tmp_path / "pairs"
    assert train_main(["pairs", "--out", str(out), "--from-synthesized", index, "--margin", "0.1"]) == 0
    pairs = T.load_twoafc_set(out / "pairs.csv")
    assert len(pairs) == 6  # 3 epoch pairs per generator, the later epoch better in each
    for p in pairs:
        later_is_a = p.severity_a > p.severity_b
        assert p.better == ("a" if later_is_a else "b") and p.rule == "synthesized_epochs"
        expected = m1 if p.family.startswith("pix2pix") else m2
        assert torch.equal(p.mask[0, 0], expected)  # same (case, slice) key, different masks: both kept
    assert train_main(["pairs", "--out", str(out), "--from-synthesized", index]) == 2  # no clobbering
    assert train_main(["pairs", "--out", str(tmp_path / "few"), "--from-synthesized", index, "--n-pairs-per-rule", "2"]) == 0
    assert len(T.load_twoafc_set(tmp_path / "few" / "pairs.csv")) == 2
    with pytest.raises(ConfigError, match="margin"):
        T.build_synthesized_pairs(index, tmp_path / "none", margin=0.999)


# ------------------------------------------------------------------ loading and splits


def test_splits_are_disjoint_and_named():
    assert not set(splits.TRAIN_CASES) & set(splits.VALIDATION_CASES)
    assert splits.VALIDATION_CASES[0] == "BraTS-GLI-00001-000"
    assert set(splits.BRATS2013_CASES) <= set(splits.VALIDATION_CASES)
    assert splits.cases_for_split("train") == splits.TRAIN_CASES
    with pytest.raises(ConfigError):
        splits.cases_for_split("test")


def test_load_case_orientation_and_normalisation(tmp_path):
    """A fake BraTS case in LPS: slices are ``Volume.data[k]`` (rows posterior -> anterior) and the
    intensities are io.normalize_volume's (0.5/99.5 percentiles inside the brain), as in training."""
    nib = pytest.importorskip("nibabel")
    from kcross_metric.data.io import load_volume, normalize_volume

    case = "BraTS-GLI-00000-000"
    folder = tmp_path / "brats" / case
    folder.mkdir(parents=True)
    vol = np.zeros((40, 40, 12), dtype=np.float32)
    vol[5:35, 5:35, :] = 100.0 + np.arange(12, dtype=np.float32)  # value encodes the slice
    vol[5:35, 30:35, :] = 300.0  # a bright posterior stripe (LPS: the second index grows posteriorly)
    vol[0, 0, :] = -20.0  # resampling negative
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    for c in ("t1n", "t1c", "t2w", "t2f"):
        nib.save(nib.Nifti1Image(vol, lps), str(folder / f"{case}-{c}.nii.gz"))
    seg = np.zeros((40, 40, 12), dtype=np.float32)
    seg[10:15, 10:15, 3] = 2
    nib.save(nib.Nifti1Image(seg, lps), str(folder / f"{case}-seg.nii.gz"))

    got = T.load_case(case, slice_range=(3, 4), size=48, data_dir=tmp_path)
    assert got.slices == [3, 4] and set(got.images) == {"t1", "t1c", "t2", "flair"}
    img = got.images["t2"]
    assert img.shape == (2, 48, 48) and img.dtype == np.float32
    assert float(img.min()) == 0.0 and float(img.max()) == 1.0  # negatives clipped, bright stripe saturates
    lo, hi = np.percentile(vol[vol > 0], [0.5, 99.5])
    inner = img[0][img[0] > 0]
    assert np.isclose(np.median(inner), (100.0 + 3 - lo) / (hi - lo), atol=1e-5)
    # the same numbers as the training loader and inference-side normalisation
    vol_t2 = load_volume(folder / f"{case}-t2w.nii.gz").data
    ref = normalize_volume(np.clip(vol_t2, 0, None), vol_t2 > 0)[3]
    np.testing.assert_array_equal(img[0], train_data.crop_or_pad(ref, 48))
    # Volume.data[k]: rows grow posterior -> anterior, so the posterior stripe is in the first rows
    rows = np.nonzero((img[0] > 0.99).any(axis=1))[0]
    assert rows.max() < 24
    assert got.lesion is not None and got.lesion.shape == (2, 48, 48) and got.lesion.dtype == bool
    assert int(got.lesion[0].sum()) == 25 and int(got.lesion[1].sum()) == 0
    with pytest.raises(ConfigError, match="exceed"):
        T.load_case(case, slice_range=(10, 12), data_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown case"):
        T.load_case("nobody", data_dir=tmp_path)
    with pytest.raises(ConfigError, match="size"):
        T.load_case(case, size=4, data_dir=tmp_path)


def test_case_slices_helper_and_healthy_cases():
    brain = np.zeros((5, 6, 6), dtype=bool)
    brain[:, 1:5, 1:5] = True
    t1 = np.where(brain, np.arange(5, dtype=np.float32)[:, None, None] / 4, 0).astype(np.float32)
    case = train_data.Case("x", {"t1": t1}, None, brain, "test")
    images, lesion = train_data.case_slices(case, [1, 4], 8)
    assert lesion is None and images["t1"].shape == (2, 8, 8)
    assert float(images["t1"][1].max()) == 1.0 and float(images["t1"][0].max()) == 0.25
    assert images["t1"][0, 0].sum() == 0 and images["t1"][0, 2, 2] == 0.25  # padded by one on each side
    with pytest.raises(ConfigError, match="exceed"):
        train_data.case_slices(case, [5], 8)
    assert train_data.is_healthy("IXI002-Guys-0828") and not train_data.is_healthy("BraTS-GLI-00001-000")


def test_build_refuses_nonempty_out_dir(tmp_path):
    (tmp_path / "x.txt").write_text("keep me")
    with pytest.raises(OutputExistsError):
        T.build_twoafc_set(tmp_path, data_dir=tmp_path)
    assert train_main(["pairs", "--out", str(tmp_path), "--data-dir", str(tmp_path)]) == 2
    assert (tmp_path / "x.txt").read_text(encoding="utf-8") == "keep me"


@pytest.mark.shared_data
def test_real_validation_set(shared, tmp_path, monkeypatch):
    monkeypatch.delenv("KCROSS_EXTRA_DIR", raising=False)  # the checks below are of the base cases
    data = shared("data", "brats2013")
    import nibabel as nib

    # axial axis check against the raw file: whole-tumour area of slice 60
    seg = np.asarray(nib.load(str(data / "brats_2013_pat0001_1" / "OTMultiClass.nii.gz")).dataobj)
    got = T.load_case("brats_2013_pat0001_1", slice_range=(60, 61), data_dir=data.parent)
    assert got.lesion is not None and int(got.lesion[0].sum()) == int((seg[:, :, 60] > 0).sum())
    img = got.images["flair"]
    assert img.shape == (2, 256, 256) and img[0, 0, 0] == 0.0 and 0.9 < img.max() <= 1.0

    csv_path = T.build_twoafc_set(
        tmp_path / "set", split="validation", n_pairs_per_rule=3, seed=0, slice_range=(60, 62), data_dir=data.parent
    )
    pairs = T.load_twoafc_set(csv_path)
    assert len(pairs) == 6
    assert {p.case for p in pairs} <= set(splits.VALIDATION_CASES)
    lesion_pairs = [p for p in pairs if p.rule == "lesion_vs_global"]
    assert lesion_pairs and all(p.case in splits.BRATS2013_CASES for p in lesion_pairs)
    for p in pairs:
        assert p.reference.shape == (1, 1, 256, 256)
        better, worse = _sides(p)
        if p.rule == "same_family":
            assert float(D.mse(worse, p.reference)) > float(D.mse(better, p.reference))
        else:
            assert abs(float(D.mse(better, p.reference)) / float(D.mse(worse, p.reference)) - 1) <= 0.02
