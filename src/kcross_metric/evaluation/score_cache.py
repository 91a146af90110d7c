"""Per-pair score cache of the 2AFC benchmarks: a re-run only scores the metrics or pairs that changed.

A cache file (``scores_<metric>.csv``) has the columns :data:`CACHE_COLUMNS`; a row holds the
scores of both sides of one pair for one output column of one metric, keyed by

* the pair id,
* a SHA-1 digest of the arrays the metric sees for the pair (:func:`tensors_digest`, e.g.
  reference, a, b and source), so a regenerated pair set is recomputed, never read from a stale row,
* the metric's settings (:func:`metric_settings`: class, parameters and a SHA-1 of its state dict,
  i.e. its weights; callers may append more, such as a slice stride),
* the output column (a metric may give several, e.g. the K-CROSS branches or the 2.5D views).

Scores are stored with full float precision (``repr``), so a table made from the cache is
identical to one computed afresh. Used by ``benchmarks/twoafc_table.py``
(:mod:`kcross_metric.evaluation.twoafc_table`) and ``benchmarks/volume25d_table.py``
(:mod:`kcross_metric.evaluation.volume_pairs`).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._util.files import atomic_write_text
from ..errors import ConfigError, FileFormatError

__all__ = [
    "CACHE_COLUMNS",
    "CacheKey",
    "ScorePair",
    "cached_scores",
    "metric_settings",
    "read_score_cache",
    "tensors_digest",
    "write_score_cache",
]

#: Columns of a score cache file, in order.
CACHE_COLUMNS: tuple[str, ...] = ("pair_id", "digest", "settings", "column", "score_a", "score_b")

#: (scores of side a, scores of side b) over pairs.
ScorePair = tuple[np.ndarray, np.ndarray]
#: (pair id, digest, settings, column) of one cache row.
CacheKey = tuple[str, str, str, str]


def tensors_digest(items: Iterable[tuple[str, torch.Tensor | None]]) -> str:
    """SHA-1 (hex) of named tensors: each name, then ``none`` or the shape and float32 bytes.

    The order of ``items`` is part of the digest; a missing tensor (``None``) differs from any array.
    """
    h = hashlib.sha1()
    for name, t in items:
        h.update(name.encode())
        if t is None:
            h.update(b"none")
            continue
        arr = np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)
        h.update(repr(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def metric_settings(module: nn.Module) -> str:
    """What determines a metric's scores: class, parameters (``extra_repr``) and a SHA-1 of the state dict."""
    h = hashlib.sha1()
    for key, value in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(np.ascontiguousarray(value.detach().cpu().numpy()).tobytes())
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}({module.extra_repr()}) state_sha1={h.hexdigest()[:16]}"


def read_score_cache(path: Path) -> dict[CacheKey, tuple[float, float]]:
    """The rows of a score cache file (empty when it does not exist).

    Raises:
        FileFormatError: the file has other columns than :data:`CACHE_COLUMNS` or an unreadable score.
    """
    if not path.is_file():
        return {}
    out: dict[CacheKey, tuple[float, float]] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != CACHE_COLUMNS:
            raise FileFormatError(f"{path} is not a score cache: columns {reader.fieldnames}, expected "
                                  f"{list(CACHE_COLUMNS)} (delete it to rebuild)")
        for row in reader:
            try:
                out[(row["pair_id"], row["digest"], row["settings"], row["column"])] = (
                    float(row["score_a"]), float(row["score_b"]))
            except ValueError as exc:
                raise FileFormatError(f"{path}: unreadable score in row {row}: {exc} (delete it to rebuild)") from exc
    return out


def write_score_cache(path: Path, rows: dict[CacheKey, tuple[float, float]]) -> None:
    """Write ``rows`` to ``path`` atomically (scores as ``repr``, i.e. full precision), creating its folder."""
    table = io.StringIO()
    w = csv.writer(table)
    w.writerow(CACHE_COLUMNS)
    for (pid, dig, settings, column), (sa, sb) in rows.items():
        w.writerow([pid, dig, settings, column, repr(sa), repr(sb)])
    atomic_write_text(path, table.getvalue(), overwrite=True, make_parents=True, newline="")


def cached_scores(
    cache_path: Path | None,
    pair_ids: Sequence[str],
    digests: Sequence[str],
    settings: str,
    columns: Sequence[str],
    compute: Callable[[np.ndarray], dict[str, ScorePair]],
) -> tuple[dict[str, ScorePair], int]:
    """Scores of ``columns`` for every pair, from ``cache_path`` where possible.

    ``compute(indices)`` must return, for each column, (scores_a, scores_b) of the pairs
    ``indices`` (int array, in that order). It is called once with the pairs that lack a cached
    row for any column (not at all when everything is cached); the cache is then rewritten
    atomically with the new rows added (rows of other settings or pairs are kept). With
    ``cache_path=None`` everything is computed and nothing is written.

    Returns:
        ({column: (scores_a, scores_b)} over all pairs in order, number of pairs computed).

    Raises:
        ConfigError: ``pair_ids`` and ``digests`` differ in length, or ``compute`` returned
            too few columns or scores.
    """
    if len(pair_ids) != len(digests):
        raise ConfigError(f"{len(pair_ids)} pair ids but {len(digests)} digests")
    rows = read_score_cache(cache_path) if cache_path is not None else {}
    keys = [[(pid, dig, settings, col) for col in columns] for pid, dig in zip(pair_ids, digests)]
    missing = np.array([i for i, ks in enumerate(keys) if any(k not in rows for k in ks)], dtype=np.int64)
    if missing.size:
        fresh = compute(missing)
        absent = [c for c in columns if c not in fresh]
        if absent:
            raise ConfigError(f"compute() returned no scores for columns {absent}")
        for col in columns:
            sa, sb = (np.asarray(v, dtype=np.float64).reshape(-1) for v in fresh[col])
            if sa.size != missing.size or sb.size != missing.size:
                raise ConfigError(f"compute() returned {sa.size}/{sb.size} scores for column {col!r}, "
                                  f"expected {missing.size}")
            for j, i in enumerate(missing):
                rows[keys[i][columns.index(col)]] = (float(sa[j]), float(sb[j]))
        if cache_path is not None:
            write_score_cache(cache_path, rows)
    out = {
        col: (np.array([rows[ks[c]][0] for ks in keys]), np.array([rows[ks[c]][1] for ks in keys]))
        for c, col in enumerate(columns)
    }
    return out, int(missing.size)
