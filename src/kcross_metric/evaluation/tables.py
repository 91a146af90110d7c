"""Score tables in, agreement tables out.

:class:`ScoreTable` is the columnar form every reader returns (one row per rated item: key
columns such as dataset/model, one rating, one float column per metric). :func:`agreement_table`
turns it into :class:`AgreementRow` s (one per group and metric) that :func:`rows_to_markdown`,
:func:`pivot_markdown` and :func:`rows_to_csv` format. :func:`write_atomic` writes an output
file via a temporary file and ``os.replace`` and refuses to overwrite unless asked.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._util.files import atomic_write_text, check_output_path
from ..errors import ConfigError, ShapeError
from .agreement import INCONSISTENCY_MODES, MetricAgreement, evaluate_metric

__all__ = [
    "ScoreTable",
    "AgreementRow",
    "TwoAFCRow",
    "resolve_directions",
    "agreement_table",
    "rows_to_csv",
    "rows_to_markdown",
    "pivot_markdown",
    "two_afc_to_csv",
    "two_afc_to_markdown",
    "check_writable",
    "write_atomic",
    "format_number",
    "report_markdown",
]

#: Directions of score columns that are not registered metrics but appear in NIRPS files.
EXTRA_DIRECTIONS: dict[str, bool] = {"prefill": True, "human": True}


@dataclass(frozen=True)
class ScoreTable:
    """Rated items as columns: ``keys`` (str arrays), ``ratings`` and ``metrics`` (float64 arrays), all (N,)."""

    keys: Mapping[str, np.ndarray]
    ratings: np.ndarray
    metrics: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        n = self.ratings.shape[0]
        for name, col in list(self.keys.items()) + list(self.metrics.items()):
            if col.shape != (n,):
                raise ShapeError(f"column {name!r} has shape {col.shape}, expected ({n},)")

    def __len__(self) -> int:
        return int(self.ratings.shape[0])

    @property
    def metric_names(self) -> list[str]:
        return list(self.metrics)

    def subset(self, mask: np.ndarray) -> ScoreTable:
        """Rows where ``mask`` (bool (N,) or an index array) selects."""
        return ScoreTable(
            keys={k: v[mask] for k, v in self.keys.items()},
            ratings=self.ratings[mask],
            metrics={k: v[mask] for k, v in self.metrics.items()},
        )

    def with_metric(self, name: str, values: np.ndarray) -> ScoreTable:
        """A copy with one more (or a replaced) metric column."""
        metrics = dict(self.metrics)
        metrics[name] = np.asarray(values, dtype=np.float64)
        return ScoreTable(keys=dict(self.keys), ratings=self.ratings, metrics=metrics)

    def group_by(self, columns: Sequence[str]) -> list[tuple[tuple[tuple[str, str], ...], ScoreTable]]:
        """Split by the given key columns, groups in sorted order; no columns = one group of all rows."""
        for c in columns:
            if c not in self.keys:
                raise ConfigError(f"cannot group by {c!r}; available columns: {', '.join(self.keys) or 'none'}")
        if not columns:
            return [((), self)]
        combos = np.array(["\x1f".join(t) for t in zip(*(self.keys[c] for c in columns))], dtype=object)
        out = []
        for combo in sorted(set(combos.tolist())):
            label = tuple(zip(columns, combo.split("\x1f")))
            out.append((label, self.subset(combos == combo)))
        return out

    def to_csv_text(self) -> str:
        """The table as CSV (keys, ``rating``, metrics), floats with full precision."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([*self.keys, "rating", *self.metrics])
        for i in range(len(self)):
            w.writerow(
                [*(self.keys[k][i] for k in self.keys), repr(float(self.ratings[i])),
                 *(repr(float(self.metrics[m][i])) for m in self.metrics)]
            )
        return buf.getvalue()


def resolve_directions(
    metrics: Iterable[str],
    *,
    higher: Iterable[str] = (),
    lower: Iterable[str] = (),
) -> dict[str, bool]:
    """``higher_is_better`` for each metric: explicit lists first, then the registry, then NIRPS extras."""
    from ..registry import metric_info

    higher, lower = set(higher), set(lower)
    both = higher & lower
    if both:
        raise ConfigError(f"metric(s) listed as both higher- and lower-is-better: {', '.join(sorted(both))}")
    out: dict[str, bool] = {}
    for m in metrics:
        if m in higher:
            out[m] = True
        elif m in lower:
            out[m] = False
        elif m.lower() in EXTRA_DIRECTIONS:
            out[m] = EXTRA_DIRECTIONS[m.lower()]
        else:
            try:
                out[m] = metric_info(m).higher_is_better
            except ConfigError:
                raise ConfigError(
                    f"direction of metric {m!r} is unknown; pass --higher-is-better {m} or --lower-is-better {m}"
                ) from None
    return out


@dataclass(frozen=True)
class AgreementRow:
    """Agreement of one metric with the ratings on one group of items."""

    group: tuple[tuple[str, str], ...]
    metric: str
    result: MetricAgreement

    @property
    def group_label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.group) or "all"


