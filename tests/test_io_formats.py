"""Volumes in MetaImage, NRRD and DICOM series (through SimpleITK) load exactly like NIfTI: same
array, same RAS affine, same grid checks; errors are FileFormatError. Files are written by the tests."""

from __future__ import annotations

import builtins
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from kcross_metric.cli.score import main as score_main
from kcross_metric.data.io import check_same_grid, load_volume
from kcross_metric.errors import FileFormatError, GridMismatchError

sitk = pytest.importorskip("SimpleITK")


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), path)
    return path


@pytest.fixture
def rotated(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A NIfTI with permuted, flipped axes and anisotropic voxels (x, y, z stored order)."""
    rng = np.random.default_rng(0)
    data = rng.random((7, 9, 11)).astype(np.float32)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[0, -1, 0], [0, 0, 1], [-1, 0, 0]], float) @ np.diag([1.2, 0.9, 2.0])
    affine[:3, 3] = [10.0, -5.0, 3.0]
    return _nifti(tmp_path / "a.nii.gz", data, affine), data


@pytest.mark.parametrize("ext", ["mha", "mhd", "nrrd"])
def test_formats_load_like_nifti(rotated, tmp_path: Path, ext: str) -> None:
    nifti, _ = rotated
    other = tmp_path / f"a.{ext}"
    sitk.WriteImage(sitk.ReadImage(str(nifti)), str(other))
    a, b = load_volume(nifti), load_volume(other)
    assert np.array_equal(a.data, b.data)
    np.testing.assert_allclose(b.affine, a.affine, atol=1e-6)
    assert b.orientation == ("S", "A", "R") and b.source_orientation == a.source_orientation
    check_same_grid(b, a)


def _dicom_series(folder: Path, volume: np.ndarray, spacing: tuple[float, float, float], origin: tuple[float, float, float],
                  series_uid: str = "1.2.826.0.1.3680043.2.1125.7") -> None:
    """Write ``volume`` (k, j, i) as an axial DICOM series, one file per slice (as scanners do)."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(volume.astype(np.int16))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        sl = image[:, :, k]
        sl.SetMetaData("0020|000e", series_uid)
        sl.SetMetaData("0020|000d", series_uid + ".1")
        sl.SetMetaData("0008|0018", f"{series_uid}.{k + 10}")
        sl.SetMetaData("0020|0032", "\\".join(str(v) for v in image.TransformIndexToPhysicalPoint((0, 0, k))))
        sl.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        sl.SetMetaData("0020|0013", str(k))
        sl.SetMetaData("0008|0060", "MR")
        writer.SetFileName(str(folder / f"{series_uid}-{k:03d}.dcm"))
        writer.Execute(sl)


def test_dicom_series_folder_loads_like_nifti(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    vol = rng.integers(0, 1000, size=(6, 10, 12))  # (k, j, i)
    spacing, origin = (0.8, 0.9, 2.5), (-20.0, 15.0, 40.0)
    _dicom_series(tmp_path / "dcm", vol, spacing, origin)
    # the same scan as NIfTI: index (i, j, k), LPS origin/axes converted to RAS
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [-origin[0], -origin[1], origin[2]]
    nifti = _nifti(tmp_path / "same.nii.gz", vol.transpose(2, 1, 0).astype(np.float32), affine)
    a, b = load_volume(nifti), load_volume(tmp_path / "dcm")
    assert np.array_equal(a.data, b.data)
    np.testing.assert_allclose(b.affine, a.affine, atol=1e-4)


def test_dicom_folder_errors(tmp_path: Path) -> None:
    vol = np.ones((3, 8, 8))
    _dicom_series(tmp_path / "two", vol, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), "1.2.3.4")
    _dicom_series(tmp_path / "two", vol, (1.0, 1.0, 1.0), (0.0, 0.0, 10.0), "1.2.3.5")
    with pytest.raises(FileFormatError, match="2 DICOM series"):
        load_volume(tmp_path / "two")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images")
    with pytest.raises(FileFormatError, match="without a DICOM series"):
        load_volume(tmp_path / "notes")


def test_broken_and_unsupported_files(rotated, tmp_path: Path) -> None:
    nifti, _ = rotated
    good = tmp_path / "a.mha"
    sitk.WriteImage(sitk.ReadImage(str(nifti)), str(good))
    cut = tmp_path / "cut.mha"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(FileFormatError, match="could not be read"):
        load_volume(cut)
    rgb = tmp_path / "rgb.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.float32), isVector=True), str(rgb))
    with pytest.raises(FileFormatError, match="3 components"):
        load_volume(rgb)
    flat = tmp_path / "flat.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6), np.float32)), str(flat))
    with pytest.raises(FileFormatError, match="2-D"):
        load_volume(flat)
    odd = tmp_path / "a.vtk"
    odd.write_text("x")
    with pytest.raises(FileFormatError, match="unsupported extension '.vtk'.*DICOM"):
        load_volume(odd)


def test_without_simpleitk_the_error_says_what_to_install(rotated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nifti, _ = rotated
    mha = tmp_path / "a.mha"
    sitk.WriteImage(sitk.ReadImage(str(nifti)), str(mha))
    real_import = builtins.__import__

    def no_sitk(name: str, *args: object, **kwargs: object) -> object:
        if name == "SimpleITK":
            raise ImportError("No module named 'SimpleITK'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sitk)
    with pytest.raises(FileFormatError, match=r"kcross-metric\[sitk\]"):
        load_volume(mha)
    load_volume(nifti)  # NIfTI never needs it


def test_cli_scores_mha_and_checks_grids(rotated, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """kcross-score on MetaImage/NRRD files: the same result as on the NIfTI files; grid checks hold."""
    from kcross_metric.data.phantom import make_phantom

    ph = make_phantom((16, 48, 48), contrasts=("t2",), seed=0)["t2"][0, 0].numpy().transpose(2, 1, 0)
    real = _nifti(tmp_path / "real.nii.gz", ph, np.diag([1.0, 1.0, 2.0, 1.0]))
    fake = _nifti(tmp_path / "fake.nii.gz", np.clip(ph * 0.9 + 0.02, 0, 1), np.diag([1.0, 1.0, 2.0, 1.0]))
    for src, ext in ((real, "mha"), (fake, "nrrd")):
        sitk.WriteImage(sitk.ReadImage(str(src)), str(tmp_path / f"{src.name.split('.')[0]}.{ext}"))
    assert score_main([str(fake), str(real), "--json"]) == 0
    reference = capsys.readouterr().out
    assert score_main([str(tmp_path / "fake.nrrd"), str(tmp_path / "real.mha"), "--json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["kcross"] == pytest.approx(json.loads(reference)["kcross"], abs=1e-6)
    moved = sitk.ReadImage(str(tmp_path / "fake.nrrd"))
    moved.SetSpacing((1.0, 1.0, 3.0))
    sitk.WriteImage(moved, str(tmp_path / "moved.nrrd"))
    assert score_main([str(tmp_path / "moved.nrrd"), str(tmp_path / "real.mha")]) == 2
    assert "grid" in capsys.readouterr().err
    with pytest.raises(GridMismatchError):
        check_same_grid(load_volume(tmp_path / "moved.nrrd"), load_volume(tmp_path / "real.mha"))
