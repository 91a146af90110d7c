"""Score rated image sets and 2AFC pair sets with registered metrics.

Rated set CSV (one row per rated image)::

    fake,real,source,score[,mask][,<group columns>...]

``fake`` (synthesized image), ``real`` (reference of the target modality), ``source`` (the
source-modality image the fake was made from; may be left empty unless a metric uses it, e.g.
K-CROSS), ``score`` (the human rating, higher = better). Every other column except ``mask`` is a
group/key column kept as text.

Pair set CSV (one row per 2AFC judgement)::

    reference,a,b,better[,source][,mask][,rule]

``better`` is ``a`` or ``b`` (the image the judges preferred) or the fraction of judges who
preferred ``a``; ``rule`` labels the kind of pair (accuracy is reported per rule and overall).

Paths are relative to the CSV's folder unless absolute. Images are 2-D slices read with
:func:`kcross_metric.data.io.load_image` (``.npy``, ``.png``/``.jpg``/``.tif``/``.bmp`` grayscale, or a 2-D
NIfTI, which is reoriented to the package's axis convention) and scored as ``(1, 1, H, W)``; every
image of a row must have the same shape. Intensities must lie in ``[0, data_range]``, or in
``[low, high]`` for ``data_range=(low, high)`` (``clip=True`` clips fake, real and source to the range
first); ``data_range`` is always given explicitly, never inferred.

How each metric is called (``metric_info(name).uses_source`` in :mod:`kcross_metric.registry`):

* metrics that take a source and a lesion mask (K-CROSS):
  ``metric(fake, real, source, mask)``, with ``source`` and ``mask`` (binary float, non-zero = 1)
  tensors when the row has them and ``None`` otherwise. K-CROSS then uses the given lesion mask in
  its tumour branch instead of its segmenter;
* every other metric (the baselines): ``metric(fake, real)`` on the whole, unmasked images; the
  ``source`` and ``mask`` columns are not used.

For pair sets, ``fake`` is ``a`` or ``b`` and ``real`` is ``reference``.
"""

from __future__ import annotations

import csv
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, FileFormatError, ShapeError

if TYPE_CHECKING:  # pragma: no cover - torch is imported only when scoring
    from .._util.checks import DataRange
from ..data.io import load_image
from .agreement import bootstrap_ci, two_afc_per_pair
from .tables import ScoreTable, TwoAFCRow

__all__ = [
    "RatedSet",
    "PairSet",
    "read_rated_csv",
    "read_pairs_csv",
    "score_rated_set",
    "score_pairs",
    "two_afc_rows",
]

RATED_REQUIRED = ("fake", "real", "score")
PAIRS_REQUIRED = ("reference", "a", "b", "better")
#: Rule label of pairs whose ``rule`` cell is empty (or that come from a CSV without the column).
UNLABELLED_RULE = "unlabelled"