def agreement_table(
    table: ScoreTable,
    metrics: Sequence[str],
    directions: Mapping[str, bool],
    *,
    group_by: Sequence[str] = (),
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    modes: Sequence[str] = INCONSISTENCY_MODES,
) -> list[AgreementRow]:
    """Agreement statistics for every (group, metric); each group is bootstrapped with the same seed."""
    missing = [m for m in metrics if m not in table.metrics]
    if missing:
        raise ConfigError(
            f"metric column(s) {', '.join(missing)} not in the scores; available: {', '.join(table.metrics)}"
        )
    rows = []
    for label, sub in table.group_by(group_by):
        if len(sub) < 3:
            raise ShapeError(f"group {label or 'all'} has {len(sub)} item(s); need at least 3")
        for m in metrics:
            res = evaluate_metric(
                sub.metrics[m], sub.ratings, higher_is_better=directions[m],
                n_boot=n_boot, alpha=alpha, seed=seed, modes=modes,
            )
            rows.append(AgreementRow(label, m, res))
    return rows


# --------------------------------------------------------------------------------------------
# formatting


def format_number(x: float, digits: int = 4) -> str:
    """``x`` with ``digits`` decimals, ``nan`` when not finite (every agreement table's cells)."""
    return "nan" if not math.isfinite(x) else f"{x:.{digits}f}"


def _ci_text(row: AgreementRow, key: str, value: float) -> str:
    ci = row.result.ci.get(key)
    if ci is None:
        return format_number(value)
    return f"{format_number(value)} [{format_number(ci.low)}, {format_number(ci.high)}]"


_CSV_CI_KEYS = ("rank", "srocc", "plcc", "krocc")


