"""NIfTI / image input-output, grid checks, resampling and robust intensity normalization.

Axis convention (``load_volume(..., canonical=True)``, the default)
--------------------------------------------------------------------
The file is reoriented to the closest RAS+ canonical orientation (``nibabel.as_closest_canonical``,
a lossless permutation/flip of voxels) and the canonical array ``(x, y, z)`` is transposed to
``(z, y, x)``. So ``Volume.data`` has shape ``(D, H, W)`` with

* ``D``: inferior -> superior (``data[k]`` is the ``k``-th axial slice from the bottom),
* ``H``: posterior -> anterior (rows),
* ``W``: patient left -> right (columns),

and ``Volume.orientation == ("S", "A", "R")``. ``Volume.affine`` maps indices of ``data``
``(d, h, w, 1)`` to scanner millimetres, so ``save_volume(vol.data, vol.affine, path)`` writes a
file that reloads to the same array. Two files of the same grid stored with different voxel orders
(e.g. LPS and RAS) load to identical arrays.

Normalization (:func:`normalize_volume`) depends only on the volume itself and is described in
``docs/io-and-normalization.md``.
"""

from __future__ import annotations

import gzip
import os
import struct
import tokenize
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._util.files import atomic_write, check_output_path
from ..errors import (
    ConfigError,
    FileFormatError,
    GridMismatchError,
    InputError,
    NonFiniteError,
    ShapeError,
)

__all__ = [
    "Volume",
    "load_volume",
    "load_image",
    "save_volume",
    "check_same_grid",
    "resample_to",
    "detect_background",
    "brain_mask",
    "normalize_volume",
    "SITK_SUFFIXES",
    "VOLUME_FORMATS",
]

_NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: volume formats read through SimpleITK (optional extra ``kcross-metric[sitk]``); a folder is read
#: as a DICOM series
SITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
VOLUME_FORMATS = "NIfTI (.nii, .nii.gz), MetaImage (.mha, .mhd), NRRD (.nrrd, .nhdr) or a DICOM series folder"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

#: A single value covering at least this fraction of voxels is treated as a constant background.
BACKGROUND_MIN_FRACTION = 0.05
#: Fallback foreground threshold: ``p2 + 0.1 * (p98 - p2)`` (the robust-range rule used by FSL BET).
THRESHOLD_FRACTION = 0.1

#: .nii.gz files declaring more voxel bytes than this are streamed once before being read.
_LARGE_DECLARED_BYTES = 1 << 29

# Everything nibabel / gzip / numpy may raise on a broken or foreign file.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes gzip.BadGzipFile
    EOFError,
    zlib.error,
    struct.error,
    ValueError,
    TypeError,
    IndexError,
    MemoryError,
    gzip.BadGzipFile,
)
# np.load on a corrupted .npy header also raises these (it parses the header as a Python literal).
_NPY_READ_ERRORS: tuple[type[BaseException], ...] = (*_READ_ERRORS, SyntaxError, tokenize.TokenError)


@dataclass(frozen=True)
class Volume:
    """A 3-D MR volume in the package's axis convention.

    Attributes:
        data: float32 array ``(D, H, W)``; with ``canonical=True`` D = inferior->superior,
            H = posterior->anterior, W = left->right.
        affine: 4x4 float64 matrix mapping ``(d, h, w, 1)`` indices of ``data`` to world mm.
        spacing: voxel size in mm along each axis of ``data``.
        orientation: axis codes of ``data`` (``("S", "A", "R")`` when canonical).
        path: the file it was read from (``None`` for derived volumes).
        source_orientation: axis codes of the array as stored in the file.
    """

    data: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    orientation: tuple[str, str, str]
    path: Path | None = None
    source_orientation: tuple[str, ...] = field(default=())

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]


