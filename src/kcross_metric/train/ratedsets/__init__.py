"""Rated sets built without human raters: pairs ordered by construction.

* :mod:`.twoafc` -- the clinically ordered 2AFC set (same-family severities, lesion fidelity vs
  equal global pixel error, and a hook for ordering synthesized outputs of two epochs).
  See ``docs/datasets/twoafc.md``.

Names are imported lazily so that importing the package does not load nibabel.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "TwoAFCPair",
    "build_twoafc_set",
    "build_synthesized_pairs",
    "load_twoafc_set",
    "pairs_from_synthesized",
    "write_twoafc_set",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".twoafc", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
