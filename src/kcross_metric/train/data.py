"""Training data from NIfTI: cases, contrasts, lesion masks, slice selection, crops, augmentation.

Every volume goes through the same per-volume normalization as inference on files
(:func:`kcross_metric.data.io.normalize_volume`, percentiles inside the brain), is cut into axial slices
(``Volume.data[k]``; the paper uses slices 50-80 of the 155-slice BraTS grid, configurable here) and
centre-cropped or zero-padded to a fixed size. Case-level splits come from
:mod:`kcross_metric.train.splits` only.

Supported layouts (under ``$KCROSS_SHARED_DIR/data``, ``root=`` or any folder with the same structure):

* BraTS 2023 (``brats/<case>/<case>-{t1n,t1c,t2w,t2f}.nii.gz`` + optional ``-seg``),
* TCGA after BraTS preprocessing (``brats/<case>/<case>_{t1,t1c,t2,fla}_bet.nii.gz`` +
  ``seg_fusion_mav.nii.gz``; small negative values clipped at 0),
* BRATS 2013 (``brats2013/<case>/{Flair,T1c}_subtrMeanDivStd.nii.gz`` z-scored, multiplied by
  ``brainmask.nii.gz``; ``OTMultiClass`` manual segmentation),
* IXI-style T1/T2 pairs on one grid (``ixi/derived_IXI002_T1_resampled_to_T2grid.nii.gz`` and the
  skull-stripped T2 with its brain mask).

* the extra set laid out by ``../shared/data/extra/get.sh`` (:func:`extra_root`): BraTS 2018
  (``brats2018/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz``), BraTS 2018 FLAIR/T1 with a
  whole-tumour mask (``brats2018-flair-t1/<case>/{FLAIR,T1,GT_W}.nii.gz``) and the Ljubljana
  multiple-sclerosis patients (``ms-ljubljana/patientNN/{FLAIR,T1,T1POST,T2,GOLD_STANDARD}_*.nii.gz``,
  MNI grid 182x218x182; case id ``ljubljana_patientNN``).

Lesion masks are whole tumour (label > 0), or every MS lesion. Which layout a case id uses, its
licence and its split come from :data:`kcross_metric.train.splits.SUBJECTS`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._util.shared_data import shared_path
from ..data.io import load_volume, normalize_volume
from ..errors import ConfigError, DataNotFoundError, FileFormatError
from .splits import SUBJECTS, cases_for_split, subject

__all__ = [
    "CONTRASTS",
    "Case",
    "SliceSet",
    "load_case",
    "build_slices",
    "crop_or_pad",
    "augment",
    "data_root",
    "is_healthy",
    "case_slices",
    "case_contrasts",
    "available_cases",
    "extra_root",
    "EXTRA_ENV_VAR",
    "GRID_SLICE_OFFSET",
]

#: Environment variable naming the folder laid out by ``extra/get.sh`` (the 27 extra subjects).
EXTRA_ENV_VAR = "KCROSS_EXTRA_DIR"

CONTRASTS: tuple[str, ...] = ("t1", "t1c", "t2", "flair")
PAPER_SLICE_RANGE: tuple[int, int] = (50, 80)


@dataclass
class Case:
    """One subject: contrasts normalized to [0,1] as (D,H,W) float32, a lesion mask or None."""

    case_id: str
    contrasts: dict[str, np.ndarray]
    lesion: np.ndarray | None
    brain: np.ndarray
    licence: str
    lesion_kind: str = "none"  #: "expert", "manual", "algorithmic", "consensus" or "none"
    #: axial slice ``k`` of the BraTS (SRI24, 155-slice) grid corresponds to slice ``k + slice_offset``
    #: of this case's grid (0 on the BraTS grid; see :data:`GRID_SLICE_OFFSET`)
    slice_offset: int = 0


def data_root(root: str | Path | None = None) -> Path:
    if root is not None:
        path = Path(root)
    else:
        found = shared_path("data")
        if found is None:
            raise DataNotFoundError(
                "the shared data folder was not found; pass root= the folder holding brats/, ixi/, ... "
                "(or data_root= in a training config), or set KCROSS_SHARED_DIR to the folder above it",
                cli_message="the shared data folder was not found; pass --data-root DIR (the folder holding "
                "brats/, ixi/, ...) or set KCROSS_SHARED_DIR to the folder above it (DIR/..)",
            )
        path = found
    return path


def _norm(data: np.ndarray, brain: np.ndarray) -> np.ndarray:
    out = normalize_volume(data, brain if brain.any() else None)
    out[~brain] = 0.0
    return out


def _brats2023(root: Path, case_id: str) -> Case:
    folder = root / "brats" / case_id
    names = {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f"}
    raw = {c: np.clip(load_volume(folder / f"{case_id}-{n}.nii.gz").data, 0, None) for c, n in names.items()}
    brain = np.any([v > 0 for v in raw.values()], axis=0)
    seg_path = folder / f"{case_id}-seg.nii.gz"
    lesion = load_volume(seg_path).data > 0 if seg_path.exists() else None
    return Case(case_id, {c: _norm(v, brain) for c, v in raw.items()}, lesion, brain, "CC BY 4.0",
                "expert" if lesion is not None else "none")


def _tcga(root: Path, case_id: str) -> Case:
    folder = root / "brats" / case_id
    names = {"t1": "t1", "t1c": "t1c", "t2": "t2", "flair": "fla"}
    raw = {c: np.clip(load_volume(folder / f"{case_id}_{n}_bet.nii.gz").data, 0, None) for c, n in names.items()}
    brain = np.any([v > 1e-3 * v.max() for v in raw.values()], axis=0)
    lesion = load_volume(folder / "seg_fusion_mav.nii.gz").data > 0
    return Case(case_id, {c: _norm(v, brain) for c, v in raw.items()}, lesion, brain, "CC BY 3.0", "algorithmic")


def _brats2013(root: Path, case_id: str) -> Case:
    folder = root / "brats2013" / case_id
    brain = load_volume(folder / "brainmask.nii.gz").data > 0.5
    contrasts = {
        c: _norm(load_volume(folder / f"{n}_subtrMeanDivStd.nii.gz").data, brain)
        for c, n in (("flair", "Flair"), ("t1c", "T1c"))
    }
    lesion = load_volume(folder / "OTMultiClass.nii.gz").data > 0
    return Case(case_id, contrasts, lesion, brain, "CC BY-NC-SA 3.0", "manual")


def _ixi(root: Path, case_id: str) -> Case:
    folder = root / "ixi"
    subject = case_id  # e.g. IXI002-Guys-0828
    t2 = load_volume(folder / f"hd_bet_{subject}-T2.nii.gz").data
    brain = load_volume(folder / f"hd_bet_mask_{subject}-T2.nii.gz").data > 0.5
    short = subject.split("-")[0]
    t1 = load_volume(folder / f"derived_{short}_T1_resampled_to_T2grid.nii.gz").data
    brain_t1 = brain & (t1 > 0)
    return Case(
        case_id,
        {"t1": _norm(np.clip(t1, 0, None), brain_t1), "t2": _norm(np.clip(t2, 0, None), brain)},
        None,
        brain,
        "CC BY-SA 3.0",
    )


def extra_root(root: str | Path | None = None, data: str | Path | None = None) -> Path | None:
    """The folder laid out by ``extra/get.sh`` (holding ``brats2018/``, ``brats2018-flair-t1/``,
    ``ms-ljubljana/``), or ``None`` where it is not found.

    Order: ``root``; ``$KCROSS_EXTRA_DIR``; ``<data>/extra`` when it holds the laid-out folders
    (``data`` being the shared data folder, see :func:`data_root`).
    """
    candidates: list[Path] = []
    if root is not None:
        return Path(root) if Path(root).is_dir() else None
    env = os.environ.get(EXTRA_ENV_VAR)
    if env:
        return Path(env).expanduser() if Path(env).expanduser().is_dir() else None
    if data is not None:
        candidates.append(Path(data) / "extra")
    else:
        found = shared_path("data", "extra")
        if found is not None:
            candidates.append(found)
    for path in candidates:
        if any((path / sub).is_dir() for sub in ("brats2018", "brats2018-flair-t1", "ms-ljubljana")):
            return path
    return None


#: Slice offset of the grids of the extra set against the BraTS (SRI24) grid: the slice of largest
#: brain area is 71-72 on the BraTS grid and 81 on the MNI 182-slice grid of the MS patients, so a
#: configured slice range (e.g. the paper's 50-80) covers the same anatomy on both.
GRID_SLICE_OFFSET: dict[str, int] = {"ms-ljubljana": 9}


def _brats2018(folder: Path, case_id: str, licence: str) -> Case:
    names = {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair"}
    raw = {c: np.clip(load_volume(folder / f"{case_id}_{n}.nii.gz").data, 0, None) for c, n in names.items()}
    brain = np.any([v > 0 for v in raw.values()], axis=0)
    lesion = load_volume(folder / f"{case_id}_seg.nii.gz").data > 0
    return Case(case_id, {c: _norm(v, brain) for c, v in raw.items()}, lesion, brain, licence, "expert")


def _brats2018_flair_t1(folder: Path, case_id: str, licence: str) -> Case:
    raw = {c: np.clip(load_volume(folder / f"{n}.nii.gz").data, 0, None) for c, n in (("t1", "T1"), ("flair", "FLAIR"))}
    brain = np.any([v > 0 for v in raw.values()], axis=0)
    lesion = load_volume(folder / "GT_W.nii.gz").data > 0.5
    return Case(case_id, {c: _norm(v, brain) for c, v in raw.items()}, lesion, brain, licence, "expert")


_MS_SUFFIX = "_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz"


def _ms_ljubljana(folder: Path, case_id: str, licence: str) -> Case:
    names = {"t1": "T1", "t1c": "T1POST", "t2": "T2", "flair": "FLAIR"}
    # N4 and resampling leave small negative values inside the brain; outside it is exactly 0
    loaded = {c: load_volume(folder / f"{n}{_MS_SUFFIX}").data for c, n in names.items()}
    brain = np.any([v != 0 for v in loaded.values()], axis=0)
    raw = {c: np.clip(v, 0, None) for c, v in loaded.items()}
    lesion = load_volume(folder / "GOLD_STANDARD_N4_noneck_reduced_winsor_regtoFLAIR_regtoMNI.nii.gz").data > 0.5
    return Case(case_id, {c: _norm(v, brain) for c, v in raw.items()}, lesion, brain, licence, "consensus",
                slice_offset=GRID_SLICE_OFFSET["ms-ljubljana"])


def case_contrasts(case_id: str) -> tuple[str, ...]:
    """The contrasts a case of the supported layouts has, known from its id without loading it."""
    layout = SUBJECTS[case_id].layout if case_id in SUBJECTS else None
    if case_id.startswith("brats_2013") or layout == "brats2013":
        return ("t1c", "flair")
    if case_id.startswith("IXI") or layout == "ixi":
        return ("t1", "t2")
    if layout == "brats2018-flair-t1":
        return ("t1", "flair")
    return CONTRASTS


def _extra_folder(case_id: str, layout: str, extra: Path | None) -> Path:
    if extra is None:
        where = f"case {case_id} is in the extra set, which was not found: lay it out with ../shared/data/extra/get.sh"
        raise DataNotFoundError(
            f"{where} and set {EXTRA_ENV_VAR} to that folder (or pass extra_root=)",
            cli_message=f"{where} and pass --extra-root DIR (or set {EXTRA_ENV_VAR}=DIR)",
        )
    name = case_id.removeprefix("ljubljana_") if layout == "ms-ljubljana" else case_id
    return extra / layout / name


def case_available(case_id: str, root: str | Path | None = None, extra: str | Path | None = None) -> bool:
    """True if the files of ``case_id`` can be found (without loading them)."""
    try:
        base = data_root(root)
    except FileNotFoundError:
        base = None
    layout = SUBJECTS[case_id].layout if case_id in SUBJECTS else None
    if layout in ("brats2018", "brats2018-flair-t1", "ms-ljubljana"):
        found = extra_root(extra, base)
        return found is not None and (found / layout / case_id.removeprefix("ljubljana_")).is_dir()
    if base is None:
        return False
    if layout == "ixi":
        return (base / "ixi").is_dir()
    if layout == "brats2013":
        return (base / "brats2013" / case_id).is_dir()
    return (base / "brats" / case_id).is_dir()


def available_cases(
    cases: Sequence[str] | str, root: str | Path | None = None, extra: str | Path | None = None, *, warn: bool = True,
    require: bool = False,
) -> tuple[str, ...]:
    """The cases of ``cases`` (ids or a split name) whose files are present; a warning names the others.
    With ``require``, none present is a :class:`DataNotFoundError` (a training run needs data)."""
    ids = cases_for_split(cases) if isinstance(cases, str) else tuple(cases)
    present = tuple(c for c in ids if case_available(c, root, extra))
    if require and ids and not present:
        try:
            where = f"in {data_root(root)}"
        except FileNotFoundError as exc:
            raise DataNotFoundError(f"none of the {len(ids)} cases can be loaded: {exc}",
                                    cli_message=f"none of the {len(ids)} cases can be loaded: "
                                    f"{getattr(exc, 'cli_message', exc)}") from exc
        raise DataNotFoundError(
            f"none of the {len(ids)} cases ({', '.join(ids[:4])}{', ...' if len(ids) > 4 else ''}) is {where}; "
            f"pass root= the folder holding brats/, ixi/, ... or set KCROSS_SHARED_DIR, and {EXTRA_ENV_VAR} for the extra set",
            cli_message=f"none of the {len(ids)} cases ({', '.join(ids[:4])}{', ...' if len(ids) > 4 else ''}) is "
            f"{where}; pass --data-root DIR (the folder holding brats/, ixi/, ...) and --extra-root DIR for the extra set",
        )
    missing = [c for c in ids if c not in present]
    if missing and warn:
        warnings.warn(
            f"{len(missing)} of {len(ids)} cases are not on this machine and are skipped: {', '.join(missing)} "
            f"(the extra set: ../shared/data/extra/get.sh, then set {EXTRA_ENV_VAR})",
            stacklevel=2,
        )
    return present


def load_case(case_id: str, root: str | Path | None = None, extra: str | Path | None = None) -> Case:
    """Load one case by id (the folder name; IXI subjects by their subject id; the MS patients as
    ``ljubljana_patientNN``). ``root`` is the shared data folder, ``extra`` the folder laid out by
    ``extra/get.sh`` (default: :func:`extra_root`)."""
    layout = SUBJECTS[case_id].layout if case_id in SUBJECTS else None
    try:
        if layout in ("brats2018", "brats2018-flair-t1", "ms-ljubljana"):
            try:
                base: Path | None = data_root(root)
            except FileNotFoundError:
                base = None
            folder = _extra_folder(case_id, layout, extra_root(extra, base))
            loader = {"brats2018": _brats2018, "brats2018-flair-t1": _brats2018_flair_t1,
                      "ms-ljubljana": _ms_ljubljana}[layout]
            return loader(folder, case_id, subject(case_id).licence)
        base = data_root(root)
        if case_id.startswith("BraTS-"):
            return _brats2023(base, case_id)
        if case_id.startswith("TCGA-"):
            return _tcga(base, case_id)
        if case_id.startswith("brats_2013"):
            return _brats2013(base, case_id)
        if case_id.startswith("IXI"):
            return _ixi(base, case_id)
    except DataNotFoundError:
        raise  # a whole data folder is missing: its message says where to point
    except FileNotFoundError as exc:  # pragma: no cover - depends on the data present
        raise FileFormatError(f"case {case_id}: a file is missing: {exc}") from exc
    raise ConfigError(f"unknown case layout for {case_id!r}")


def crop_or_pad(image: np.ndarray, size: int) -> np.ndarray:
    """Centre crop or zero-pad the last two axes to (size, size)."""
    out = image
    for axis in (-2, -1):
        n = out.shape[axis]
        if n > size:
            start = (n - size) // 2
            out = np.take(out, range(start, start + size), axis=axis)
        elif n < size:
            before = (size - n) // 2
            pad = [(0, 0)] * out.ndim
            pad[axis] = (before, size - n - before)
            out = np.pad(out, pad)
    return out


#: Case-id prefixes of healthy-volunteer datasets (IXI): ``Case.lesion`` is None for them like for a
#: case without segmentation, but "no lesion" is known, so an all-zero mask is a true label.
HEALTHY_PREFIXES: tuple[str, ...] = ("IXI",)


def is_healthy(case_id: str) -> bool:
    """True if ``case_id`` belongs to a healthy-volunteer dataset (known to have no lesion)."""
    return case_id.startswith(HEALTHY_PREFIXES)


def case_slices(
    case: Case, slices: Sequence[int], size: int
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Axial slices ``data[k]`` (k in ``slices``) of every contrast, centre-cropped/padded to ``size``.

    Returns ``images[contrast]`` float32 (S, size, size) in [0, 1] and the lesion mask as bool
    (S, size, size), or None when the case has no segmentation.

    Raises:
        ConfigError: a slice index outside ``0 .. depth-1``.
    """
    depth = case.brain.shape[0]
    idx = [int(k) for k in slices]
    bad = [k for k in idx if not 0 <= k < depth]
    if bad:
        raise ConfigError(f"slice indices {bad} exceed the {depth} axial slices of {case.case_id}")
    images = {c: np.ascontiguousarray(crop_or_pad(v[idx], size), dtype=np.float32) for c, v in case.contrasts.items()}
    lesion = None if case.lesion is None else np.ascontiguousarray(crop_or_pad(case.lesion[idx], size), dtype=bool)
    return images, lesion