def _sitk() -> Any:
    try:
        import SimpleITK as sitk  # noqa: N813 - the package's own name
    except ImportError as exc:
        raise FileFormatError(
            "MetaImage, NRRD and DICOM volumes are read with SimpleITK, which is not installed: "
            "pip install 'kcross-metric[sitk]' (or convert the volume to NIfTI)"
        ) from exc
    return sitk


def _sitk_to_ras(image: Any, p: Path) -> tuple[np.ndarray, np.ndarray]:
    """A SimpleITK image -> (data in (i, j, k) index order, 4x4 index-to-RAS affine).

    SimpleITK's physical space is LPS: ``x_lps = origin + direction @ (spacing * index)``; NIfTI's
    is RAS, hence the sign flip of the first two world axes.
    """
    sitk = _sitk()
    if image.GetDimension() != 3:
        raise FileFormatError(f"{p} is {image.GetDimension()}-D, expected a 3-D volume")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise FileFormatError(
            f"{p} has {image.GetNumberOfComponentsPerPixel()} components per voxel (RGB, vector or complex); "
            "expected one real-valued channel"
        )
    data = sitk.GetArrayFromImage(image)  # (k, j, i)
    if data.dtype.kind not in "biuf":
        raise FileFormatError(f"{p} stores {data.dtype} voxels; expected real numbers")
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing[None, :]
    lps[:3, 3] = image.GetOrigin()
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    if not np.all(np.isfinite(affine)) or np.linalg.matrix_rank(affine[:3, :3]) < 3:
        raise FileFormatError(f"{p} has a degenerate geometry (zero spacing or collinear directions)")
    return np.ascontiguousarray(data.transpose(2, 1, 0), dtype=np.float32), affine


def _read_sitk(p: Path) -> tuple[np.ndarray, np.ndarray]:
    """A MetaImage/NRRD file, or the single DICOM series in folder ``p``, via SimpleITK."""
    sitk = _sitk()
    try:
        if p.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(p))
            if not series:
                raise FileFormatError(f"{p} is a folder without a DICOM series; expected {VOLUME_FORMATS}")
            if len(series) > 1:
                raise FileFormatError(f"{p} holds {len(series)} DICOM series ({', '.join(series)}); "
                                      "put each series in its own folder")
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(p), series[0]))
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(p))
    except FileFormatError:
        raise
    except RuntimeError as exc:  # SimpleITK reports every reading failure as RuntimeError
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise FileFormatError(f"{p} could not be read (truncated, corrupted or not {VOLUME_FORMATS}): {first}") from exc
    return _sitk_to_ras(image, p)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return path.suffix.lower()


def _check_input_file(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"input file not found: {p}")
    if p.is_dir():
        raise FileFormatError(f"{p} is a directory, expected a .nii or .nii.gz file")
    if p.stat().st_size == 0:
        raise FileFormatError(f"{p} is empty (0 bytes), expected a NIfTI or image file")
    return p


def _affine_spacing(affine: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))


