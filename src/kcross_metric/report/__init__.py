"""Self-contained HTML reports of K-CROSS results (``kcross-score --report``); see :mod:`.html`."""

from __future__ import annotations

from .html import (
    GENERATOR,
    ReportEntry,
    anchor_id,
    build_report,
    is_report_file,
    render_report,
    volume_section,
    write_report,
)
from .png import encode_png, png_data_uri

__all__ = [
    "GENERATOR",
    "ReportEntry",
    "anchor_id",
    "build_report",
    "encode_png",
    "is_report_file",
    "png_data_uri",
    "render_report",
    "volume_section",
    "write_report",
]
