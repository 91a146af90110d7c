"""Folder mode of ``kcross-score``: pair NIfTI files by name, score every pair, resumable CSV.

    kcross-score FAKE_DIR REAL_DIR [--source-dir DIR] [--mask-dir DIR] --out scores.csv
                 [--metrics kcross,ssim,psnr,...] [--per-slice] [--report report.html]

* Files are paired by name: ``FAKE_DIR/case1.nii.gz`` with ``REAL_DIR/case1.nii.gz`` (the suffix
  may differ: ``.nii``, ``.nii.gz``, and with SimpleITK ``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``).
  Any file without a partner is an error that lists them all.
* Every pair is loaded and normalized like a single ``kcross-score`` call, scored with K-CROSS and
  with the registry baselines named in ``--metrics`` on the same normalized volumes in [0, 1]:
  metrics whose :class:`~kcross_metric.registry.MetricInfo` ``supports_3d`` (MAE, PSNR, SSIM,
  MS-SSIM) on the whole 3-D volume, the others (NLPD, GMSD, LPIPS, DISTS) on every axial slice
  that K-CROSS scored, averaged. A volume too small for a metric's 3-D window gets the slice mean
  too, named in the row's ``slicewise`` column.
* One CSV row per pair, appended and flushed as soon as the pair is done. Re-running the same
  command resumes: pairs already in the CSV are skipped. A CSV made with other ``--metrics``,
  other weights, or with/without ``--source-dir``/``--mask-dir`` is refused; ``--overwrite``
  starts a fresh file.
* With ``--report``, each pair's report section (worst slices' maps, branch values) is kept beside
  the CSV in ``.<csv name>.report/``, so a rerun (e.g. to a new report path) rebuilds the report
  without scoring again. An existing report file is never replaced without ``--overwrite``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..data.io import SITK_SUFFIXES
from ..errors import ConfigError, EmptyReferenceError, InputError

__all__ = [
    "BaselineSet",
    "BaselineValues",
    "ResumableCsv",
    "VolumePair",
    "csv_columns",
    "list_volumes",
    "pair_files",
    "parse_metrics",
    "report_parts_dir",
    "run_folder",
    "slice_csv_columns",
    "slice_csv_path",
    "volume_key",
]

# NIfTI (longest suffix first), then the single-file formats read through SimpleITK (DICOM
# folders are not paired)
_VOLUME_SUFFIXES = (".nii.gz", ".nii", *SITK_SUFFIXES)
KCROSS_COLUMNS = ("kcross", "kcross_complex", "kcross_tumor", "kcross_structure", "kcross_natural")
_HEAD_COLUMNS = ("name", "fake", "real", "source", "mask", *KCROSS_COLUMNS, "slices_scored", "slices_total", "slices_with_lesion")
_TAIL_COLUMNS = ("slicewise", "weights_sha256", "kcross_metric")


@dataclass(frozen=True)
class VolumePair:
    """One case: the file name key and its files (``source``/``mask`` ``None`` when not used)."""

    name: str
    fake: Path
    real: Path
    source: Path | None = None
    mask: Path | None = None


def volume_key(path: Path) -> str | None:
    """``case1.nii.gz`` / ``case1.nii`` / ``case1.mha`` / ``case1.nrrd`` ... -> ``"case1"``; ``None``
    for other files (a ``.mhd``/``.nhdr`` header's ``.raw`` data file is not a volume of its own)."""
    lower = path.name.lower()
    for suffix in _VOLUME_SUFFIXES:
        if lower.endswith(suffix) and len(path.name) > len(suffix):
            return path.name[: -len(suffix)]
    return None


def list_volumes(directory: Path, what: str) -> dict[str, Path]:
    """Name key -> volume file in ``directory`` (not recursive; hidden files are ignored)."""
    d = Path(directory)
    if not d.exists():
        raise FileNotFoundError(f"{what} directory not found: {d}")
    if not d.is_dir():
        raise InputError(f"{what} must be a directory, got the file {d}")
    found: dict[str, Path] = {}
    for p in sorted(d.iterdir()):
        key = volume_key(p)
        if key is None or p.name.startswith(".") or p.is_dir():
            continue
        if key in found:
            raise InputError(f"{what} directory {d} holds two files named {key!r}: {found[key].name} and {p.name}")
        found[key] = p
    return found


def _listing(names: Iterable[str], limit: int = 20) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def pair_files(
    fake_dir: Path, real_dir: Path, source_dir: Path | None = None, mask_dir: Path | None = None
) -> list[VolumePair]:
    """Pair the volume files of the folders by name, sorted by name.

    Raises:
        InputError: a folder holds no NIfTI file, or some files have no partner (all of them are
            listed, in both directions; a missing source or mask is listed too).
    """
    fakes = list_volumes(fake_dir, "FAKE_DIR")
    reals = list_volumes(real_dir, "REAL_DIR")
    if not fakes:
        raise InputError(f"FAKE_DIR {fake_dir} holds no volume files ({', '.join(_VOLUME_SUFFIXES)})")
    if not reals:
        raise InputError(f"REAL_DIR {real_dir} holds no volume files ({', '.join(_VOLUME_SUFFIXES)})")
    sources = list_volumes(source_dir, "--source-dir") if source_dir is not None else None
    masks = list_volumes(mask_dir, "--mask-dir") if mask_dir is not None else None
    problems = []
    only_fake, only_real = set(fakes) - set(reals), set(reals) - set(fakes)
    if only_fake:
        problems.append(
            f"{len(only_fake)} file(s) in FAKE_DIR {fake_dir} have no match in REAL_DIR: {_listing(fakes[n].name for n in only_fake)}"
        )
    if only_real:
        problems.append(
            f"{len(only_real)} file(s) in REAL_DIR {real_dir} have no match in FAKE_DIR: {_listing(reals[n].name for n in only_real)}"
        )
    names = sorted(set(fakes) & set(reals))
    for label, folder, files in (("--source-dir", source_dir, sources), ("--mask-dir", mask_dir, masks)):
        if files is not None:
            missing = [n for n in names if n not in files]
            if missing:
                problems.append(f"{len(missing)} pair(s) have no file in {label} {folder}: {_listing(fakes[n].name for n in missing)}")
    if problems:
        raise InputError(
            "cannot pair the input folders by file name (NAME.nii.gz, NAME.nii, NAME.mha, ... in each folder): " + "; ".join(problems)
        )
    return [
        VolumePair(
            n, fakes[n], reals[n], sources[n] if sources is not None else None, masks[n] if masks is not None else None
        )
        for n in names
    ]


def parse_metrics(text: str | None) -> list[str]:
    """``"kcross,ssim,psnr"`` -> registry baselines to compute besides K-CROSS (``["ssim", "psnr"]``)."""
    from ..registry import metric_info

    if text is None:
        return []
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        metric_info(name)  # ConfigError listing the available metrics for an unknown name
        if name != "kcross" and name not in names:
            names.append(name)
    return names


def csv_columns(metrics: Sequence[str]) -> list[str]:
    """Columns of the per-volume CSV for the given baselines."""
    return [*_HEAD_COLUMNS, *metrics, *_TAIL_COLUMNS]


def slice_csv_columns(metrics: Sequence[str]) -> list[str]:
    """Columns of the per-slice CSV: K-CROSS per slice and the baselines computed per slice (2-D)."""
    from ..registry import metric_info

    return ["name", "slice", "scored", "has_lesion", *KCROSS_COLUMNS, *(m for m in metrics if not metric_info(m).supports_3d)]


def slice_csv_path(out: Path) -> Path:
    """``scores.csv`` -> ``scores_slices.csv`` (beside it)."""
    return out.with_name(f"{out.stem}_slices{out.suffix or '.csv'}")


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return "" if math.isnan(value) else format(value, ".8g")
    return str(value)


class ResumableCsv:
    """A CSV written one row at a time (flushed, fsynced), which a rerun of the same command resumes.

    Args:
        path: the file.
        columns: the header this run writes; an existing file resumes if it has the same set of
            columns (in any order), otherwise :meth:`load` raises :class:`ConfigError`.
        overwrite: ignore an existing file and start a fresh one.
        describe: turns a header into the settings that made it, for the error message.
    """

    def __init__(
        self,
        path: Path,
        columns: Sequence[str],
        *,
        overwrite: bool,
        describe: Callable[[Sequence[str]], str] = lambda cols: "columns " + ", ".join(cols),
    ) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        self.overwrite = overwrite
        self.describe = describe
        self.rows: list[dict[str, str]] = []
        self._fh: Any = None
        self._writer: Any = None

    def load(self) -> list[dict[str, str]]:
        """Rows already in the file ([] when starting fresh). A partial last line (a row cut by an
        interruption) is dropped, so that pair is scored again."""
        from ..errors import OutputExistsError

        p = self.path
        if p.is_dir():
            raise OutputExistsError(f"{p} is a directory, expected a CSV file path")
        if self.overwrite or not p.exists():
            return []
        text = p.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
        reader = csv.DictReader(io.StringIO(text))
        header = list(reader.fieldnames or [])
        if not header:
            return []
        if set(header) != set(self.columns):
            raise ConfigError(
                f"{p} exists but was made with different settings ({self.describe(header)}) than this run "
                f"({self.describe(self.columns)}); pass --overwrite to start a fresh file, or choose another --out"
            )
        self.columns = header
        self.rows = [dict(r) for r in reader]
        return self.rows

    def start(self, keep: Callable[[Mapping[str, str]], bool] | None = None) -> None:
        """Write the header and the loaded rows ``keep`` accepts (atomically), then open for appending."""
        from ._common import atomic_write_text

        self.rows = [r for r in self.rows if keep is None or keep(r)]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue(), overwrite=True)
        self._fh = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - held until close()
        self._writer = csv.DictWriter(self._fh, fieldnames=self.columns, lineterminator="\n")

    def append(self, row: Mapping[str, Any], *, sync: bool = True) -> None:
        """Append one row (values formatted for CSV); ``sync`` flushes it to disk at once."""
        if self._writer is None:
            raise ConfigError("ResumableCsv.start() must be called before append()")
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ConfigError(f"row has columns {sorted(unknown)} not in {self.path}'s header")
        text_row = {k: _fmt(row.get(k)) for k in self.columns}
        self._writer.writerow(text_row)
        self.rows.append(text_row)
        if sync:
            self.flush()

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._writer = None


