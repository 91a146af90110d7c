"""The extra subjects (issue 21): the subject table and split, and the one case loader on every layout.

Layouts are checked on small NIfTI files the tests write (no data needed); the real laid-out set is
checked where ``$KCROSS_EXTRA_DIR`` points at it (skipped with the reason otherwise).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from kcross_metric.errors import ConfigError, DataNotFoundError
from kcross_metric.train import data as train_data
from kcross_metric.train import splits


def test_split_is_by_subject_and_training_carries_no_restrictive_terms():
    train, val = set(splits.TRAIN_CASES), set(splits.VALIDATION_CASES)
    assert not train & val
    assert train | val == set(splits.SUBJECTS)
    for case in train:
        licence = splits.subject(case).licence
        assert "NC" not in licence and "research" not in licence, (case, licence)
    # every subject with non-commercial or research-only terms is in validation
    for case, s in splits.SUBJECTS.items():
        if "NC" in s.licence or "research" in s.licence:
            assert case in val
    kinds = [splits.subject(c).lesion for c in splits.VALIDATION_CASES]
    assert kinds.count("glioma-lgg") >= 1 and kinds.count("ms") >= 1
    assert sum(k.startswith("glioma") and k != "glioma-lgg" for k in kinds) >= 5
    assert set(splits.ORIGINAL_TRAIN_CASES) <= train
    with pytest.raises(ConfigError, match="unknown subject"):
        splits.subject("nobody")


def _write(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([-1.0, -1.0, 1.0, 1.0])), str(path))


def _volume(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    brain = x**2 + y**2 + z**2 < 0.8
    return (brain * (100 + 50 * rng.random(shape))).astype(np.float32)


def _lesion(shape: tuple[int, int, int]) -> np.ndarray:
    out = np.zeros(shape, np.float32)
    out[shape[0] // 2 - 2 : shape[0] // 2 + 2, shape[1] // 2 - 3 : shape[1] // 2 + 3, shape[2] // 2 - 2 : shape[2] // 2 + 3] = 1
    return out


@pytest.fixture()
def extra(tmp_path: Path) -> Path:
    shape = (24, 24, 20)
    case = "Brats18_TCIA01_201_1"
    for i, n in enumerate(("t1", "t1ce", "t2", "flair")):
        _write(tmp_path / "brats2018" / case / f"{case}_{n}.nii.gz", _volume(shape, i).astype(np.int16))
    _write(tmp_path / "brats2018" / case / f"{case}_seg.nii.gz", (_lesion(shape) * 2).astype(np.uint8))
    case2 = "Brats18_CBICA_AOO_1"
    for i, n in enumerate(("T1", "FLAIR")):
        _write(tmp_path / "brats2018-flair-t1" / case2 / f"{n}.nii.gz", _volume(shape, 10 + i))
    _write(tmp_path / "brats2018-flair-t1" / case2 / "GT_W.nii.gz", _lesion(shape))
    suffix = "_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz"
    for i, n in enumerate(("T1", "T1POST", "T2", "FLAIR")):
        vol = _volume(shape, 20 + i)
        vol[vol > 0] -= 60.0  # N4/resampling leaves negative values inside the brain
        _write(tmp_path / "ms-ljubljana" / "patient19" / f"{n}{suffix}", vol)
    _write(tmp_path / "ms-ljubljana" / "patient19" / "GOLD_STANDARD_N4_noneck_reduced_winsor_regtoFLAIR_regtoMNI.nii.gz",
           _lesion(shape).astype(np.uint8))
    return tmp_path


def test_one_loader_reads_every_extra_layout(extra: Path):
    b = train_data.load_case("Brats18_TCIA01_201_1", extra=extra)
    assert set(b.contrasts) == {"t1", "t1c", "t2", "flair"} and b.lesion is not None and b.lesion.any()
    assert b.licence == splits.subject("Brats18_TCIA01_201_1").licence and b.slice_offset == 0
    for v in b.contrasts.values():
        assert v.min() >= 0 and v.max() <= 1 and (v[~b.brain] == 0).all()
    f = train_data.load_case("Brats18_CBICA_AOO_1", extra=extra)
    assert set(f.contrasts) == {"t1", "flair"} == set(train_data.case_contrasts("Brats18_CBICA_AOO_1"))
    m = train_data.load_case("ljubljana_patient19", extra=extra)
    assert set(m.contrasts) == {"t1", "t1c", "t2", "flair"} and m.lesion_kind == "consensus"
    assert m.slice_offset == train_data.GRID_SLICE_OFFSET["ms-ljubljana"]
    assert m.brain.sum() > 0 and all(v.min() >= 0 for v in m.contrasts.values())
    assert int(m.lesion.sum()) == int(_lesion((24, 24, 20)).sum())


def test_extra_root_order_and_missing_cases(extra: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(train_data.EXTRA_ENV_VAR, str(extra))
    assert train_data.extra_root() == extra
    assert train_data.extra_root(extra / "nowhere") is None
    present = ("Brats18_TCIA01_201_1", "Brats18_CBICA_AOO_1", "ljubljana_patient19")
    with pytest.warns(UserWarning, match="not on this machine"):
        found = train_data.available_cases(present + ("Brats18_TCIA01_378_1",))
    assert found == present
    monkeypatch.setenv(train_data.EXTRA_ENV_VAR, str(extra / "nowhere"))
    with pytest.raises(DataNotFoundError, match="KCROSS_EXTRA_DIR"):
        train_data.load_case("Brats18_TCIA01_201_1")


def test_slice_range_follows_the_grid_offset(extra: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(train_data.EXTRA_ENV_VAR, str(extra))
    monkeypatch.setitem(train_data.GRID_SLICE_OFFSET, "ms-ljubljana", 3)
    sets = train_data.build_slices(["ljubljana_patient19"], size=32, slice_range=(5, 8), min_brain_fraction=0.0)
    assert next(iter(sets.values())).slice_index == [8, 9, 10, 11]


@pytest.mark.skipif(not os.environ.get(train_data.EXTRA_ENV_VAR), reason="the extra set is not laid out here "
                    "(../shared/data/extra/get.sh, then set KCROSS_EXTRA_DIR)")
def test_real_extra_set_loads_every_layout():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = train_data.available_cases(("Brats18_TCIA10_637_1", "Brats18_CBICA_ASA_1", "ljubljana_patient07"))
    if len(cases) < 3:
        pytest.skip(f"only {cases} of the extra set are present")
    for case in cases:
        c = train_data.load_case(case)
        assert c.lesion is not None and c.lesion.any(), case
        for v in c.contrasts.values():
            assert v.shape == c.brain.shape and 0 <= v.min() and v.max() <= 1


def test_subjects_page_lists_every_subject_with_its_split():
    page = (Path(__file__).resolve().parents[1] / "docs" / "datasets" / "subjects.md").read_text(encoding="utf-8")
    for case, s in splits.SUBJECTS.items():
        assert f"| `{case}` | {s.split} | {s.layout} |" in page, case
