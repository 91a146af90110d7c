"""The 2.5D page: 2AFC accuracy of 2-D metrics on single planes vs the tri-planar mean.

The report side of ``benchmarks/volume25d_table.py`` (its page is ``docs/results-25d.md``), on the
results of :func:`kcross_metric.evaluation.volume_pairs.evaluate_pairs`: the accuracy table
(:func:`accuracy_markdown`), correct pairs per family (:func:`family_markdown`), per-plane
sensitivity (:func:`sensitivity_markdown`, :func:`sensitivity_notes`), sentences derived from the
numbers (:func:`summary_text`), the scoring cost per metric kept beside the score cache
(:func:`scoring_cost`, ``timing.csv``) and the whole page (:func:`volume25d_page`).

Per-plane sensitivity: the mean, over a family's pairs, of each plane's oriented margin (score of
the mild copy minus score of the strong copy, sign-flipped for lower-is-better metrics) divided by
the 2.5D margin.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._util.files import atomic_write_text
from .volume25d import PLANES
from .volume_pairs import DEFAULT_CONTRASTS, FAMILIES, SLICE_AXIS, VIEWS, Volume, VolumePairResults

__all__ = [
    "TIMING_COLUMNS",
    "Timing",
    "Volume25DRun",
    "accuracy_markdown",
    "family_markdown",
    "read_timing",
    "scoring_cost",
    "sensitivity_markdown",
    "sensitivity_notes",
    "summary_text",
    "volume25d_page",
    "write_timing",
]

#: Columns of ``timing.csv``.
TIMING_COLUMNS: tuple[str, ...] = ("metric", "settings", "wall_s", "cpu_s", "n_pairs")
#: (run settings, wall seconds, CPU seconds, pairs) of the last run that scored every pair.
Timing = tuple[str, float, float, int]


# ----------------------------------------------------------------------------- tables


def accuracy_markdown(res: VolumePairResults) -> str:
    """| metric | axial | coronal | sagittal | 2.5D | with "acc [low, high]" cells."""
    lines = ["| metric | " + " | ".join(VIEWS) + " |", "|---|" + "---|" * len(VIEWS)]
    for name, acc in res.accuracy.items():
        lines.append(f"| {name} | " + " | ".join(f"{acc[v][0]:.3f} [{acc[v][1]:.3f}, {acc[v][2]:.3f}]"
                                                 for v in VIEWS) + " |")
    return "\n".join(lines) + "\n"


def _per_family_table(res: VolumePairResults, cell: Callable[[str, np.ndarray], str], count: bool) -> str:
    """A row per family (``(n=..)`` after its name if ``count``), a ``cell(metric, rows)`` per metric."""
    fam_of = np.array([p.family for p in res.pairs])
    lines = ["| family | " + " | ".join(res.accuracy) + " |", "|---|" + "---|" * len(res.accuracy)]
    for f in dict.fromkeys(p.family for p in res.pairs):
        sel = fam_of == f
        label = f"{f} (n={int(sel.sum())})" if count else f
        lines.append(f"| {label} | " + " | ".join(cell(name, sel) for name in res.accuracy) + " |")
    return "\n".join(lines) + "\n"


def family_markdown(res: VolumePairResults) -> str:
    """Per family: correct pairs per view (a x/y c x/y s x/y 2.5D x/y) for every metric."""
    return _per_family_table(res, lambda name, sel: "/".join(f"{res.credit(name, v)[sel].sum():g}" for v in VIEWS), True)


def sensitivity_markdown(res: VolumePairResults) -> str:
    """Per family: mean plane margin / mean 2.5D margin (ax/cor/sag) for every metric."""

    def cell(name: str, sel: np.ndarray) -> str:
        ref = res.margins(name, "2.5D")[sel].mean()
        if not np.isfinite(ref) or abs(ref) < 1e-12:
            return "n/a"
        return "/".join(f"{res.margins(name, pl)[sel].mean() / ref:.2f}" for pl in PLANES)

    return _per_family_table(res, cell, False)


# ----------------------------------------------------------------------------- report


def summary_text(res: VolumePairResults) -> str:
    """Measured headline sentences, derived from the numbers (no hand-written claims)."""
    acc = res.accuracy
    out = []
    best_single = {n: max(acc[n][p][0] for p in PLANES) for n in acc}
    worse = [n for n in acc if acc[n]["2.5D"][0] < best_single[n] - 1e-9]
    better = [n for n in acc if acc[n]["2.5D"][0] > best_single[n] + 1e-9]
    out.append(
        f"2.5D beats the best single plane for {', '.join(better) or 'no metric'}; it is below the best "
        f"single plane for {', '.join(worse) or 'no metric'}; for the others it ties.")
    spread = {n: max(acc[n][p][0] for p in PLANES) - min(acc[n][p][0] for p in PLANES) for n in acc}
    planes_differ = [f"{n} ({', '.join(f'{p} {acc[n][p][0]:.2f}' for p in PLANES)})" for n in acc if spread[n] > 1e-9]
    out.append("Single planes disagree for " + ("; ".join(planes_differ) if planes_differ else "no metric") + ".")
    if "kcross" in acc:
        k = acc["kcross"]["2.5D"][0]
        above = [n for n in acc if n != "kcross" and acc[n]["2.5D"][0] > k + 1e-9]
        out.append(f"K-CROSS reaches {k:.3f} in 2.5D; " + (
            f"{', '.join(above)} score higher." if above else "no other metric scores higher."))
    fams = list(dict.fromkeys(p.family for p in res.pairs))
    fam_of = np.array([p.family for p in res.pairs])
    missed = []
    for f in fams:
        sel = fam_of == f
        bad = [n for n in acc if res.credit(n, "2.5D")[sel].mean() < 1.0]
        if bad:
            counts = [f"{n} ({res.credit(n, '2.5D')[sel].sum():g}/{int(sel.sum())})" for n in bad]
            missed.append(f"`{f}`: {', '.join(counts)}")
    out.append("Families with 2.5D errors (correct/total): " + ("; ".join(missed) if missed else "none") + ".")
    return " ".join(out)


def sensitivity_notes(res: VolumePairResults) -> str:
    """One line per family: which plane separates the pair most, per metric (ratio > 1.1 only)."""
    fams = list(dict.fromkeys(p.family for p in res.pairs))
    fam_of = np.array([p.family for p in res.pairs])
    lines = []
    for f in fams:
        sel = fam_of == f
        by_plane: dict[str, list[str]] = {pl: [] for pl in PLANES}
        for name in res.accuracy:
            ref = res.margins(name, "2.5D")[sel].mean()
            if not np.isfinite(ref) or abs(ref) < 1e-12 or ref < 0:
                continue
            ratios = {pl: res.margins(name, pl)[sel].mean() / ref for pl in PLANES}
            top = max(ratios, key=lambda pl: ratios[pl])
            if ratios[top] > 1.1:
                by_plane[top].append(f"{name} {ratios[top]:.2f}")
        parts = [f"{pl}: {', '.join(v)}" for pl, v in by_plane.items() if v]
        kind = FAMILIES[f].kind if f in FAMILIES else ""
        lines.append(f"- `{f}` ({kind}): " + ("; ".join(parts) if parts else "no plane above 1.1 for any metric")
                     + ".")
    return "\n".join(lines) + "\n"

# ----------------------------------------------------------------------------- timing


def read_timing(path: Path) -> dict[str, Timing]:
    """metric -> (settings, wall s, CPU s, pairs) of the last run that scored every pair ({} when
    the file is missing or has other columns)."""
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != TIMING_COLUMNS:
            return {}
        return {r["metric"]: (r["settings"], float(r["wall_s"]), float(r["cpu_s"]), int(r["n_pairs"]))
                for r in reader}


def write_timing(path: Path, rows: Mapping[str, Timing]) -> None:
    """Write ``rows`` to ``path`` (:data:`TIMING_COLUMNS`; seconds with one decimal)."""
    table = io.StringIO()
    w = csv.writer(table)
    w.writerow(TIMING_COLUMNS)
    for name, (settings, wall, cpu, n) in rows.items():
        w.writerow([name, settings, f"{wall:.1f}", f"{cpu:.1f}", n])
    atomic_write_text(path, table.getvalue(), overwrite=True, make_parents=True, newline="")


@dataclass
class Volume25DRun:
    """What a run of the benchmark did, as named on the page."""

    #: the validation case
    case_id: str
    #: its original (D, H, W) shape
    original_shape: tuple[int, ...]
    downsample: int = 2
    margin: int = 2
    stride: int = 3
    replicates: int = 1
    seed: int = 0
    n_boot: int = 1000
    threads: int = 1
    #: the page's path (named in the command line on the page)
    out: Path | None = None
    #: wall-clock and CPU seconds of the run until the scores and accuracies were done
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    #: wall-clock seconds of loading the volumes and of building the pairs
    load_seconds: float = 0.0
    pairs_seconds: float = 0.0

    def timing_settings(self, n_pairs: int) -> str:
        """The settings under which scoring costs are comparable between runs (a key of ``timing.csv``)."""
        return (f"downsample={self.downsample};margin={self.margin};stride={self.stride};"
                f"replicates={self.replicates};seed={self.seed};pairs={n_pairs}")


def scoring_cost(res: VolumePairResults, run: Volume25DRun, cache_dir: Path | None) -> dict[str, Timing]:
    """Scoring cost per metric: this run's when it scored every pair, else that of the last run with
    the same settings that did (``cache_dir/timing.csv``, rewritten with this run's costs; metrics
    with no such run are left out). Without ``cache_dir`` only this run's costs are known."""
    timing = read_timing(cache_dir / "timing.csv") if cache_dir is not None else {}
    cost = {}
    settings = run.timing_settings(len(res.pairs))
    for n in res.scores:
        computed = n not in res.from_cache
        if computed:
            timing[n] = (settings, res.seconds[n], res.cpu_seconds[n], len(res.pairs))
        if n in timing and timing[n][0] == settings:
            cost[n] = timing[n]
    if cache_dir is not None:
        write_timing(cache_dir / "timing.csv", timing)
    return cost


