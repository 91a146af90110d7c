"""kcross-metric: K-CROSS and friends for judging synthesized brain MR images.

Heavy modules (networks, baselines, NIfTI IO) are imported lazily so that ``import kcross_metric``
and ``kcross-score --help`` stay fast.

Layout (imports point down only): ``cli`` > ``report`` > ``integrations`` > ``evaluation`` >
``train`` > ``registry`` > ``core`` and ``baselines`` > ``data`` > ``weights`` > ``_util`` >
``errors``; see ``docs/architecture.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _moved
from ._version import __version__
from .registry import create_metric, list_metrics, metric_info

_moved.install()  # old module paths (kcross_metric.io, .metric, ...) keep working, with a warning

__all__ = ["KCross", "KCrossResult", "create_metric", "list_metrics", "metric_info", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .core.metric import KCross, KCrossResult

_LAZY = {"KCross": "kcross_metric.core.metric", "KCrossResult": "kcross_metric.core.metric"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kcross_metric' has no attribute {name!r}")
