from __future__ import annotations

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import need_shared
from kcross_metric.data.io import (
    Volume,
    brain_mask,
    check_same_grid,
    detect_background,
    load_image,
    load_volume,
    normalize_volume,
    resample_to,
    save_volume,
)
from kcross_metric.errors import (
    ConfigError,
    FileFormatError,
    GridMismatchError,
    InputError,
    NonFiniteError,
    OutputExistsError,
    ShapeError,
)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b)))


def _write(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def _ramp(shape: tuple[int, int, int] = (6, 7, 8)) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


# ------------------------------------------------------------------------------------ real data


@pytest.mark.shared_data
def test_brats_t1n_axes_and_spacing() -> None:
    case = need_shared("data", "brats", "BraTS-GLI-00000-000")
    vol = load_volume(case / "BraTS-GLI-00000-000-t1n.nii.gz")
    assert vol.data.dtype == np.float32
    assert vol.shape == (155, 240, 240)  # stored (240, 240, 155) LPS -> (S, A, R)
    assert vol.orientation == ("S", "A", "R")
    assert vol.source_orientation == ("L", "P", "S")
    assert vol.spacing == pytest.approx((1.0, 1.0, 1.0))
    raw = np.asanyarray(nib.load(str(case / "BraTS-GLI-00000-000-t1n.nii.gz")).dataobj)
    # LPS -> RAS flips x and y; then (x,y,z) -> (z,y,x)
    np.testing.assert_array_equal(vol.data, raw[::-1, ::-1, :].transpose(2, 1, 0).astype(np.float32))
    # the affine maps data indices to world: voxel (d,h,w) of data is voxel (239-w, 239-h, d) on disk
    d, h, w = 70, 100, 30
    world = vol.affine @ np.array([d, h, w, 1.0])
    raw_aff = nib.load(str(case / "BraTS-GLI-00000-000-t1n.nii.gz")).affine
    np.testing.assert_allclose(world, raw_aff @ np.array([239 - w, 239 - h, d, 1.0]), atol=1e-6)
    # superior slices of the brain are smaller than middle ones: D really is the S-I axis
    fg = brain_mask(vol.data).sum(axis=(1, 2))
    assert fg[120] < fg[75] and fg[5] < fg[75]


@pytest.mark.shared_data
def test_ixi_t1_t2_grid_mismatch_and_derived_match() -> None:
    ixi = need_shared("data", "ixi")
    t1 = load_volume(ixi / "hd_bet_IXI002-Guys-0828-T1.nii.gz")
    t2 = load_volume(ixi / "hd_bet_IXI002-Guys-0828-T2.nii.gz")
    derived = load_volume(ixi / "derived_IXI002_T1_resampled_to_T2grid.nii.gz")
    with pytest.raises(GridMismatchError, match=r"fake and real.*shapes \(256, 256, 150\) vs \(130, 256, 256\)"):
        check_same_grid(t1, t2)
    with pytest.raises(GridMismatchError, match="spacings"):
        check_same_grid(t1, t2, names=("a", "b"))
    check_same_grid(derived, t2)  # no error


@pytest.mark.shared_data
def test_resample_ixi_t1_onto_t2_grid() -> None:
    ixi = need_shared("data", "ixi")
    t1 = load_volume(ixi / "hd_bet_IXI002-Guys-0828-T1.nii.gz")
    t2 = load_volume(ixi / "hd_bet_IXI002-Guys-0828-T2.nii.gz")
    mask_t2 = load_volume(ixi / "hd_bet_mask_IXI002-Guys-0828-T2.nii.gz").data > 0.5
    out = resample_to(t1, t2)
    check_same_grid(out, t2)
    assert out.path == t1.path
    assert _dice(brain_mask(out.data), mask_t2) > 0.9
    # and it agrees with the independently resampled file shipped in ../shared
    derived = load_volume(ixi / "derived_IXI002_T1_resampled_to_T2grid.nii.gz").data
    assert np.corrcoef(out.data.ravel(), derived.ravel())[0, 1] > 0.99
    # resampling onto its own grid is the identity
    same = resample_to(t2, t2)
    np.testing.assert_allclose(same.data, t2.data, atol=1e-3)


@pytest.mark.shared_data
def test_brats2013_normalization_ignores_negative_background() -> None:
    case = need_shared("data", "brats2013", "brats_2013_pat0001_1")
    flair = load_volume(case / "Flair_subtrMeanDivStd.nii.gz").data
    ref_mask = load_volume(case / "brainmask.nii.gz").data > 0.5
    mode, value = detect_background(flair)
    assert mode == "constant" and value < -1.0
    assert _dice(brain_mask(flair), ref_mask) > 0.99
    out = normalize_volume(flair)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    assert np.all(out[~ref_mask] == 0.0)
    # percentiles come from the brain only: median brain intensity sits mid-range, not near 1
    assert 0.2 < float(np.median(out[ref_mask])) < 0.7
    # a naive whole-volume 0.5th percentile would be the background: the 1st brain percentile is not 0
    assert np.count_nonzero(out[ref_mask] > 0) > 0.98 * ref_mask.sum()
    np.testing.assert_allclose(normalize_volume(flair, ref_mask), out, atol=1e-6)


@pytest.mark.shared_data
def test_tcga_small_negative_undershoot_is_background() -> None:
    case = need_shared("data", "brats", "TCGA-DU-7294")
    t1 = load_volume(case / "TCGA-DU-7294_t1_bet.nii.gz").data
    assert t1.min() < 0
    assert detect_background(t1) == ("constant", 0.0)
    assert not brain_mask(t1)[t1 < 0].any()


# ---------------------------------------------------------------------------- synthetic NIfTI


def test_roundtrip_nii_and_niigz(tmp_path: Path) -> None:
    data = _ramp()
    for name in ("a.nii", "a.nii.gz"):
        p = _write(tmp_path / name, data)
        vol = load_volume(p)
        assert vol.shape == (8, 7, 6)
        np.testing.assert_array_equal(vol.data, data.transpose(2, 1, 0))
        raw = load_volume(p, canonical=False)
        np.testing.assert_array_equal(raw.data, data)


def test_lps_and_ras_give_same_canonical_array(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    ras = np.diag([1.0, 2.0, 3.0, 1.0])
    ras[:3, 3] = [-10.0, -20.0, -30.0]
    # the same voxels stored with x and y flipped, described by an LPS affine
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = [4.0, 5.0]  # index i -> (n-1) - i
    lps = ras @ flip
    a = load_volume(_write(tmp_path / "ras.nii.gz", data, ras))
    b = load_volume(_write(tmp_path / "lps.nii.gz", data[::-1, ::-1, :].copy(), lps))
    assert b.source_orientation == ("L", "P", "S")
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-9)
    assert a.spacing == pytest.approx((3.0, 2.0, 1.0))
    check_same_grid(a, b)


def test_trailing_singleton_squeezed_and_real_4d_refused(tmp_path: Path) -> None:
    data = _ramp()
    vol = load_volume(_write(tmp_path / "s.nii.gz", data[..., None]))
    assert vol.shape == (8, 7, 6)
    with pytest.raises(FileFormatError, match=r"4-D.*not supported"):
        load_volume(_write(tmp_path / "t.nii.gz", np.stack([data, data], axis=-1)))
    with pytest.raises(FileFormatError, match="load_image"):
        load_volume(_write(tmp_path / "2d.nii.gz", data[:, :, 0]))


def test_truncated_gzip(tmp_path: Path) -> None:
    p = _write(tmp_path / "v.nii.gz", np.random.default_rng(1).random((20, 20, 20)).astype(np.float32))
    blob = p.read_bytes()
    p.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(FileFormatError, match="truncated"):
        load_volume(p)


def test_truncated_uncompressed(tmp_path: Path) -> None:
    p = _write(tmp_path / "v.nii", _ramp((10, 10, 10)))
    blob = p.read_bytes()
    p.write_bytes(blob[:-500])
    with pytest.raises(FileFormatError):
        load_volume(p)


@pytest.mark.parametrize("name", ["junk.nii", "junk.nii.gz"])
def test_random_bytes(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    p.write_bytes(np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(FileFormatError):
        load_volume(p)


def test_gzip_of_garbage(tmp_path: Path) -> None:
    p = tmp_path / "g.nii.gz"
    p.write_bytes(gzip.compress(b"not a nifti header" * 50))
    with pytest.raises(FileFormatError):
        load_volume(p)


def test_empty_missing_directory_and_extension(tmp_path: Path) -> None:
    empty = tmp_path / "empty.nii.gz"
    empty.touch()
    with pytest.raises(FileFormatError, match="empty"):
        load_volume(empty)
    with pytest.raises(FileNotFoundError):
        load_volume(tmp_path / "nope.nii.gz")
    with pytest.raises(FileFormatError, match="directory"):
        load_volume(tmp_path)
    other = tmp_path / "v.mgz"
    other.write_bytes(b"x" * 10)
    with pytest.raises(FileFormatError, match="extension"):
        load_volume(other)


def test_nonfinite_voxels(tmp_path: Path) -> None:
    data = _ramp()
    data[1, 2, 3] = np.nan
    data[2, 2, 2] = np.inf
    with pytest.raises(NonFiniteError, match="2 NaN or Inf"):
        load_volume(_write(tmp_path / "n.nii.gz", data))


def test_errors_are_value_errors() -> None:
    assert issubclass(FileFormatError, ValueError) and issubclass(GridMismatchError, ValueError)


# ------------------------------------------------------------------------------------- saving


def test_save_roundtrip_atomic_and_overwrite(tmp_path: Path) -> None:
    src = load_volume(_write(tmp_path / "in.nii.gz", _ramp(), np.diag([-1.0, -1.0, 2.0, 1.0])))
    out = tmp_path / "out.nii.gz"
    save_volume(torch.from_numpy(src.data), src.affine, out)
    back = load_volume(out)
    np.testing.assert_array_equal(back.data, src.data)
    np.testing.assert_allclose(back.affine, src.affine, atol=1e-6)
    with pytest.raises(OutputExistsError, match="overwrite"):
        save_volume(src.data, src.affine, out)
    save_volume(src.data * 2, src.affine, out, overwrite=True)
    np.testing.assert_array_equal(load_volume(out).data, src.data * 2)
    assert sorted(os.listdir(tmp_path)) == ["in.nii.gz", "out.nii.gz"]  # no temp leftovers


def test_save_refusals(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError):
        save_volume(np.zeros((4, 4, 4)), np.eye(4), tmp_path / "x.png")
    with pytest.raises(NonFiniteError):
        save_volume(np.full((4, 4, 4), np.nan), np.eye(4), tmp_path / "x.nii")
    with pytest.raises(ShapeError):
        save_volume(np.zeros((2, 4, 4, 4)), np.eye(4), tmp_path / "x.nii")
    with pytest.raises(ShapeError):
        save_volume(np.zeros((4, 4, 4)), np.eye(3), tmp_path / "x.nii")
    with pytest.raises(FileNotFoundError):
        save_volume(np.zeros((4, 4, 4)), np.eye(4), tmp_path / "missing" / "x.nii")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------- 2-D input


def test_load_image_npy_png_nifti(tmp_path: Path) -> None:
    arr = np.random.default_rng(3).random((12, 9))
    np.save(tmp_path / "a.npy", arr)
    np.testing.assert_allclose(load_image(tmp_path / "a.npy"), arr.astype(np.float32))
    np.save(tmp_path / "b.npy", arr[None, :, :, None])
    assert load_image(tmp_path / "b.npy").shape == (12, 9)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FileFormatError):
        load_image(tmp_path / "obj.npy")
    np.save(tmp_path / "c.npy", np.zeros((3, 4, 5)))
    with pytest.raises(FileFormatError, match="2-D"):
        load_image(tmp_path / "c.npy")

    Image = pytest.importorskip("PIL.Image")
    u8 = (arr * 255).astype(np.uint8)
    Image.fromarray(u8).save(tmp_path / "g.png")
    np.testing.assert_array_equal(load_image(tmp_path / "g.png"), u8.astype(np.float32))
    Image.fromarray(np.stack([u8] * 3, axis=-1)).save(tmp_path / "rgb_gray.png")
    np.testing.assert_array_equal(load_image(tmp_path / "rgb_gray.png"), u8.astype(np.float32))
    colour = np.stack([u8, u8[::-1], u8], axis=-1)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(FileFormatError, match="colour"):
        load_image(tmp_path / "colour.png")

    _write(tmp_path / "s.nii.gz", arr.astype(np.float32))  # (X=12, Y=9), identity affine
    np.testing.assert_allclose(load_image(tmp_path / "s.nii.gz"), arr.T.astype(np.float32))
    with pytest.raises(FileFormatError, match="load_volume"):
        load_image(_write(tmp_path / "v.nii.gz", _ramp()))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(FileFormatError):
        load_image(tmp_path / "bad.png")


@pytest.mark.shared_data
def test_load_image_real_slice() -> None:
    p = need_shared("data", "t1_coronal_slice.npy")
    img = load_image(p)
    assert img.shape == (256, 256) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0


# ----------------------------------------------------------------------------- normalization


def test_normalize_zero_background() -> None:
    rng = np.random.default_rng(4)
    vol = np.zeros((20, 30, 30), dtype=np.float32)
    vol[5:15, 5:25, 5:25] = rng.uniform(100, 200, (10, 20, 20))
    out = normalize_volume(vol)
    assert out.shape == vol.shape and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.all(out[vol == 0] == 0)
    inside = out[vol > 0]
    assert abs(float(np.median(inside)) - 0.5) < 0.05  # percentiles from the brain, not the zeros
    assert np.mean(inside == 0) < 0.01 and np.mean(inside == 1) < 0.01


def test_normalize_is_per_volume_and_scale_invariant() -> None:
    rng = np.random.default_rng(5)
    vol = np.zeros((10, 16, 16), dtype=np.float32)
    vol[2:8, 3:13, 3:13] = rng.uniform(1, 2, (6, 10, 10))
    a = normalize_volume(vol)
    np.testing.assert_allclose(normalize_volume(vol * 37.0 + 0.0), a, atol=1e-5)
    z = np.where(vol > 0, (vol - 1.5) / 0.3, -4.2).astype(np.float32)  # BRATS2013-style
    np.testing.assert_allclose(normalize_volume(z), a, atol=1e-4)


def test_normalize_constant_and_degenerate() -> None:
    for value in (0.0, 5.0, -3.0):
        out = normalize_volume(np.full((4, 5, 6), value, dtype=np.float32))
        assert np.all(out == 0) and np.all(np.isfinite(out))
    two_level = np.zeros((8, 8), dtype=np.float32)
    two_level[2:6, 2:6] = 7.0  # brain constant: falls back to min/max
    np.testing.assert_array_equal(normalize_volume(two_level), two_level / 7.0)


def test_normalize_validation() -> None:
    vol = np.ones((4, 4, 4), dtype=np.float32)
    with pytest.raises(NonFiniteError):
        normalize_volume(np.full((4, 4), np.nan))
    with pytest.raises(ConfigError):
        normalize_volume(vol, lower_percentile=60, upper_percentile=40)
    with pytest.raises(ShapeError):
        normalize_volume(vol, np.ones((4, 4), dtype=bool))
    with pytest.raises(InputError, match="empty"):
        normalize_volume(vol, np.zeros((4, 4, 4), dtype=bool))


def test_brain_mask_threshold_mode_with_noisy_background() -> None:
    rng = np.random.default_rng(6)
    img = np.abs(rng.normal(0, 5, (64, 64))).astype(np.float32) + 1e-3  # Rayleigh-like air
    yy, xx = np.mgrid[:64, :64]
    head = (yy - 32) ** 2 + (xx - 32) ** 2 < 20**2
    img[head] += 300
    mode, t = detect_background(img)
    assert mode == "threshold" and 5 < t < 300
    assert _dice(brain_mask(img), head) > 0.99


def test_volume_type_check() -> None:
    v = Volume(np.zeros((2, 2, 2), np.float32), np.eye(4), (1.0, 1.0, 1.0), ("R", "A", "S"))
    with pytest.raises(TypeError):
        check_same_grid(v, np.zeros((2, 2, 2)))  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        resample_to(v, v, order=7)