@dataclass
class SliceSet:
    """Axial slices of several cases, all contrasts, as tensors.

    ``images[c]`` is (N,1,S,S) in [0,1] for each contrast ``c`` present in *every* case
    (``None`` rows are not allowed); ``lesion`` is (N,1,S,S) float 0/1 (zeros for healthy cases);
    ``case_ids`` and ``slice_index`` say where each row came from.
    """

    images: dict[str, torch.Tensor]
    lesion: torch.Tensor
    has_lesion_label: torch.Tensor
    case_ids: list[str] = field(default_factory=list)
    slice_index: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.lesion.shape[0])


@dataclass
class _SliceRows:
    """The rows of one contrast set while :func:`build_slices` collects them."""

    images: dict[str, list[np.ndarray]]
    lesion: list[np.ndarray] = field(default_factory=list)
    label: list[bool] = field(default_factory=list)
    case: list[str] = field(default_factory=list)
    k: list[int] = field(default_factory=list)


def _select_slices(case: Case, slice_range: tuple[int, int] | None, min_brain_fraction: float) -> list[int]:
    depth = case.brain.shape[0]
    off = case.slice_offset
    lo, hi = (0, depth) if slice_range is None else (max(0, slice_range[0] + off), min(depth, slice_range[1] + off + 1))
    frac = case.brain.reshape(depth, -1).mean(axis=1)
    return [k for k in range(lo, hi) if frac[k] >= min_brain_fraction]


