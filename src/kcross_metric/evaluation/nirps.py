"""Readers for the NIRPS radiologist scores (K-CROSS paper, Sec. IV).

Three layouts are read, all into a :class:`~kcross_metric.evaluation.tables.ScoreTable` whose key
columns are ``dataset``, ``target``, ``model``, ``epoch``, ``slice_id`` (all strings; model names
lower-cased, so the original ``Munit``/``Unit`` folders match the CSV's ``munit``/``unit``), whose
rating is the radiologist score (levels 0.0..0.9, higher is better) and whose metrics are the
numeric score columns/files (``mae``, ``psnr``, ``ssim``, and anything else present).

1. **Published CSV** (``nirps_scores.csv``): header
   ``dataset,target,model,epoch,slice_id,artificial,<metric>...``; ``artificial`` is the rating.
   Every further column is a metric and must be numeric in every row.
2. **Original per-item folder tree** of the authors' prototype:
   ``<root>/<dataset>/<target>/<model>/epoch_<n>/<slice_id>/<name>.txt``, one number per file
   (``artificial.txt`` = rating, ``mae.txt``, ``psnr.txt``, ``ssim.txt``, ``human.txt``, ...).
   The prototype *appended* a line every time a value was saved (the rating tool re-saved on every
   key press), so the **last** non-empty line of a file is its value; every line must still be a
   number. Folders named ``gt`` (ground truth images) and non-``.txt`` files are ignored.
3. **Pre-fill list** (``nirps_dataset_human.txt``): lines ``<score>, ./nirps_dataset/<dataset>/
   <target>/<model>/epoch_<n>/<slice_id>`` with the L2-based score the rating tool showed the
   radiologists before they adjusted it. :func:`attach_prefill` adds it as metric ``prefill``.
   The file lists some items twice (identical lines); conflicting duplicates are an error.

Malformed input raises :class:`~kcross_metric.errors.FileFormatError` naming the file and line.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, FileFormatError
from .tables import ScoreTable

__all__ = [
    "KEY_COLUMNS",
    "NIRPS_METRICS",
    "PAPER_TABLE_II",
    "default_scores_path",
    "load_nirps_scores",
    "load_nirps_csv",
    "load_nirps_tree",
    "load_nirps_prefill",
    "attach_prefill",
]

KEY_COLUMNS: tuple[str, ...] = ("dataset", "target", "model", "epoch", "slice_id")
#: Metric columns of the published scores file.
NIRPS_METRICS: tuple[str, ...] = ("mae", "psnr", "ssim")
RATING_COLUMN = "artificial"

#: Table II of the K-CROSS paper for the metrics whose values are published, keyed by
#: ``(metric, model, dataset)``. Reported as "inconsistency" with the paper's Algorithm 4.
PAPER_TABLE_II: dict[tuple[str, str, str], float] = {
    ("mae", "cyclegan", "ixi"): 0.3127, ("mae", "cyclegan", "brats2021"): 0.3335,
    ("mae", "munit", "ixi"): 0.1807, ("mae", "munit", "brats2021"): 0.2368,
    ("mae", "unit", "ixi"): 0.2462, ("mae", "unit", "brats2021"): 0.2462,
    ("psnr", "cyclegan", "ixi"): 0.3387, ("psnr", "cyclegan", "brats2021"): 0.2060,
    ("psnr", "munit", "ixi"): 0.1832, ("psnr", "munit", "brats2021"): 0.2515,
    ("psnr", "unit", "ixi"): 0.2387, ("psnr", "unit", "brats2021"): 0.2585,
    ("ssim", "cyclegan", "ixi"): 0.3333, ("ssim", "cyclegan", "brats2021"): 0.1998,
    ("ssim", "munit", "ixi"): 0.1957, ("ssim", "munit", "brats2021"): 0.2437,
    ("ssim", "unit", "ixi"): 0.2523, ("ssim", "unit", "brats2021"): 0.2645,
}

_EPOCH_DIR = re.compile(r"^epoch_(\d+)$")


def default_scores_path() -> Path | None:
    """``$KCROSS_SHARED_DIR/data/nirps/nirps_scores.csv`` if present (see ``kcross_metric._util.shared_data``)."""
    from .._util.shared_data import shared_path

    return shared_path("data", "nirps", "nirps_scores.csv")


def _check_max_epoch(max_epoch: int | None) -> int | None:
    if max_epoch is None:
        return None
    if isinstance(max_epoch, bool) or not isinstance(max_epoch, (int, np.integer)) or max_epoch < 1:
        raise ConfigError(f"max_epoch must be a positive integer or None, got {max_epoch!r}")
    return int(max_epoch)


def _check_rating(value: float, where: str) -> float:
    if not (0.0 <= value <= 1.0):
        raise FileFormatError(f"{where}: rating {value} outside [0, 1] (radiologist levels are 0.0..0.9)")
    return value


def _parse_float(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FileFormatError(f"{where}: expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise FileFormatError(f"{where}: value {text!r} is not finite")
    return value


def _parse_epoch(text: str, where: str) -> int:
    try:
        epoch = int(text)
    except ValueError:
        raise FileFormatError(f"{where}: epoch must be an integer, got {text!r}") from None
    if epoch < 1:
        raise FileFormatError(f"{where}: epoch must be >= 1, got {epoch}")
    return epoch


def _build(
    keys: list[tuple[str, str, str, int, str]],
    ratings: list[float],
    metrics: dict[str, list[float]],
    source: str,
) -> ScoreTable:
    if not keys:
        raise FileFormatError(f"{source}: no NIRPS items found (after the epoch filter)")
    seen: set[tuple[str, str, str, int, str]] = set()
    for k in keys:
        if k in seen:
            raise FileFormatError(f"{source}: item {'/'.join(map(str, k))} appears more than once")
        seen.add(k)
    cols = list(zip(*keys))
    return ScoreTable(
        keys={name: np.array([str(x) for x in col], dtype=object) for name, col in zip(KEY_COLUMNS, cols)},
        ratings=np.asarray(ratings, dtype=np.float64),
        metrics={m: np.asarray(v, dtype=np.float64) for m, v in metrics.items()},
    )


def load_nirps_csv(path: str | os.PathLike[str], max_epoch: int | None = 40) -> ScoreTable:
    """Read the published NIRPS scores CSV (layout 1 of the module docstring), rows in file order.

    Args:
        path: the CSV file.
        max_epoch: keep epochs ``1..max_epoch`` (the paper uses 40 of the 50 published); ``None``
            keeps all.
    """
    max_epoch = _check_max_epoch(max_epoch)
    p = Path(path)
    try:
        fh = open(p, newline="", encoding="utf-8")
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise FileFormatError(f"cannot read {p}: {exc}") from exc
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise FileFormatError(f"{p} is empty; expected a header {','.join(KEY_COLUMNS)},{RATING_COLUMN},...") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise FileFormatError(f"{p} is not a readable CSV file: {exc}") from exc
        header = [h.strip() for h in header]
        missing = [c for c in (*KEY_COLUMNS, RATING_COLUMN) if c not in header]
        if missing:
            raise FileFormatError(
                f"{p}: missing column(s) {', '.join(missing)}; header is {','.join(header)!r}"
            )
        if len(set(header)) != len(header):
            raise FileFormatError(f"{p}: duplicate column names in header {','.join(header)!r}")
        pos = {name: i for i, name in enumerate(header)}
        metric_names = [h for h in header if h not in KEY_COLUMNS and h != RATING_COLUMN]
        keys: list[tuple[str, str, str, int, str]] = []
        ratings: list[float] = []
        metrics: dict[str, list[float]] = {m: [] for m in metric_names}
        try:
            for row in reader:
                where = f"{p}:{reader.line_num}"
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise FileFormatError(f"{where}: {len(row)} fields, expected {len(header)}")
                epoch = _parse_epoch(row[pos["epoch"]].strip(), where)
                if max_epoch is not None and epoch > max_epoch:
                    continue
                key_vals = [row[pos[c]].strip() for c in KEY_COLUMNS]
                if any(not v for v in key_vals):
                    raise FileFormatError(f"{where}: empty key field in {key_vals}")
                keys.append((key_vals[0].lower(), key_vals[1].lower(), key_vals[2].lower(), epoch, key_vals[4]))
                ratings.append(_check_rating(_parse_float(row[pos[RATING_COLUMN]].strip(), where), where))
                for m in metric_names:
                    metrics[m].append(_parse_float(row[pos[m]].strip(), f"{where} column {m}"))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise FileFormatError(f"{p} is not a readable CSV file: {exc}") from exc
    return _build(keys, ratings, metrics, str(p))


def _read_value_file(path: Path) -> float:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"cannot read {path}: {exc}") from exc
    lines = [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if not lines:
        raise FileFormatError(f"{path} is empty; expected one number per line")
    value = math.nan
    for lineno, ln in lines:
        value = _parse_float(ln, f"{path}:{lineno}")
    return value  # the last line wins: the prototype appended on every save


def load_nirps_tree(
    root: str | os.PathLike[str],
    max_epoch: int | None = 40,
    *,
    rating: str = RATING_COLUMN,
    metrics: Sequence[str] | None = None,
) -> ScoreTable:
    """Read the prototype's per-item folder tree (layout 2 of the module docstring).

    Args:
        root: the ``nirps_dataset`` folder holding ``<dataset>/<target>/<model>/epoch_<n>/<slice_id>/``.
        max_epoch: keep epochs ``1..max_epoch``; ``None`` keeps all.
        rating: stem of the rating file in each item folder (``artificial`` = radiologist score;
            ``human`` would use the pre-fill instead).
        metrics: metric file stems to read; ``None`` = every stem present in *all* item folders
            (besides the rating). A requested metric missing from an item folder is an error.

    Items are ordered by dataset, target, model, epoch (numerically), slice id.
    """
    max_epoch = _check_max_epoch(max_epoch)
    base = Path(root)
    if not base.is_dir():
        if base.exists():
            raise FileFormatError(f"{base} is not a folder; expected <root>/<dataset>/<target>/<model>/epoch_<n>/<slice_id>/")
        raise FileNotFoundError(f"NIRPS folder {base} does not exist")
    items: list[tuple[tuple[str, str, str, int, str], Path]] = []

    def subdirs(p: Path) -> list[Path]:
        return sorted(c for c in p.iterdir() if c.is_dir() and not c.name.startswith("."))

    for ds in subdirs(base):
        for tgt in subdirs(ds):
            for model in subdirs(tgt):
                if model.name.lower() == "gt":
                    continue
                for ep in subdirs(model):
                    m = _EPOCH_DIR.match(ep.name)
                    if m is None:
                        raise FileFormatError(f"{ep}: expected a folder named epoch_<n> under {model}")
                    epoch = int(m.group(1))
                    if epoch < 1:
                        raise FileFormatError(f"{ep}: epoch must be >= 1")
                    if max_epoch is not None and epoch > max_epoch:
                        continue
                    for item in subdirs(ep):
                        key = (ds.name.lower(), tgt.name.lower(), model.name.lower(), epoch, item.name)
                        items.append((key, item))
    if not items:
        raise FileFormatError(
            f"{base}: no item folders <dataset>/<target>/<model>/epoch_<n>/<slice_id>/ found (after the epoch filter)"
        )
    items.sort(key=lambda t: t[0])
    stems_per_item = [{f.stem for f in it.iterdir() if f.is_file() and f.suffix == ".txt"} for _, it in items]
    for (_, it), stems in zip(items, stems_per_item):
        if rating not in stems:
            raise FileFormatError(f"{it}: no {rating}.txt (the rating file) in this item folder")
    if metrics is None:
        common = set.intersection(*stems_per_item) - {rating}
        metric_names = [m for m in NIRPS_METRICS if m in common] + sorted(common - set(NIRPS_METRICS))
    else:
        metric_names = list(metrics)
        for (_, it), stems in zip(items, stems_per_item):
            absent = [m for m in metric_names if m not in stems]
            if absent:
                raise FileFormatError(f"{it}: missing metric file(s) {', '.join(a + '.txt' for a in absent)}")
    keys = [k for k, _ in items]
    ratings = [_check_rating(_read_value_file(it / f"{rating}.txt"), str(it / f"{rating}.txt")) for _, it in items]
    values = {m: [_read_value_file(it / f"{m}.txt") for _, it in items] for m in metric_names}
    return _build(keys, ratings, values, str(base))


def load_nirps_scores(path: str | os.PathLike[str] | None = None, max_epoch: int | None = 40) -> ScoreTable:
    """Load NIRPS scores from the published CSV or from the prototype's folder tree.

    Args:
        path: a CSV file (layout 1) or a folder (layout 2); ``None`` = the shared copy of
            ``nirps_scores.csv`` (:func:`default_scores_path`).
        max_epoch: keep epochs ``1..max_epoch`` (default 40, as in the paper); ``None`` keeps all.

    Returns:
        A :class:`ScoreTable` with key columns :data:`KEY_COLUMNS`, the radiologist score as
        ``ratings`` and one metric column per score (``mae``, ``psnr``, ``ssim``, ...).

    Raises:
        FileNotFoundError: no such file/folder (or no shared copy when ``path`` is ``None``).
        FileFormatError: malformed content. ConfigError: bad ``max_epoch``.
    """
    if path is None:
        found = default_scores_path()
        if found is None:
            raise FileNotFoundError(
                "NIRPS scores not found: pass the path explicitly, or set KCROSS_SHARED_DIR to the folder "
                "holding data/nirps/nirps_scores.csv"
            )
        path = found
    p = Path(path)
    if p.is_dir():
        return load_nirps_tree(p, max_epoch)
    if not p.exists():
        raise FileNotFoundError(f"NIRPS scores file {p} does not exist")
    return load_nirps_csv(p, max_epoch)


def load_nirps_prefill(path: str | os.PathLike[str]) -> dict[tuple[str, str, str, str, str], float]:
    """Read the pre-fill list (layout 3) into ``{(dataset, target, model, epoch, slice_id): score}``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"cannot read {p}: {exc}") from exc
    out: dict[tuple[str, str, str, str, str], float] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{p}:{lineno}"
        score_txt, sep, item = line.partition(",")
        if not sep:
            raise FileFormatError(f"{where}: expected '<score>, <item path>', got {line!r}")
        score = _parse_float(score_txt.strip(), where)
        parts = [q for q in item.strip().split("/") if q not in ("", ".")]
        if len(parts) < 5:
            raise FileFormatError(f"{where}: item path {item.strip()!r} is not <dataset>/<target>/<model>/epoch_<n>/<slice_id>")
        ds, tgt, model, ep, slice_id = parts[-5:]
        m = _EPOCH_DIR.match(ep)
        if m is None:
            raise FileFormatError(f"{where}: expected an epoch_<n> folder in {item.strip()!r}")
        key = (ds.lower(), tgt.lower(), model.lower(), str(int(m.group(1))), slice_id)
        if key in out and out[key] != score:
            raise FileFormatError(f"{where}: item {'/'.join(key)} listed again with a different score")
        out[key] = score
    if not out:
        raise FileFormatError(f"{p} has no entries")
    return out


def attach_prefill(
    table: ScoreTable, prefill: dict[tuple[str, str, str, str, str], float], name: str = "prefill"
) -> ScoreTable:
    """Add the pre-fill score as metric column ``name``; every item must have one."""
    cols = [table.keys[c] for c in KEY_COLUMNS]
    values = []
    for key in zip(*cols):
        k = tuple(str(x) for x in key)
        if k not in prefill:
            raise FileFormatError(f"no pre-fill score for item {'/'.join(k)}")
        values.append(prefill[k])
    return table.with_metric(name, np.asarray(values, dtype=np.float64))

