"""kcross-metric: K-CROSS and friends for judging synthesized brain MR images.

Heavy modules (networks, baselines, NIfTI IO) are imported lazily so that ``import kcross_metric``
and ``kcross-score --help`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .registry import create_metric, list_metrics, metric_info

__all__ = ["KCross", "KCrossResult", "create_metric", "list_metrics", "metric_info", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .metric import KCross, KCrossResult

_LAZY = {"KCross": "kcross_metric.metric", "KCrossResult": "kcross_metric.metric"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kcross_metric' has no attribute {name!r}")