@dataclass
class BaselineValues:
    """What :class:`BaselineSet` computes for one pair.

    Attributes:
        volume: metric -> value of the volume.
        per_slice: metric -> one value per axial slice (NaN where not scored), for the metrics
            evaluated slice by slice.
        slicewise_fallback: 3-D-capable metrics that got the slice mean because the volume is too
            small for their 3-D window (e.g. 3-D SSIM needs 11 slices, 3-D MS-SSIM 161).
    """

    volume: dict[str, float]
    per_slice: dict[str, list[float]]
    slicewise_fallback: list[str]


class BaselineSet:
    """Registry baselines evaluated on normalized [0, 1] volumes.

    Metrics with ``MetricInfo.supports_3d`` get the whole ``(1,1,D,H,W)`` volume; the others get
    the axial slices K-CROSS scored, ``slice_batch_size`` at a time, and their mean is the volume
    value. A 3-D-capable metric whose window does not fit the volume (``ImageTooSmallError``, e.g.
    MS-SSIM needs 161 voxels along every axis, more than BraTS's 155 slices) falls back to the slice
    mean for that volume; :attr:`BaselineValues.slicewise_fallback` says so. Slice inputs
    ``(B,1,H,W)`` go to every metric as they are.
    """

    def __init__(self, names: Sequence[str], device: Any, slice_batch_size: int = 16) -> None:
        from ..registry import create_metric, metric_info

        self.slice_batch_size = int(slice_batch_size)
        self.items = [(n, metric_info(n), create_metric(n, data_range=1.0).to(device).eval()) for n in names]

    @property
    def names(self) -> list[str]:
        return [n for n, _, _ in self.items]

    def per_slice_names(self) -> list[str]:
        """Metrics always evaluated slice by slice (no 3-D support)."""
        return [n for n, info, _ in self.items if not info.supports_3d]

    def __call__(self, fake: Any, real: Any, used: Any = None) -> BaselineValues:
        """``fake``, ``real``: (1,1,D,H,W) or (B,1,H,W) in [0, 1]; ``used``: (D,) bool scored slices."""
        import torch

        from ..errors import ImageTooSmallError

        out = BaselineValues({}, {}, [])
        if not self.items:
            return out
        with torch.no_grad():
            if fake.dim() == 4:
                for name, _, module in self.items:
                    out.volume[name] = float(module(fake, real)[0])
                return out
            d = fake.shape[2]
            used_t = torch.ones(d, dtype=torch.bool) if used is None else torch.as_tensor(used).bool().cpu()
            idx = used_t.nonzero().squeeze(1).to(fake.device)
            fs = fake[0].transpose(0, 1)[idx]  # (N,1,H,W) scored axial slices
            rs = real[0].transpose(0, 1)[idx]
            step = self.slice_batch_size
            for name, info, module in self.items:
                if info.supports_3d:
                    try:
                        out.volume[name] = float(module(fake, real)[0])
                        continue
                    except ImageTooSmallError:
                        out.slicewise_fallback.append(name)
                vals = torch.cat([module(fs[i : i + step], rs[i : i + step]) for i in range(0, fs.shape[0], step)])
                out.volume[name] = float(vals.double().mean())
                if not info.supports_3d:
                    full = [float("nan")] * d
                    for j, v in zip(idx.tolist(), vals.tolist()):
                        full[j] = float(v)
                    out.per_slice[name] = full
        return out


