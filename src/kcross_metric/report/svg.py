"""Hand-drawn inline SVG charts for the HTML report (no plotting library needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

__all__ = ["slice_score_plot"]


def _fmt(v: float) -> str:
    return f"{v:.1f}"


def slice_score_plot(
    scores: Sequence[float],
    *,
    lesion: Sequence[bool] | None = None,
    highlight: Sequence[int] = (),
    width: int = 720,
    height: int = 200,
    title: str = "per-slice K-CROSS",
) -> str:
    """Line plot of per-slice scores on a fixed [0, 1] axis as an ``<svg>`` element string.

    Args:
        scores: one value per axial slice; NaN for slices that were not scored (drawn as gaps).
        lesion: slices where the tumor branch was active, marked by orange ticks under the axis.
        highlight: slice indices drawn as red labelled dots (the worst slices).
    """
    n = len(scores)
    left, right, top, bottom = 44, 12, 14, 46
    pw, ph = width - left - right, height - top - bottom

    def x(i: float) -> float:
        return left + (pw / 2 if n <= 1 else pw * i / (n - 1))

    def y(v: float) -> float:
        return top + ph * (1.0 - min(max(v, 0.0), 1.0))

    parts = [
        (
            f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        ),
        f"<title>{escape(title)}</title>",
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>',
    ]
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        yy = _fmt(y(v))
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{yy}" y2="{yy}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{yy}" dy="4" text-anchor="end" font-size="11">{v:.2f}</text>')
    step = max(1, math.ceil(n / 12))
    for i in range(0, n, step):
        parts.append(
            f'<text x="{_fmt(x(i))}" y="{top + ph + 24}" text-anchor="middle" font-size="11">{i}</text>'
        )
    parts.append(
        f'<text x="{left + pw / 2:.1f}" y="{height - 4}" text-anchor="middle" font-size="11">axial slice</text>'
    )
    if lesion is not None:
        for i, flag in enumerate(lesion):
            if flag:
                xx = _fmt(x(i))
                parts.append(f'<line x1="{xx}" x2="{xx}" y1="{top + ph + 2}" y2="{top + ph + 10}" stroke="#e08000" stroke-width="2"/>')
    segment: list[str] = []
    segments: list[list[str]] = []
    for i, v in enumerate(scores):
        if v is None or not math.isfinite(v):
            if segment:
                segments.append(segment)
            segment = []
            continue
        segment.append(f"{_fmt(x(i))},{_fmt(y(v))}")
    if segment:
        segments.append(segment)
    for seg in segments:
        if len(seg) > 1:
            parts.append(f'<polyline points="{" ".join(seg)}" fill="none" stroke="#1f5fa8" stroke-width="1.5"/>')
    for i, v in enumerate(scores):
        if v is not None and math.isfinite(v):
            parts.append(f'<circle cx="{_fmt(x(i))}" cy="{_fmt(y(v))}" r="2.2" fill="#1f5fa8"/>')
    for i in highlight:
        if 0 <= i < n and math.isfinite(scores[i]):
            cx, cy = _fmt(x(i)), _fmt(y(scores[i]))
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="4.5" fill="none" stroke="#d62728" stroke-width="2"/>')
            parts.append(f'<text x="{cx}" y="{cy}" dy="-8" text-anchor="middle" font-size="11" fill="#d62728">{i}</text>')
    parts.append("</svg>")
    return "".join(parts)