class _ArrayCache:
    """Tiny LRU cache: pair sets reuse each reference image many times."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._d: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, path: Path) -> np.ndarray:
        key = str(path)
        if key in self._d:
            self._d.move_to_end(key)
            return self._d[key]
        arr = load_image(path)
        self._d[key] = arr
        if len(self._d) > self.size:
            self._d.popitem(last=False)
        return arr


def _read_csv(path: str | os.PathLike[str], required: Sequence[str]) -> tuple[Path, list[str], list[dict[str, str]]]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p} does not exist")
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = []
            for raw in reader:
                if None in raw:
                    raise FileFormatError(f"{p}:{reader.line_num}: more fields than header columns")
                row = {k.strip(): (v or "").strip() for k, v in raw.items()}
                if all(not v for v in row.values()):
                    continue
                row["__line__"] = str(reader.line_num)
                rows.append(row)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{p} is not a readable CSV file: {exc}") from exc
    if not header:
        raise FileFormatError(f"{p} is empty; expected a header with {', '.join(required)}")
    missing = [c for c in required if c not in header]
    if missing:
        raise FileFormatError(f"{p}: missing column(s) {', '.join(missing)}; header is {','.join(header)!r}")
    if not rows:
        raise FileFormatError(f"{p} has a header but no rows")
    return p, header, rows


def _resolve(base: Path, value: str, where: str, column: str) -> Path:
    if not value:
        raise FileFormatError(f"{where}: empty {column} path")
    q = Path(value).expanduser()
    q = q if q.is_absolute() else base / q
    if not q.is_file():
        raise FileNotFoundError(f"{where}: {column} image {q} does not exist")
    return q


@dataclass(frozen=True)
class RatedSet:
    """A parsed rated-set CSV: image paths per item, ratings and key columns."""

    fake: list[Path]
    real: list[Path]
    source: list[Path | None]
    mask: list[Path | None]
    ratings: np.ndarray
    keys: dict[str, np.ndarray]


@dataclass(frozen=True)
class PairSet:
    """A parsed pair-set CSV."""

    reference: list[Path]
    a: list[Path]
    b: list[Path]
    source: list[Path | None]
    mask: list[Path | None]
    better: np.ndarray  #: fraction of judges preferring ``a`` (1.0 = "a", 0.0 = "b")
    rule: np.ndarray


def read_rated_csv(path: str | os.PathLike[str]) -> RatedSet:
    """Parse and check a rated-set CSV (see the module docstring); every image must exist."""
    p, header, rows = _read_csv(path, RATED_REQUIRED)
    base = p.parent
    key_cols = [h for h in header if h not in (*RATED_REQUIRED, "source", "mask")]
    fake, real, source, mask, ratings = [], [], [], [], []
    for row in rows:
        where = f"{p}:{row['__line__']}"
        fake.append(_resolve(base, row["fake"], where, "fake"))
        real.append(_resolve(base, row["real"], where, "real"))
        source.append(_resolve(base, row["source"], where, "source") if row.get("source") else None)
        mask.append(_resolve(base, row["mask"], where, "mask") if row.get("mask") else None)
        try:
            score = float(row["score"])
        except ValueError:
            raise FileFormatError(f"{where}: score must be a number, got {row['score']!r}") from None
        if not np.isfinite(score):
            raise FileFormatError(f"{where}: score {row['score']!r} is not finite")
        ratings.append(score)
    keys = {c: np.array([row.get(c, "") for row in rows], dtype=object) for c in key_cols}
    return RatedSet(fake, real, source, mask, np.asarray(ratings, dtype=np.float64), keys)


def read_pairs_csv(path: str | os.PathLike[str]) -> PairSet:
    """Parse and check a pair-set CSV (see the module docstring); every image must exist."""
    p, header, rows = _read_csv(path, PAIRS_REQUIRED)
    base = p.parent
    ref, a, b, source, mask, better, rule = [], [], [], [], [], [], []
    for row in rows:
        where = f"{p}:{row['__line__']}"
        ref.append(_resolve(base, row["reference"], where, "reference"))
        a.append(_resolve(base, row["a"], where, "a"))
        b.append(_resolve(base, row["b"], where, "b"))
        source.append(_resolve(base, row["source"], where, "source") if row.get("source") else None)
        mask.append(_resolve(base, row["mask"], where, "mask") if row.get("mask") else None)
        val = row["better"].strip().lower()
        if val in ("a", "b"):
            better.append(1.0 if val == "a" else 0.0)
        else:
            try:
                frac = float(val)
            except ValueError:
                raise FileFormatError(f"{where}: better must be 'a', 'b' or a fraction in [0, 1], got {row['better']!r}") from None
            if not 0.0 <= frac <= 1.0:
                raise FileFormatError(f"{where}: better fraction {frac} outside [0, 1]")
            better.append(frac)
        rule.append(row.get("rule") or UNLABELLED_RULE)
    return PairSet(ref, a, b, source, mask, np.asarray(better), np.array(rule, dtype=object))


class _Scorer:
    """One metric module plus the tensor plumbing (torch imported only here)."""

    def __init__(
        self, name: str, *, data_range: DataRange, device: str, clip: bool, kwargs: Mapping[str, Any] | None = None
    ) -> None:
        import torch

        from .._util.checks import check_data_range, check_device, intensity_range
        from ..registry import create_metric, metric_info

        self.torch = torch
        self.name = name
        self.info = metric_info(name)
        self.data_range = check_data_range(data_range)
        self.range = intensity_range(self.data_range)
        self.clip = clip
        self.device = check_device(device)
        try:
            module = create_metric(name, data_range=self.data_range, **dict(kwargs or {}))
        except ImportError as exc:
            raise ConfigError(f"metric {name!r} is registered but cannot be imported: {exc}") from exc
        if hasattr(module, "to"):
            module = module.to(self.device)
        if hasattr(module, "eval"):
            module.eval()
        self.module = module

    def _tensor(self, arr: np.ndarray) -> Any:
        if self.clip:
            arr = np.clip(arr, self.range.low, self.range.high)
        return self.torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None, None].to(self.device)

    def __call__(self, x: np.ndarray, y: np.ndarray, source: np.ndarray | None, mask: np.ndarray | None, where: str) -> float:
        if x.shape != y.shape:
            raise ShapeError(f"{where}: images of shapes {x.shape} and {y.shape} differ; they must share one grid")
        for arr, what in ((source, "source"), (mask, "mask")):
            if arr is not None and arr.shape != x.shape:
                raise ShapeError(f"{where}: {what} shape {arr.shape} differs from image shape {x.shape}")
        args = [self._tensor(x), self._tensor(y)]
        if self.info.uses_source:
            args.append(self._tensor(source) if source is not None else None)
            args.append(
                self.torch.from_numpy((mask != 0).astype(np.float32))[None, None].to(self.device)
                if mask is not None
                else None
            )
        with self.torch.no_grad():
            out = self.module(*args)
        if not isinstance(out, self.torch.Tensor):
            out = getattr(out, "score", out)
        return float(self.torch.as_tensor(out).reshape(-1)[0])


def _scorers(
    metrics: Sequence[str],
    *,
    data_range: DataRange,
    clip: bool,
    device: str,
    metric_kwargs: Mapping[str, Mapping[str, Any]] | None,
) -> list[_Scorer]:
    if not metrics:
        raise ConfigError("no metrics given")
    extra = {k.lower(): v for k, v in (metric_kwargs or {}).items()}
    unused = sorted(set(extra) - {m.lower() for m in metrics})
    if unused:
        raise ConfigError(f"metric_kwargs given for {', '.join(unused)}, which are not among the metrics {list(metrics)}")
    return [
        _Scorer(m, data_range=data_range, device=device, clip=clip, kwargs=extra.get(m.lower())) for m in metrics
    ]


def score_rated_set(
    rated: RatedSet | str | os.PathLike[str],
    metrics: Sequence[str],
    *,
    data_range: DataRange,
    clip: bool = False,
    device: str = "cpu",
    metric_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
) -> ScoreTable:
    """Compute each metric for every (fake, real[, source][, mask]) row; returns a :class:`ScoreTable`.

    ``metric_kwargs`` maps a metric name to extra arguments of ``create_metric``, e.g.
    ``{"kcross": {"weights": "kcross.safetensors"}}``. See the module docstring for how each metric
    is called.
    """
    rs = rated if isinstance(rated, RatedSet) else read_rated_csv(rated)
    scorers = _scorers(metrics, data_range=data_range, clip=clip, device=device, metric_kwargs=metric_kwargs)
    cache = _ArrayCache()
    values: dict[str, list[float]] = {m: [] for m in metrics}
    for i in range(len(rs.fake)):
        where = f"row {i + 1} ({rs.fake[i].name})"
        x, y = cache.get(rs.fake[i]), cache.get(rs.real[i])
        src_path, msk_path = rs.source[i], rs.mask[i]
        src = cache.get(src_path) if src_path is not None else None
        msk = cache.get(msk_path) if msk_path is not None else None
        for m, sc in zip(metrics, scorers):
            values[m].append(sc(x, y, src, msk, where))
    return ScoreTable(
        keys=dict(rs.keys),
        ratings=rs.ratings,
        metrics={m: np.asarray(v, dtype=np.float64) for m, v in values.items()},
    )


def score_pairs(
    pairs: PairSet | str | os.PathLike[str],
    metrics: Sequence[str],
    *,
    data_range: DataRange,
    clip: bool = False,
    device: str = "cpu",
    metric_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[PairSet, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Metric values of ``a`` and ``b`` against the reference for every pair, per metric.

    ``metric_kwargs`` as in :func:`score_rated_set`; source and mask go to metrics that take them.
    """
    ps = pairs if isinstance(pairs, PairSet) else read_pairs_csv(pairs)
    scorers = _scorers(metrics, data_range=data_range, clip=clip, device=device, metric_kwargs=metric_kwargs)
    cache = _ArrayCache()
    out: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in metrics}
    for i in range(len(ps.reference)):
        where = f"pair {i + 1} ({ps.a[i].name} vs {ps.b[i].name})"
        ref = cache.get(ps.reference[i])
        a, b = cache.get(ps.a[i]), cache.get(ps.b[i])
        src_path, msk_path = ps.source[i], ps.mask[i]
        src = cache.get(src_path) if src_path is not None else None
        msk = cache.get(msk_path) if msk_path is not None else None
        for m, sc in zip(metrics, scorers):
            out[m][0].append(sc(a, ref, src, msk, where))
            out[m][1].append(sc(b, ref, src, msk, where))
    return ps, {m: (np.asarray(va), np.asarray(vb)) for m, (va, vb) in out.items()}


def two_afc_rows(
    pairs: PairSet,
    scores: dict[str, tuple[np.ndarray, np.ndarray]],
    directions: dict[str, bool],
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> list[TwoAFCRow]:
    """2AFC accuracy with a bootstrap CI per rule (sorted) and over all pairs (``rule="all"``).

    Per-rule rows are left out when every pair is unlabelled (the overall row says it all).
    """
    rules = sorted(set(pairs.rule.tolist()))
    groups = [] if rules == [UNLABELLED_RULE] else [(r, pairs.rule == r) for r in rules]
    groups.append(("all", np.ones(pairs.rule.shape, dtype=bool)))
    rows = []
    for rule, sel in groups:
        for m, (va, vb) in scores.items():
            credit = two_afc_per_pair(va[sel], vb[sel], pairs.better[sel], higher_is_better=directions[m])
            if n_boot:
                ci = bootstrap_ci(np.mean, credit, n_boot=n_boot, alpha=alpha, seed=seed)
                lo, hi = ci.low, ci.high
            else:
                lo = hi = float("nan")
            rows.append(TwoAFCRow(rule, m, int(sel.sum()), float(credit.mean()), lo, hi))
    return rows