def _metrics_of_header(columns: Sequence[str]) -> str:
    extra = [c for c in columns if c not in _HEAD_COLUMNS and c not in _TAIL_COLUMNS and c not in ("slice", "scored", "has_lesion")]
    return "--metrics " + ",".join(["kcross", *extra])


def _check_resume(rows: Sequence[Mapping[str, str]], path: Path, sha: str, pairs_use_source: bool, pairs_use_mask: bool) -> None:
    """Refuse to append to rows made with other weights or without/with sources or masks."""
    for r in rows:
        if r.get("weights_sha256", "") != sha:
            raise ConfigError(
                f"{path} holds rows made with other K-CROSS weights (sha256 {r.get('weights_sha256', '')[:12] or '?'}, "
                f"this run: {sha[:12]}); pass --overwrite to start a fresh file, or choose another --out"
            )
        for col, used, opt in (("source", pairs_use_source, "--source-dir"), ("mask", pairs_use_mask, "--mask-dir")):
            if bool(r.get(col, "")) != used:
                made = "with" if r.get(col, "") else "without"
                raise ConfigError(
                    f"{path} was made {made} {opt} and this run is {'with' if used else 'without'} it; "
                    "pass --overwrite to start a fresh file, or choose another --out"
                )


def report_parts_dir(csv_path: Path) -> Path:
    """Where the report sections of a folder run live: beside its CSV, kept after the report is
    written, so that a rerun rebuilds the report from them without scoring again."""
    return csv_path.parent / f".{csv_path.name}.report"