# ----------------------------------------------------------------------------- page


def volume25d_page(res: VolumePairResults, volumes: Mapping[str, Volume], run: Volume25DRun,
                   cost: Mapping[str, Timing]) -> str:
    """The markdown page of ``benchmarks/volume25d_table.py``.

    Args:
        res: the scores and accuracies (:func:`~.volume_pairs.evaluate_pairs`).
        volumes: the real volumes the pairs were made from (``volumes["t2"]`` gives the shape).
        run: the run's settings and timings.
        cost: scoring cost per metric (:func:`scoring_cost`).
    """
    pairs = res.pairs
    vols = volumes
    shape = tuple(vols["t2"].shape[-3:])
    cost_text = ", ".join(f"{n} {w:.0f}/{c:.0f}" for n, (_, w, c, _) in cost.items())
    scoring_wall = sum(w for _, w, _, _ in cost.values())
    scoring_cpu = sum(c for _, _, c, _ in cost.values())
    cached_text = (f" Metrics read from the score cache this run: {', '.join(res.from_cache)}."
                   if res.from_cache else "")
    n_mse = sum(
        float((q.b if q.better == "a" else q.a).sub(vols[q.contrast]).pow(2).mean())
        > float((q.a if q.better == "a" else q.b).sub(vols[q.contrast]).pow(2).mean()) for q in pairs)
    every = {1: "every slice", 2: "every 2nd slice", 3: "every 3rd slice"}.get(
        run.stride, f"every {run.stride}th slice")
    n_slices = {pl: len(range(run.stride // 2, shape[SLICE_AXIS[pl] - 2], run.stride)) for pl in PLANES}
    cmd = "python benchmarks/volume25d_table.py" + (f" --out {run.out}" if run.out else "")
    fam_lines = "\n".join(
        f"| `{f.name}` | {f.kind} | {f.mild[0]:g}-{f.mild[1]:g} | {f.strong[0]:g}-{f.strong[1]:g} |"
        for f in FAMILIES.values() if f.name in {q.family for q in pairs})
    return f"""# 2.5D results: single planes vs tri-planar mean

**Constructed orderings, not radiologist ratings.** Each pair holds two distorted copies of one
real volume; the copy with the milder severity is better by construction.

Command: `{cmd}` (seed {run.seed}, {run.n_boot} bootstrap resamples, {max(1, run.threads)} thread(s)).
Scoring cost on a shared 2-core CPU, wall/CPU seconds per metric for all {2 * len(pairs)} volumes:
{cost_text or "n/a"} (total {scoring_wall / 60:.1f} min wall-clock, {scoring_cpu / 60:.1f} min CPU).
This run: {run.seconds:.0f} s wall-clock, {run.cpu_seconds:.0f} s CPU, of which loading {run.load_seconds:.0f} s and
building the pairs {run.pairs_seconds:.0f} s.{cached_text}

Data: validation case `{run.case_id}` only (never used for fitting; `kcross_metric.train.splits`),
loaded with `kcross_metric.train.data.load_case`. Fakes are distorted T2 (`t2w`) and FLAIR
(`t2f`) volumes; the real T1 (`t1n`) is K-CROSS's source. To keep the CPU cost low the volumes
are downsampled {run.downsample}x per axis (mean pooling; {run.original_shape[0]}x{run.original_shape[1]}x{run.original_shape[2]}
voxels of 1 mm become {run.downsample} mm voxels) and cropped to the brain's bounding box plus
{run.margin} voxels: D x H x W = {shape[0]} x {shape[1]} x {shape[2]}. Each plane is scored on
{every} (axial {n_slices['axial']}, coronal {n_slices['coronal']}, sagittal
{n_slices['sagittal']} slices; those without brain in the real volume are skipped) through
`kcross_metric.evaluation.volume25d.score_25d`; "2.5D" is the mean of the three plane values.
{len(pairs)} pairs = {len({q.family for q in pairs})} families x {len(DEFAULT_CONTRASTS)} fake
contrasts x {run.replicates} replicate(s), severities drawn uniformly from:

| family | applied | mild | strong |
|---|---|---|---|
{fam_lines}

`undersample`: acceleration R, 8 % central lines, one equispaced mask per axial slice along
left-right, zero-filled; `motion`: max shift (voxels) of 30 % of the phase-encoding lines of each
axial slice; `blur`: sigma (voxels); `noise`: Rician sigma; `bias`: log-amplitude; `contrast`:
|log gamma|, direction random. The strong copy has the larger MSE in {n_mse} of the {len(pairs)} pairs.
K-CROSS's networks were trained on axial slices of the native (about 1 mm) grids: 2 mm slices and
coronal or sagittal planes are outside their training distribution.

## 2AFC accuracy (95 % bootstrap CI over the {len(pairs)} pairs)

{accuracy_markdown(res)}
{summary_text(res)}

With {len(pairs)} pairs a CI spans about +-{1.96 * math.sqrt(0.25 / len(pairs)):.2f} at 0.5 accuracy:
differences between views smaller than that are not resolved by this set.

## Correct pairs per family (axial/coronal/sagittal/2.5D)

{family_markdown(res)}
## Per-plane sensitivity (mean plane margin / mean 2.5D margin, axial/coronal/sagittal)

Margin = score of the mild copy minus score of the strong copy (sign-flipped for lower-is-better
metrics), averaged over the family's pairs and divided by the same average for the 2.5D value, so
the three numbers of a cell average to 1. A value above 1 marks the plane in which that metric
sees the severity difference most; a negative value, a plane that orders the pair the wrong way
on average; "n/a", a 2.5D margin of zero.

{sensitivity_markdown(res)}
Geometry of the slice-wise k-space families: each axial slice (H x W) is distorted along W
(left-right), so axial and coronal (D x W) slices contain the axis along which the aliasing and
motion copies are displaced, while sagittal slices (D x H) cut across it and see the artefact as
a mix of neighbouring sagittal positions; neighbouring axial slices got independent masks and
shifts, which shows as slice-to-slice inconsistency along D in coronal and sagittal slices only.

Plane with the largest margin ratio (> 1.1) per family and metric:

{sensitivity_notes(res)}"""
