"""Self-contained HTML report of K-CROSS results (``kcross-score --report``).

One file, no external assets: images are PNGs embedded as base64 ``data:`` URIs, plots are inline
SVG, styles are inline CSS. Per volume the report shows the per-slice score plot, the scores of
every metric, and for the ``worst_n`` lowest-scoring slices: fake, real, source, the lesion region
the tumor branch compared (red, on the real image), the absolute error ``|fake - real|`` and the
k-space error ``log |FFT(fake) - FFT(real)|`` (centred, DC in the middle), with each branch's
quality and contribution ``-log q`` (see :mod:`kcross_metric.core.explain`).

Library use::

    from kcross_metric.report import ReportEntry, build_report, write_report
    html = build_report([ReportEntry("case1", metric.explain(fake, real, source), fake, real, source)])
    write_report("report.html", html)
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from ..core.branches import BRANCHES
from ..core.explain import MIN_SHARE_TOTAL
from ..errors import ConfigError
from .png import colormap_rgb, gray_rgb, overlay_mask, png_data_uri, to_display
from .svg import slice_score_plot

__all__ = [
    "GENERATOR",
    "ReportEntry",
    "anchor_id",
    "build_report",
    "is_report_file",
    "render_report",
    "volume_section",
    "write_report",
]

#: Value of ``<meta name="generator">``; :func:`write_report` only replaces files that carry it.
GENERATOR = "kcross-metric report"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1160px}
h1{font-size:22px;margin:0 0 6px}h2{font-size:18px;margin:28px 0 6px;border-top:2px solid #1f5fa8;padding-top:10px}
h3{font-size:14px;margin:16px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#eef2f7}td.l,th.l{text-align:left}
.note{color:#555;font-size:12px;max-width:1100px}
.row{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}
figure{margin:0;text-align:center;font-size:12px}figure img{width:150px;height:auto;image-rendering:pixelated;background:#000;display:block}
.empty{width:150px;height:150px;background:#eee;color:#777;display:flex;align-items:center;justify-content:center}
.bar{height:10px;background:#d62728;display:inline-block;vertical-align:middle}
.slice{border:1px solid #ddd;padding:8px;margin:8px 0;border-radius:4px}
"""

_BRANCH_NOTE = (
    "Quality q in [0, 1] per branch (1 = no difference found); contribution = -log q. With the "
    "default product rule, complex + natural contributions = -log(score) exactly. Tumor and structure "
    "split the natural part approximately (each is the natural score network with the other branch's "
    "input zeroed); 'share' is each of complex, tumor, structure as a fraction of their sum (left blank when "
    f"that sum is below {MIN_SHARE_TOTAL:g}, i.e. nothing to share out)."
)


@dataclass
class ReportEntry:
    """One volume (or slice) of a report.

    Attributes:
        name: shown as the section title.
        explanation: :class:`~kcross_metric.core.explain.KCrossExplanation` of the pair.
        fake, real, source: the scored images, tensors or arrays ``(B,1,D,H,W)``/``(B,1,H,W)`` (or
            without the leading axes) in ``[0, data_range]`` (or ``[low, high]``); ``source`` may be
            ``None``.
        metrics: extra values shown beside K-CROSS, e.g. ``{"ssim": 0.91}``.
        sample: which batch element of the explanation / images to show.
        data_range: intensity range of the images, a number R or a pair ``(low, high)`` as given to
            the metric (display scaling only).
    """

    name: str
    explanation: Any
    fake: Any
    real: Any
    source: Any = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    sample: int = 0
    data_range: float | tuple[float, float] = 1.0


def anchor_id(name: str) -> str:
    """A stable, unique HTML id for the section of ``name`` (safe characters plus a short hash)."""
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return "v-" + re.sub(r"[^A-Za-z0-9_-]+", "_", name)[:60] + "-" + digest