def _pair_hash(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8")).hexdigest()[:20]


def _fragment_path(parts: Path, name: str, worst_n: int) -> Path:
    # the section depends on the pair and on how many worst slices it shows
    return parts / f"{_pair_hash(name)}-w{worst_n}.html"


def _drop_fragments(parts: Path, name: str) -> None:
    """Remove every kept section of a pair (any ``--report-slices``): it is being scored again."""
    if parts.is_dir():
        for old in parts.glob(f"{_pair_hash(name)}-w*.html"):
            old.unlink(missing_ok=True)


def run_folder(args: Any) -> int:
    """Folder mode body (arguments already parsed and the device checked)."""
    import torch

    from ..core.branches import BRANCHES, FEATURE_BRANCHES
    from ..core.metric import KCross
    from ..report.html import (
        ReportEntry,
        render_report,
        volume_section,
        write_report,
    )
    from ._common import EXIT_OK, atomic_write_text, check_output_path, check_report_path, load_inputs

    if args.out is None:
        raise ConfigError("folder mode writes a CSV: pass --out scores.csv")
    for opt, value in (("--source", args.source), ("--mask", args.mask)):
        if value is not None:
            raise ConfigError(f"{opt} names one file; with folders use {opt}-dir DIR (files paired by name)")
    for opt, value in (("--json", args.json), ("--slices", args.slices)):
        if value:
            raise ConfigError(f"{opt} applies to single-file mode; in folder mode use --out CSV and --per-slice")
    report: Path | None = args.report
    check_output_path(args.out, overwrite=True)  # a folder that exists; the CSV itself is resumed
    if report is not None:
        check_report_path(report, args.overwrite, folder_mode=True)
    pairs = pair_files(args.fake, args.real, args.source_dir, args.mask_dir)
    names = parse_metrics(args.metrics)

    # pairs have their own references: no reference cache (its memory would buy nothing)
    metric = KCross(args.weights, slice_batch_size=args.slice_batch_size, reference_cache_mb=0).to(args.device)
    sha = str(metric.weights_info.get("weights_sha256") or "")
    baselines = BaselineSet(names, args.device, args.slice_batch_size)
    main_csv = ResumableCsv(args.out, csv_columns(names), overwrite=args.overwrite, describe=_metrics_of_header)
    rows = main_csv.load()
    _check_resume(rows, main_csv.path, sha, args.source_dir is not None, args.mask_dir is not None)
    done = {r["name"] for r in rows}

    slice_csv: ResumableCsv | None = None
    if args.per_slice:
        slice_csv = ResumableCsv(
            slice_csv_path(main_csv.path), slice_csv_columns(names), overwrite=args.overwrite, describe=_metrics_of_header
        )
        if rows and not slice_csv.path.exists():
            raise ConfigError(
                f"{main_csv.path} was made without --per-slice ({slice_csv.path} is missing); "
                "pass --overwrite to start fresh or drop --per-slice"
            )
        slice_csv.load()
        slice_csv.start(keep=lambda r: r["name"] in done)  # drops slices of a pair cut short
    main_csv.start()

    parts = report_parts_dir(main_csv.path)
    if (args.overwrite or not rows) and parts.exists():  # a fresh CSV: sections of an old one are stale
        shutil.rmtree(parts)
    if report is None:
        parts_or_none = None
    else:
        parts.mkdir(exist_ok=True)
        parts_or_none = parts
    need_explain = report is not None or slice_csv is not None
    worst_n = args.report_slices

    def score_pair(pair: VolumePair) -> tuple[dict[str, Any], Any]:
        try:
            inputs = load_inputs(pair.fake, pair.real, pair.source, pair.mask, resample=args.resample, device=args.device)
            with torch.no_grad():
                args_ = (inputs["fake"], inputs["real"], inputs.get("source"), inputs.get("mask"))
                res = metric.explain(*args_) if need_explain else metric.score(*args_)
        except EmptyReferenceError as exc:  # name the pair: the run stops at it
            raise EmptyReferenceError(f"pair {pair.name!r} ({pair.real}): {exc}",
                                      cli_message=f"pair {pair.name!r} ({pair.real}): {exc.cli_message}") from exc
        return inputs, res

    def write_fragment(pair: VolumePair, inputs: Mapping[str, Any], res: Any, values: Mapping[str, float]) -> None:
        if parts_or_none is None:
            return
        entry = ReportEntry(pair.name, res, inputs["fake"], inputs["real"], inputs.get("source"), dict(values))
        atomic_write_text(_fragment_path(parts_or_none, pair.name, worst_n), volume_section(entry, worst_n=worst_n),
                          overwrite=True)

    todo = [p for p in pairs if p.name not in done]
    warned: set[str] = set()
    try:
        # disable=None: tqdm draws only when stderr is a terminal, so logs and CI output stay clean
        with tqdm(total=len(pairs), initial=len(pairs) - len(todo), desc="kcross-score", unit="pair",
                  file=sys.stderr, dynamic_ncols=True, disable=None) as bar:
            for pair in todo:
                inputs, res = score_pair(pair)
                _drop_fragments(parts, pair.name)  # sections of an earlier scoring of this pair are stale
                used = res.slice_used[0]
                bvals = baselines(inputs["fake"], inputs["real"], used)
                values = bvals.volume
                for name in bvals.slicewise_fallback:
                    if name not in warned:
                        warned.add(name)
                        print(
                            f"kcross-score: warning: {pair.name}: too few voxels for 3-D {name}; using the mean "
                            "over scored axial slices for such volumes (CSV column 'slicewise')",
                            file=sys.stderr,
                        )
                if slice_csv is not None:
                    for k in range(int(used.numel())):
                        scored = bool(used[k])
                        srow: dict[str, Any] = {
                            "name": pair.name,
                            "slice": k,
                            "scored": scored,
                            "has_lesion": bool(res.has_lesion[0, k]),
                            "kcross": float(res.slice_scores[0, k]),
                        }
                        for b in BRANCHES:
                            srow[f"kcross_{b}"] = float(res.slice_branches[b][0, k])
                        srow.update({n: v[k] for n, v in bvals.per_slice.items()})
                        slice_csv.append(srow, sync=False)
                    slice_csv.flush()
                row: dict[str, Any] = {
                    "name": pair.name,
                    "fake": pair.fake,
                    "real": pair.real,
                    "source": pair.source or "",
                    "mask": pair.mask or "",
                    "kcross": float(res.score[0]),
                    **{f"kcross_{b}": float(res.branches[b][0]) for b in BRANCHES},
                    "slices_scored": int(used.sum()),
                    "slices_total": int(used.numel()),
                    "slices_with_lesion": int(res.has_lesion[0].sum()),
                    **values,
                    "slicewise": ",".join(bvals.slicewise_fallback),
                    "weights_sha256": sha,
                    "kcross_metric": res.version.get("kcross_metric", ""),
                }
                main_csv.append(row)  # the pair counts as done only once this row is on disk
                write_fragment(pair, inputs, res, values)
                bar.set_postfix_str(pair.name, refresh=False)
                bar.update(1)
    finally:
        main_csv.close()
        if slice_csv is not None:
            slice_csv.close()

    rebuilt = 0
    if report is not None and parts_or_none is not None:
        by_name = {r["name"]: r for r in main_csv.rows}
        sections, summary = [], []
        for pair in pairs:
            row_s = by_name[pair.name]
            values = {n: float(row_s[n]) if row_s.get(n, "") != "" else float("nan") for n in names}
            frag = _fragment_path(parts_or_none, pair.name, worst_n)
            if not frag.exists():  # scored by an earlier run without --report or other --report-slices
                inputs, res = score_pair(pair)
                write_fragment(pair, inputs, res, values)
                rebuilt += 1
            sections.append(frag.read_text(encoding="utf-8"))
            summary.append(
                {
                    "name": pair.name,
                    "kcross": row_s["kcross"],
                    **{b: row_s[f"kcross_{b}"] for b in FEATURE_BRANCHES},
                    "slices": row_s["slices_scored"],
                    "lesion slices": row_s["slices_with_lesion"],
                    **{n: row_s.get(n, "") for n in names},
                }
            )
            if row_s.get("slicewise"):
                summary[-1]["slice mean for"] = row_s["slicewise"]
        info = {
            "kcross_metric": metric.version.get("kcross_metric"),
            "weights": metric.version.get("weights"),
            "weights sha256": sha[:16],
            "pairs": len(pairs),
            "FAKE_DIR": args.fake,
            "REAL_DIR": args.real,
        }
        if names:
            info["baselines"] = ", ".join(
                f"{n} ({'3-D' if n not in baselines.per_slice_names() else 'mean of scored slices'})" for n in names
            )
        write_report(report, render_report(sections, title="K-CROSS report", summary=summary, info=info),
                     overwrite=args.overwrite)

    print(f"kcross-score: {len(todo)} pair(s) scored, {len(pairs) - len(todo)} already in {main_csv.path}; results in {main_csv.path}")
    if rebuilt:
        print(f"  {rebuilt} pair(s) re-scored for report sections not kept from earlier runs")
    if slice_csv is not None:
        print(f"  per-slice rows: {slice_csv.path}")
    if report is not None:
        print(f"  report: {report}")
    return EXIT_OK