def _read_nifti(p: Path) -> tuple[np.ndarray, np.ndarray, Any]:
    """Read a NIfTI file fully; returns (data as stored, affine, image). Any failure -> FileFormatError."""
    import nibabel as nib

    if _suffix(p) not in _NIFTI_SUFFIXES:
        raise FileFormatError(f"{p}: unsupported extension {_suffix(p)!r}, expected .nii or .nii.gz")
    try:
        img = nib.load(str(p), mmap=False)
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise FileFormatError(f"{p} is a {type(img).__name__}, expected a NIfTI-1/2 image")
        dtype = img.get_data_dtype()
        if dtype.fields is not None or dtype.kind == "c":
            raise FileFormatError(
                f"{p} stores {dtype} voxels (RGB or complex); expected one real-valued channel"
            )
        _check_declared_size(p, img)
        data = np.asarray(img.dataobj, dtype=np.float32)
        affine = np.asarray(img.affine, dtype=np.float64)
    except FileFormatError:
        raise
    except nib.filebasedimages.ImageFileError as exc:
        raise FileFormatError(f"{p} is not a readable NIfTI file: {exc}") from exc
    except (*_READ_ERRORS, *_nibabel_header_errors()) as exc:
        raise FileFormatError(
            f"{p} could not be read as NIfTI (truncated, corrupted or not NIfTI): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not np.all(np.isfinite(affine)):
        raise FileFormatError(f"{p} has a non-finite affine; the header is corrupted")
    if np.linalg.matrix_rank(affine[:3, :3]) < 3:
        # A zero voxel size or collinear axes: no orientation can be derived from it.
        raise FileFormatError(
            f"{p} has a degenerate affine (zero voxel size or collinear axes); the header is corrupted"
        )
    return data, affine, img


def _nibabel_header_errors() -> tuple[type[BaseException], ...]:
    """nibabel's own exception classes for inconsistent headers (not ValueError subclasses)."""
    from nibabel.orientations import OrientationError
    from nibabel.spatialimages import HeaderDataError, HeaderTypeError, ImageDataError

    return (HeaderDataError, HeaderTypeError, ImageDataError, OrientationError)


def _check_declared_size(p: Path, img: Any) -> None:
    """Refuse a file shorter than its header declares before nibabel allocates the array.

    nibabel first allocates the declared size (gigabytes for a corrupted ``dim`` field) and only
    then finds the data missing. Uncompressed files are checked against their size; ``.nii.gz``
    files declaring more than :data:`_LARGE_DECLARED_BYTES` are first streamed (nothing kept) to
    check that the data is really there.
    """
    shape = tuple(int(s) for s in img.header.get_data_shape())
    if any(s < 0 for s in shape):
        raise FileFormatError(f"{p} has negative dimensions {shape} in its header; the header is corrupted")
    needed = float(np.prod([float(s) for s in shape])) * img.get_data_dtype().itemsize
    offset = int(getattr(img.dataobj, "offset", 0))
    if _suffix(p) == ".nii":
        available = p.stat().st_size - offset
    elif needed > _LARGE_DECLARED_BYTES:
        with gzip.open(p, "rb") as fh:
            available = fh.seek(offset + int(needed)) - offset  # stops at the end of the stream
    else:
        return
    if needed > available:
        raise FileFormatError(
            f"{p} is truncated or its header is corrupted: the header declares shape {shape} "
            f"({needed:.0f} bytes of voxel data) but only {max(available, 0)} bytes follow the header"
        )


def _squeeze_trailing(data: np.ndarray, keep: int) -> np.ndarray:
    while data.ndim > keep and data.shape[-1] == 1:
        data = data[..., 0]
    return data


def _check_finite(data: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(data)):
        n = int(data.size - np.count_nonzero(np.isfinite(data)))
        raise NonFiniteError(f"{what} contains {n} NaN or Inf voxel(s); expected finite intensities")


def _to_canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RAS+ closest-canonical reorientation followed by the (x,y,z)->(z,y,x) transpose."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    canon = nib.orientations.apply_orientation(data, ornt)
    canon_affine = affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)
    out = np.ascontiguousarray(canon.transpose(2, 1, 0))
    out_affine = canon_affine[:, [2, 1, 0, 3]]
    return out, out_affine


def _volume_from(
    data: np.ndarray, affine: np.ndarray, p: Path | None, canonical: bool
) -> Volume:
    import nibabel as nib

    try:
        source_codes = tuple(str(c) for c in nib.aff2axcodes(affine))
        if canonical:
            data, affine = _to_canonical(data, affine)
        codes = tuple(str(c) for c in nib.aff2axcodes(affine))
    except nib.orientations.OrientationError as exc:
        where = p if p is not None else "the volume"
        raise FileFormatError(f"{where}: cannot derive an orientation from the affine ({exc})") from exc
    return Volume(
        data=np.ascontiguousarray(data, dtype=np.float32),
        affine=affine,
        spacing=_affine_spacing(affine),  # type: ignore[arg-type]
        orientation=codes,  # type: ignore[arg-type]
        path=p,
        source_orientation=source_codes,
    )