def _volume_array(x: Any, sample: int) -> np.ndarray:
    """Tensor/array -> float64 numpy (D, H, W) (D = 1 for a single slice)."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim in (4, 5):
        arr = arr[sample, 0]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ConfigError(f"report images must be (B,1,D,H,W), (B,1,H,W), (D,H,W) or (H,W); got {arr.ndim}-D")
    return arr


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or v == "":
        return ""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    if isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):
        return v.strip()
    try:
        f = float(v)
    except (TypeError, ValueError):
        return escape(str(v))
    if math.isnan(f):
        return "n/a"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    return f"{f:.{digits}f}"


def _img(uri: str, caption: str, alt: str, h: int, w: int) -> str:
    return (
        f'<figure><img src="{uri}" alt="{escape(alt)}" width="{w}" height="{h}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _branch_table(q: Mapping[str, float], c: Mapping[str, float], shares: Mapping[str, float]) -> str:
    rows = ['<table><tr><th class="l">branch</th><th>quality q</th><th>-log q</th><th class="l">share</th></tr>']
    any_share = any(v > 0 for v in shares.values())  # all 0: nothing to share out, show no bars
    for k in BRANCHES:
        share = shares.get(k)
        width = 0.0 if share is None else max(share, 0.0) * 120
        bar = "" if share is None or not any_share else f'<span class="bar" style="width:{width:.0f}px"></span> {share * 100:.0f}%'
        rows.append(
            f'<tr><td class="l">{k}</td><td>{_fmt(q.get(k))}</td><td>{_fmt(c.get(k))}</td><td class="l">{bar}</td></tr>'
        )
    rows.append("</table>")
    return "".join(rows)


def _percentile(values: np.ndarray, q: float, default: float) -> float:
    values = values[np.isfinite(values)]
    return float(np.percentile(values, q)) if values.size else default


def volume_section(entry: ReportEntry, *, worst_n: int = 3) -> str:
    """HTML fragment (a ``<section>``) for one report entry."""
    if worst_n < 0:
        raise ConfigError(f"worst_n must be >= 0, got {worst_n}")
    ex, s = entry.explanation, entry.sample
    from .._util.checks import intensity_range

    rng = intensity_range(entry.data_range)

    def unit(values: Any) -> np.ndarray:
        return rng.to_internal(_volume_array(values, s)) / rng.compute_range

    fake, real = unit(entry.fake), unit(entry.real)
    source = None if entry.source is None else unit(entry.source)
    error = _volume_array(ex.error_map, s)
    kerr = _volume_array(ex.kspace_error, s)
    lesion = _volume_array(ex.lesion_mask, s) > 0.5
    slice_scores = [float(v) for v in ex.slice_scores[s].detach().float().cpu()]
    used = np.asarray(ex.slice_used[s].cpu(), dtype=bool)
    has_lesion = [bool(v) for v in ex.has_lesion[s].cpu()]
    worst = ex.worst_slices(worst_n, sample=s)

    evmax = max(_percentile(error[used], 99.5, 0.0), 1e-6)
    shown = kerr[worst] if worst else kerr[used]
    kvmin, kvmax = _percentile(shown, 1.0, 0.0), _percentile(shown, 99.9, 1.0)

    branches = {k: float(v[s]) for k, v in ex.branches.items()}
    contrib = {k: float(v[s]) for k, v in ex.contributions.items()}
    out = [f'<section id="{anchor_id(entry.name)}"><h2>{escape(entry.name)}</h2>']
    score = float(ex.score[s])
    out.append(
        f"<p><b>K-CROSS {_fmt(score)}</b> (higher is better, range [0, 1]); slices scored "
        f"{int(used.sum())}/{len(used)}, with lesion {sum(has_lesion)}.</p>"
    )
    if entry.metrics:
        head = "".join(f"<th>{escape(k)}</th>" for k in entry.metrics)
        vals = "".join(f"<td>{_fmt(v)}</td>" for v in entry.metrics.values())
        out.append(f"<table><tr>{head}</tr><tr>{vals}</tr></table>")
    out.append("<h3>Branches (volume)</h3>" + _branch_table(branches, contrib, ex.shares(s)))
    out.append(slice_score_plot(slice_scores, lesion=has_lesion, highlight=worst, title=f"per-slice K-CROSS of {entry.name}"))
    out.append(
        '<p class="note">Orange ticks: slices where the tumor branch was active. Red: the worst slices, '
        f"shown below. Error maps: |fake - real| from 0 (black) to {evmax:.3g} (99.5th percentile over "
        f"scored slices); k-space log|FFT(fake) - FFT(real)| from {kvmin:.2f} to {kvmax:.2f}, centred (DC "
        "in the middle). Images: anterior up, patient left on the left.</p>"
    )
    for k in worst:
        h, w = fake.shape[1:]
        q = {b: float(v[s, k]) for b, v in ex.slice_branches.items()}
        c = {b: float(v[s, k]) for b, v in ex.slice_contributions.items()}
        figs = [
            _img(png_data_uri(gray_rgb(to_display(fake[k]))), "fake", f"fake slice {k}", h, w),
            _img(png_data_uri(gray_rgb(to_display(real[k]))), "real", f"real slice {k}", h, w),
        ]
        if source is not None:
            figs.append(_img(png_data_uri(gray_rgb(to_display(source[k]))), "source", f"source slice {k}", h, w))
        else:
            figs.append('<figure><div class="empty">no source</div><figcaption>source</figcaption></figure>')
        overlay = overlay_mask(gray_rgb(to_display(real[k])), to_display(lesion[k]))
        figs.append(_img(png_data_uri(overlay), "lesion region (red)", f"lesion overlay slice {k}", h, w))
        figs.append(_img(png_data_uri(colormap_rgb(to_display(error[k]), 0.0, evmax)), "|fake - real|", f"error map slice {k}", h, w))
        figs.append(_img(png_data_uri(colormap_rgb(to_display(kerr[k]), kvmin, kvmax)), "k-space error", f"k-space error slice {k}", h, w))
        out.append(
            f'<div class="slice"><h3>slice {k}: K-CROSS {_fmt(slice_scores[k])}'
            f'{" (lesion)" if has_lesion[k] else ""}</h3><div class="row">{"".join(figs)}'
            f"<div>{_branch_table(q, c, ex.shares(s, k))}</div></div></div>"
        )
    out.append(f'<p class="note">{escape(_BRANCH_NOTE)}</p></section>')
    return "\n".join(out)


def render_report(
    sections: Sequence[str],
    *,
    title: str = "K-CROSS report",
    summary: Sequence[Mapping[str, Any]] = (),
    info: Mapping[str, Any] | None = None,
) -> str:
    """Assemble a complete HTML page from :func:`volume_section` fragments.

    Args:
        sections: HTML fragments, in order.
        summary: one mapping per volume for the summary table (keys become columns; the ``name``
            column links to the section of that name).
        info: shown under the title (e.g. package version, weights SHA-256, settings).
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta name="generator" content="{GENERATOR}">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]
    if info:
        parts.append('<p class="note">' + "; ".join(f"{escape(str(k))}: {escape(str(v))}" for k, v in info.items()) + "</p>")
    if summary:
        cols = list(dict.fromkeys(k for row in summary for k in row))
        parts.append("<table><tr>" + "".join(f'<th class="{"l" if c == "name" else ""}">{escape(c)}</th>' for c in cols) + "</tr>")
        for row in summary:
            cells = []
            for c in cols:
                v = row.get(c, "")
                if c == "name":
                    cells.append(f'<td class="l"><a href="#{anchor_id(str(v))}">{escape(str(v))}</a></td>')
                else:
                    cells.append(f"<td>{_fmt(v)}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table>")
    parts.extend(sections)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def build_report(entries: Sequence[ReportEntry], *, worst_n: int = 3, title: str = "K-CROSS report") -> str:
    """Sections and a summary table for ``entries``; returns the HTML text."""
    sections = [volume_section(e, worst_n=worst_n) for e in entries]
    summary = [
        {"name": e.name, "kcross": float(e.explanation.score[e.sample]), **{k: v for k, v in e.metrics.items()}}
        for e in entries
    ]
    version = entries[0].explanation.version if entries else {}
    info = {k: version[k] for k in ("kcross_metric", "weights", "weights_sha256") if k in version}
    return render_report(sections, title=title, summary=summary, info=info)


def is_report_file(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is an HTML file written by this module (its head carries :data:`GENERATOR`)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return f'<meta name="generator" content="{GENERATOR}">' in head


def write_report(path: str | os.PathLike[str], html_text: str, *, overwrite: bool = False) -> Path:
    """Write the report atomically; an existing file (even an earlier report) is replaced only if
    ``overwrite``, and the folder must exist."""
    from .._util.files import atomic_write_text

    return atomic_write_text(Path(path), html_text, overwrite=overwrite)