def rows_to_csv(rows: Sequence[AgreementRow]) -> str:
    """Long-format CSV: group columns, metric, n, direction, inconsistencies, chance, correlations, CIs."""
    group_cols: list[str] = []
    for r in rows:
        for k, _ in r.group:
            if k not in group_cols:
                group_cols.append(k)
    modes = [m for m in INCONSISTENCY_MODES if any(m in r.result.inconsistency for r in rows)]
    header = [*group_cols, "metric", "n", "higher_is_better", *(f"inconsistency_{m}" for m in modes),
              "inconsistency_chance", "srocc", "plcc", "plcc_method", "krocc"]
    for k in _CSV_CI_KEYS:
        header += [f"{k}_ci_low", f"{k}_ci_high"]
    header += ["ci_level", "n_boot"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        g = dict(r.group)
        res = r.result
        line: list[str | int] = [g.get(c, "") for c in group_cols]
        line += [r.metric, res.n, int(res.higher_is_better)]
        line += [f"{res.inconsistency[m]:.6f}" if m in res.inconsistency else "" for m in modes]
        line += [f"{res.chance:.6f}", f"{res.srocc:.6f}", f"{res.plcc:.6f}", res.plcc_method, f"{res.krocc:.6f}"]
        for k in _CSV_CI_KEYS:
            ci = res.ci.get(k)
            line += [f"{ci.low:.6f}", f"{ci.high:.6f}"] if ci else ["", ""]
        any_ci = next(iter(res.ci.values()), None)
        line += [f"{any_ci.level:g}" if any_ci else "", any_ci.n_boot if any_ci else 0]
        w.writerow(line)
    return buf.getvalue()


def rows_to_markdown(rows: Sequence[AgreementRow]) -> str:
    """One markdown row per (group, metric) with inconsistencies, chance level and correlations with CIs."""
    modes = [m for m in INCONSISTENCY_MODES if any(m in r.result.inconsistency for r in rows)]
    has_ci = any(r.result.ci for r in rows)
    head = ["group", "metric", "n", *(f"inc. {m}" for m in modes), "chance", "SROCC", "PLCC", "KROCC"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        res = r.result
        incs = []
        for m in modes:
            v = res.inconsistency.get(m, math.nan)
            incs.append(_ci_text(r, "rank", v) if m == "rank" else format_number(v))
        plcc_txt = _ci_text(r, "plcc", res.plcc) + ("" if res.plcc_method == "logistic" else " (raw)")
        cells = [r.group_label, r.metric, str(res.n), *incs, format_number(res.chance),
                 _ci_text(r, "srocc", res.srocc), plcc_txt, _ci_text(r, "krocc", res.krocc)]
        lines.append("| " + " | ".join(cells) + " |")
    if has_ci:
        ci = next(iter(next(r for r in rows if r.result.ci).result.ci.values()))
        lines.append("")
        lines.append(
            f"Brackets: {100 * ci.level:g}% percentile bootstrap CI over items ({ci.n_boot} resamples). "
            "Correlations use the oriented metric (positive = agrees with the ratings). "
            "PLCC after a monotonic 4-parameter logistic fit; \"(raw)\" = fit failed, plain Pearson."
        )
    return "\n".join(lines) + "\n"


def pivot_markdown(
    rows: Sequence[AgreementRow],
    *,
    value: str = "rank",
    column_keys: Sequence[str] | None = None,
    reference: Mapping[tuple[str, tuple[tuple[str, str], ...]], float] | None = None,
    chance_row: bool = True,
    digits: int = 4,
) -> str:
    """Metric x group table of one statistic (an inconsistency mode, ``srocc``, ``plcc`` or ``krocc``).

    ``reference`` optionally maps ``(metric, group)`` to a published number shown as ``ours / ref``.
    ``chance_row`` adds the rank-mode chance level per group (inconsistency values only).
    """
    groups: list[tuple[tuple[str, str], ...]] = []
    metrics: list[str] = []
    for r in rows:
        g = r.group if column_keys is None else tuple((k, v) for k, v in r.group if k in column_keys)
        if g not in groups:
            groups.append(g)
        if r.metric not in metrics:
            metrics.append(r.metric)
    cell: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    chance: dict[tuple[tuple[str, str], ...], float] = {}
    for r in rows:
        g = r.group if column_keys is None else tuple((k, v) for k, v in r.group if k in column_keys)
        res = r.result
        if value in INCONSISTENCY_MODES:
            v = res.inconsistency.get(value, math.nan)
        elif value in ("srocc", "plcc", "krocc"):
            v = getattr(res, value)
        else:
            raise ConfigError(f"unknown statistic {value!r}")
        cell[(r.metric, g)] = v
        chance[g] = res.chance
    head = ["metric", *(" ".join(v for _, v in g) or "all" for g in groups)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in metrics:
        cells = [m]
        for g in groups:
            txt = format_number(cell.get((m, g), math.nan), digits)
            if reference is not None and (m, g) in reference:
                txt += f" / {format_number(reference[(m, g)], digits)}"
            cells.append(txt)
        lines.append("| " + " | ".join(cells) + " |")
    if chance_row and value in INCONSISTENCY_MODES:
        lines.append("| " + " | ".join(["*chance*", *(format_number(chance[g], digits) for g in groups)]) + " |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class TwoAFCRow:
    """2AFC accuracy of one metric on the pairs of one rule."""

    rule: str
    metric: str
    n_pairs: int
    accuracy: float
    ci_low: float
    ci_high: float


def two_afc_to_csv(rows: Sequence[TwoAFCRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rule", "metric", "n_pairs", "accuracy", "ci_low", "ci_high"])
    for r in rows:
        w.writerow([r.rule, r.metric, r.n_pairs, f"{r.accuracy:.6f}", f"{r.ci_low:.6f}", f"{r.ci_high:.6f}"])
    return buf.getvalue()


def two_afc_to_markdown(rows: Sequence[TwoAFCRow], *, level: float = 0.95) -> str:
    lines = ["| rule | metric | pairs | 2AFC accuracy |", "|---|---|---|---|"]
    for r in rows:
        ci = f"[{format_number(r.ci_low)}, {format_number(r.ci_high)}]"
        lines.append(f"| {r.rule} | {r.metric} | {r.n_pairs} | {format_number(r.accuracy)} {ci} |")
    lines.append("")
    lines.append(
        f"Brackets: {100 * level:g}% percentile bootstrap CI over pairs. "
        "A pair scores 1 if the metric prefers the better image, 0.5 on a metric tie."
    )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# output files


def check_writable(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Refuse an existing output (unless ``overwrite``) or a missing parent folder, before any work."""
    return check_output_path(path, overwrite)


def write_atomic(path: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    return atomic_write_text(path, text, overwrite=overwrite, newline="")


def report_markdown(
    rows: Sequence[AgreementRow],
    *,
    title: str,
    preamble: Sequence[str] = (),
    reference: Mapping[tuple[str, tuple[tuple[str, str], ...]], float] | None = None,
    reference_note: str = "",
) -> str:
    """A full markdown report: one pivot table per inconsistency mode, then the correlation table.

    ``reference`` (as in :func:`pivot_markdown`) is shown in the legacy-mode table, where published
    numbers computed with the prototype belong, with ``reference_note`` explaining it.
    """
    modes = [m for m in INCONSISTENCY_MODES if any(m in r.result.inconsistency for r in rows)]
    titles = {
        "rank": "Inconsistency, rank mode (Algorithm 4 as intended; lower is better)",
        "regression": "Inconsistency, regression mode (min-max normalized metric vs rating; lower is better)",
        "legacy": "Inconsistency, legacy mode (the public prototype's argsort defect; for comparison only)",
    }
    out = [f"# {title}", ""]
    out += [*preamble, ""] if preamble else []
    for m in modes:
        out += [f"## {titles[m]}", ""]
        ref = reference if m == "legacy" else None
        out.append(pivot_markdown(rows, value=m, reference=ref))
        if ref and reference_note:
            out += [reference_note, ""]
    out += ["## Correlations with the ratings", "", rows_to_markdown(rows)]
    return "\n".join(out).rstrip("\n") + "\n"