def load_volume(path: str | os.PathLike[str], *, canonical: bool = True) -> Volume:
    """Load a 3-D volume as a :class:`Volume`: NIfTI (``.nii``, ``.nii.gz``, read with nibabel) or,
    with the optional SimpleITK (``pip install 'kcross-metric[sitk]'``), MetaImage (``.mha``,
    ``.mhd``), NRRD (``.nrrd``, ``.nhdr``) or a folder holding one DICOM series. Every format goes
    through the same orientation handling (SimpleITK's LPS geometry is converted to RAS), so the
    same scan stored in two formats loads to the same array and affine.

    Args:
        path: the file (or DICOM folder).
        canonical: reorient to RAS+ and transpose to ``(D, H, W)`` = (S, A, R) as described in the
            module docstring. With ``False`` the array is returned in the stored voxel order.

    Trailing singleton dimensions (``(X, Y, Z, 1)``) are squeezed. Real 4-D files (time series,
    multi-channel) and 2-D files are refused.

    Raises:
        FileNotFoundError: the path does not exist.
        FileFormatError: unreadable, truncated, not a supported format, RGB/complex, not 3-D, or
            SimpleITK missing for a format that needs it.
        NonFiniteError: NaN or Inf voxels.
    """
    p = Path(path)
    if p.is_dir():
        data, affine = _read_sitk(p)
    else:
        p = _check_input_file(p)
        if _suffix(p) in SITK_SUFFIXES:
            data, affine = _read_sitk(p)
        elif _suffix(p) in _NIFTI_SUFFIXES:
            data, affine, _ = _read_nifti(p)
        else:
            raise FileFormatError(f"{p}: unsupported extension {_suffix(p)!r}; expected {VOLUME_FORMATS}")
    data = _squeeze_trailing(data, keep=3)
    if data.ndim != 3:
        hint = "; use load_image for 2-D slices" if data.ndim < 3 else (
            "; 4-D/multi-channel files are not supported, extract one 3-D volume first"
        )
        raise FileFormatError(f"{p} has shape {data.shape} ({data.ndim}-D), expected a 3-D volume{hint}")
    if min(data.shape) == 0:
        raise FileFormatError(f"{p} has an empty dimension: shape {data.shape}")
    _check_finite(data, str(p))
    return _volume_from(data, affine, p, canonical)


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Load a 2-D image as a float32 ``(H, W)`` array of raw intensities (no rescaling).

    Supported: ``.npy`` (loaded with ``allow_pickle=False``), ``.png``/``.jpg``/``.tif``/``.bmp``
    (via Pillow, grayscale or RGB with equal channels), and 2-D NIfTI (a NIfTI of shape
    ``(X, Y)`` or with one singleton spatial axis; reoriented like :func:`load_volume` and the
    singleton axis dropped). Singleton leading/trailing axes of ``.npy`` arrays are squeezed.

    Raises:
        FileFormatError: unreadable file, unsupported extension, colour image, or not 2-D.
        NonFiniteError: NaN or Inf pixels.
    """
    p = _check_input_file(path)
    suffix = _suffix(p)
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except _NPY_READ_ERRORS as exc:
            raise FileFormatError(f"{p} is not a readable .npy array (object arrays are refused): {exc}") from exc
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
            raise FileFormatError(f"{p} holds a {getattr(arr, 'dtype', type(arr))} array, expected real numbers")
        arr = np.squeeze(arr) if arr.ndim > 2 else arr
    elif suffix in _IMAGE_SUFFIXES:
        try:
            from PIL import Image
        except ImportError as exc:  # pragma: no cover - Pillow is normally present
            raise FileFormatError(f"reading {suffix} files needs Pillow (pip install pillow)") from exc
        try:
            with Image.open(p) as im:
                im.load()
                arr = _pil_to_gray(im, p)
        except FileFormatError:
            raise
        except Exception as exc:  # PIL raises UnidentifiedImageError, DecompressionBombError, ...
            raise FileFormatError(f"{p} is not a readable {suffix} image: {exc}") from exc
    elif suffix in _NIFTI_SUFFIXES:
        data, affine, _ = _read_nifti(p)
        data = _squeeze_trailing(data, keep=3)
        if data.ndim == 2:
            data = data[..., None]
        if data.ndim != 3 or sum(s > 1 for s in data.shape) > 2:
            raise FileFormatError(
                f"{p} has shape {data.shape}, expected a 2-D slice; use load_volume for 3-D volumes"
            )
        canon, _ = _to_canonical(data, affine)
        singleton = [i for i, s in enumerate(canon.shape) if s == 1]
        arr = canon.squeeze(axis=singleton[0]) if singleton else canon
    else:
        raise FileFormatError(
            f"{p}: unsupported extension {suffix!r}; expected .npy, .png/.jpg/.tif/.bmp, .nii or .nii.gz"
        )
    if arr.ndim != 2 or min(arr.shape) == 0:
        raise FileFormatError(f"{p} has shape {arr.shape}, expected a non-empty 2-D image")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    _check_finite(arr, str(p))
    return arr


def _pil_to_gray(im: Any, p: Path) -> np.ndarray:
    if im.mode in ("L", "I", "F", "I;16", "I;16B", "I;16L", "1", "P"):
        if im.mode == "P":
            im = im.convert("RGB")
        else:
            return np.asarray(im, dtype=np.float32)
    if im.mode in ("LA",):
        return np.asarray(im, dtype=np.float32)[..., 0]
    arr = np.asarray(im.convert("RGB"), dtype=np.float32)
    if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
        raise FileFormatError(
            f"{p} is a colour ({im.mode}) image; MR images must be single-channel grayscale"
        )
    return arr[..., 0]


def save_volume(
    array: Any,
    affine: Any,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> Path:
    """Write a 2-D or 3-D array as float32 NIfTI, atomically.

    The data go to a hidden temporary file in the destination directory which then replaces
    ``path`` with :func:`os.replace`, so readers never see a half-written file.

    Args:
        array: numpy array or torch tensor, 2-D or 3-D (singleton leading dims are squeezed).
        affine: 4x4 voxel-to-world matrix (e.g. ``Volume.affine``).
        path: destination ending in ``.nii`` or ``.nii.gz``; its directory must exist.
        overwrite: replace an existing file; without it :class:`OutputExistsError` is raised.

    Returns:
        The destination path.
    """
    import nibabel as nib

    p = Path(path)
    if _suffix(p) not in _NIFTI_SUFFIXES:
        raise FileFormatError(f"{p}: output must end in .nii or .nii.gz, got {_suffix(p)!r}")
    if not p.parent.is_dir():
        raise FileNotFoundError(f"output directory {p.parent} does not exist")
    check_output_path(p, overwrite)
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    data = np.asarray(array)
    while data.ndim > 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim not in (2, 3) or min(data.shape) == 0:
        raise ShapeError(f"save_volume expects a non-empty 2-D or 3-D array, got shape {data.shape}")
    if data.dtype.kind not in "biuf":
        raise ShapeError(f"save_volume expects real numbers, got dtype {data.dtype}")
    data = data.astype(np.float32)
    _check_finite(data, "array to save")
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
        raise ShapeError(f"affine must be a finite 4x4 matrix, got shape {aff.shape}")
    img = nib.Nifti1Image(data, aff)
    img.header.set_xyzt_units("mm")
    # nibabel picks the format (and gzip) from the file name, so the temporary file keeps the suffix
    return atomic_write(p, lambda tmp: nib.save(img, str(tmp)), overwrite=overwrite, suffix=f".tmp{_suffix(p)}")


# --------------------------------------------------------------------------------------- grids


def _grid_of(v: Volume | Any) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    if not isinstance(v, Volume):
        raise TypeError(f"expected a Volume (from load_volume), got {type(v).__name__}")
    return v.shape, np.asarray(v.spacing), v.affine


def check_same_grid(
    a: Volume,
    b: Volume,
    *,
    names: tuple[str, str] = ("fake", "real"),
    atol: float = 1e-3,
) -> None:
    """Raise :class:`GridMismatchError` unless ``a`` and ``b`` share shape, spacing and affine.

    Spacings and affine entries (mm) are compared with absolute tolerance ``atol``.
    """
    sa, spa, aa = _grid_of(a)
    sb, spb, ab = _grid_of(b)
    problems = []
    if sa != sb:
        problems.append(f"shapes {sa} vs {sb}")
    if spa.shape != spb.shape or not np.allclose(spa, spb, rtol=0.0, atol=atol):
        problems.append(
            f"spacings {tuple(round(float(s), 4) for s in spa)} vs {tuple(round(float(s), 4) for s in spb)} mm"
        )
    if not np.allclose(aa, ab, rtol=0.0, atol=atol):
        diff = float(np.abs(aa - ab).max())
        problems.append(
            f"affines differ by up to {diff:.4g} mm\n{names[0]} affine:\n{np.array2string(aa, precision=4)}"
            f"\n{names[1]} affine:\n{np.array2string(ab, precision=4)}"
        )
    if problems:
        raise GridMismatchError(
            f"{names[0]} and {names[1]} are not on the same voxel grid: " + "; ".join(problems)
            + f". Resample {names[0]} onto {names[1]} (resample_to / CLI --resample) or register them first."
        )


def resample_to(
    moving: Volume,
    reference: Volume,
    order: int = 1,
    *,
    fill_value: float | None = None,
) -> Volume:
    """Resample ``moving`` onto ``reference``'s voxel grid using the two world affines.

    No registration is done: both volumes must already be aligned in scanner space.

    Args:
        moving, reference: volumes from :func:`load_volume`.
        order: spline order of :func:`scipy.ndimage.affine_transform` (0 nearest, 1 trilinear, 3 cubic).
        fill_value: value outside ``moving``'s field of view; default: its detected background
            value (0 for skull-stripped data, the constant for z-scored data).

    Returns:
        A :class:`Volume` with ``reference``'s grid (affine, spacing, orientation) and ``moving``'s path.
    """
    from scipy.ndimage import affine_transform

    _grid_of(moving)
    _grid_of(reference)
    if order not in (0, 1, 2, 3, 4, 5):
        raise ConfigError(f"order must be an integer spline order 0..5, got {order!r}")
    if fill_value is None:
        mode, value = detect_background(moving.data)
        fill_value = value if mode == "constant" else float(moving.data.min())
    # reference index -> world -> moving index
    matrix = np.linalg.inv(moving.affine) @ reference.affine
    out = affine_transform(
        moving.data,
        matrix[:3, :3],
        offset=matrix[:3, 3],
        output_shape=reference.shape,
        order=order,
        mode="constant",
        cval=float(fill_value),
        prefilter=order > 1,
    )
    return Volume(
        data=np.ascontiguousarray(out, dtype=np.float32),
        affine=reference.affine.copy(),
        spacing=reference.spacing,
        orientation=reference.orientation,
        path=moving.path,
        source_orientation=moving.source_orientation,
    )


# ------------------------------------------------------------------------ background, normalization


def _as_finite_array(data: Any, name: str = "data") -> np.ndarray:
    if hasattr(data, "detach"):
        data = data.detach().cpu().numpy()
    arr = np.asarray(data)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ShapeError(f"{name} is empty: shape {arr.shape}")
    _check_finite(arr, name)
    return arr


def detect_background(data: Any) -> tuple[str, float]:
    """Detect how the background of an MR image/volume is encoded.

    Returns ``(mode, value)``:

    * ``("constant", v)``: at least 5 % of voxels equal the minimum (skull-stripped data with
      background 0, or BRATS2013-style z-scored data whose background is a constant negative),
      or at least 5 % are exactly 0 (background 0 with a few negative resampling undershoots).
      Foreground = voxels ``> v``.
    * ``("threshold", t)``: no constant background (e.g. raw scans with noisy air);
      ``t = p2 + 0.1 * (p98 - p2)``. Foreground = voxels ``> t``.
    """
    arr = _as_finite_array(data)
    lo, hi = float(arr.min()), float(arr.max())
    tol = 1e-6 * max(hi - lo, 1e-12)
    n = arr.size
    if np.count_nonzero(arr <= lo + tol) >= BACKGROUND_MIN_FRACTION * n:
        return "constant", lo
    if lo < 0.0 and np.count_nonzero(arr == 0) >= BACKGROUND_MIN_FRACTION * n:
        return "constant", 0.0
    p2, p98 = np.percentile(arr, [2.0, 98.0])
    return "threshold", float(p2 + THRESHOLD_FRACTION * (p98 - p2))


def brain_mask(data: Any) -> np.ndarray:
    """Boolean foreground (non-background) mask of an image or volume, same shape as ``data``.

    Uses :func:`detect_background`; meant for slice selection and normalization, not as a
    skull-stripping tool. A constant image has an empty mask.
    """
    arr = _as_finite_array(data)
    mode, value = detect_background(arr)
    lo, hi = float(arr.min()), float(arr.max())
    tol = 1e-6 * max(hi - lo, 1e-12)
    return arr > value + (tol if mode == "constant" else 0.0)


def normalize_volume(
    data: Any,
    mask: Any = None,
    *,
    lower_percentile: float = 0.5,
    upper_percentile: float = 99.5,
) -> np.ndarray:
    """Robust per-volume intensity normalization to ``[0, 1]`` (float32, same shape).

    ``out = clip((data - p_lo) / (p_hi - p_lo), 0, 1)`` with ``p_lo``/``p_hi`` the given percentiles
    of the voxels inside ``mask`` (default: :func:`brain_mask`, so background voxels, whether 0 or a
    constant negative, never enter the statistics and end up at 0). The result depends on this
    volume only. If the masked percentiles coincide, the whole-volume min/max are used instead;
    a constant volume maps to all zeros (never NaN).

    Args:
        data: 2-D or 3-D array (numpy or torch), finite.
        mask: optional boolean array of the same shape selecting brain voxels (must be non-empty).
        lower_percentile, upper_percentile: percentiles in ``[0, 100]`` with lower < upper.
    """
    arr = _as_finite_array(data).astype(np.float32, copy=False)
    if not (0.0 <= lower_percentile < upper_percentile <= 100.0):
        raise ConfigError(
            "need 0 <= lower_percentile < upper_percentile <= 100, got "
            f"{lower_percentile} and {upper_percentile}"
        )
    if mask is None:
        m = brain_mask(arr)
    else:
        if hasattr(mask, "detach"):
            mask = mask.detach().cpu().numpy()
        m = np.asarray(mask)
        if m.shape != arr.shape:
            raise ShapeError(f"mask shape {m.shape} does not match data shape {arr.shape}")
        m = m > 0.5 if m.dtype.kind == "f" else m.astype(bool)
        if not m.any():
            raise InputError("mask is empty: no brain voxels to compute the normalization percentiles on")
    lo = hi = 0.0
    if m.any():
        lo, hi = (float(v) for v in np.percentile(arr[m], [lower_percentile, upper_percentile]))
    if not hi > lo:
        lo, hi = float(arr.min()), float(arr.max())
        if not hi > lo:
            return np.zeros_like(arr, dtype=np.float32)
    out = (arr - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)