def build_slices(
    cases: list[str] | tuple[str, ...] | str,
    *,
    size: int = 256,
    slice_range: tuple[int, int] | None = PAPER_SLICE_RANGE,
    min_brain_fraction: float = 0.05,
    root: str | Path | None = None,
    ixi_slice_range: tuple[int, int] | None = None,
    extra: str | Path | None = None,
) -> dict[str, SliceSet]:
    """Slices of the given cases (or a split name), grouped by contrast pair availability.

    Returns a dict ``contrast-set key -> SliceSet`` (cases with the same contrasts share a set, e.g.
    ``"t1,t1c,t2,flair"`` for BraTS and ``"t1,t2"`` for IXI). ``ixi_slice_range`` overrides the slice
    range for IXI cases (their grid is not the BraTS one); by default all IXI slices with brain.
    ``slice_range`` is on the BraTS grid; cases on other grids shift it by ``Case.slice_offset``.
    A split name keeps only the cases present on this machine (:func:`available_cases`).
    """
    if isinstance(cases, str):
        cases = available_cases(cases, root, extra)
    groups: dict[str, _SliceRows] = {}
    for case_id in cases:
        case = load_case(case_id, root, extra)
        rng = ixi_slice_range if case_id.startswith("IXI") else slice_range
        keep = _select_slices(case, rng, min_brain_fraction)
        key = ",".join(c for c in CONTRASTS if c in case.contrasts)
        g = groups.setdefault(key, _SliceRows(images={c: [] for c in key.split(",")}))
        for k in keep:
            for c in g.images:
                g.images[c].append(crop_or_pad(case.contrasts[c][k], size))
            les = case.lesion[k] if case.lesion is not None else np.zeros_like(case.brain[k])
            g.lesion.append(crop_or_pad(les.astype(np.float32), size))
            g.label.append(case.lesion is not None)
            g.case.append(case_id)
            g.k.append(k)
    out = {}
    for key, g in groups.items():
        if not g.lesion:
            continue
        out[key] = SliceSet(
            images={c: torch.from_numpy(np.stack(v)[:, None].astype(np.float32)) for c, v in g.images.items()},
            lesion=torch.from_numpy(np.stack(g.lesion)[:, None].astype(np.float32)),
            has_lesion_label=torch.tensor(g.label),
            case_ids=g.case,
            slice_index=g.k,
        )
    return out


def augment(batch: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """Same random left-right flip and intensity gain (0.9-1.1, clipped to [0,1]) for every tensor
    of one sample; masks (detected as exactly binary) only get the flip."""
    n = batch[0].shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    gain = 0.9 + 0.2 * torch.rand(n, generator=generator)
    out = []
    for t in batch:
        t = torch.where(flip[:, None, None, None], t.flip(-1), t)
        is_mask = bool(((t == 0) | (t == 1)).all())
        if not is_mask:
            t = (t * gain[:, None, None, None].to(t.dtype)).clamp(0.0, 1.0)
        out.append(t)
    return out
