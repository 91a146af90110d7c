"""Old module paths of the 0.1 regrouping, still importable with a :class:`DeprecationWarning`.

``import kcross_metric.io`` (now :mod:`kcross_metric.data.io`) and the other modules that moved
when the package was regrouped resolve to their new module, so that code written against the old
layout keeps working for one release. One finder on ``sys.meta_path`` serves every old path
(submodules of moved packages included), instead of a shim file per module at the top level.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

#: old module -> new module; a package's submodules follow it (longest prefix wins)
MOVED: dict[str, str] = {
    "kcross_metric.metric": "kcross_metric.core.metric",
    "kcross_metric.branches": "kcross_metric.core.branches",
    "kcross_metric.kspace": "kcross_metric.core.kspace",
    "kcross_metric.explain": "kcross_metric.core.explain",
    "kcross_metric.nets": "kcross_metric.core.nets",
    "kcross_metric.nets.ssfd": "kcross_metric.baselines._ssfd",
    "kcross_metric.nn": "kcross_metric.core.nets",
    "kcross_metric.nn.complex": "kcross_metric.core.nets.complex",
    "kcross_metric.dfd": "kcross_metric.baselines.dfd",
    "kcross_metric.metrics": "kcross_metric.integrations.metrics",
    "kcross_metric.losses25d": "kcross_metric.integrations.losses",
    "kcross_metric.volume25d": "kcross_metric.evaluation.volume25d",
    "kcross_metric.io": "kcross_metric.data.io",
    "kcross_metric.phantom": "kcross_metric.data.phantom",
    "kcross_metric.distortions": "kcross_metric.data.distortions",
    "kcross_metric.shared_data": "kcross_metric._util.shared_data",
}


def new_name(old: str) -> str | None:
    """The module ``old`` moved to, or ``None`` if it did not move."""
    prefix = max((o for o in MOVED if old == o or old.startswith(o + ".")), key=len, default=None)
    return None if prefix is None else MOVED[prefix] + old[len(prefix):]


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds old module paths and hands back the module at the new path (one module object)."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        target_name = new_name(fullname)
        if target_name is None:
            return None
        target_spec = importlib.util.find_spec(target_name)
        if target_spec is None:
            return None
        return importlib.util.spec_from_loader(
            fullname, self, is_package=target_spec.submodule_search_locations is not None
        )

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        target_name = new_name(spec.name)
        assert target_name is not None
        warnings.warn(
            f"{spec.name} moved to {target_name}; the old path will be removed in kcross-metric 0.2",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(target_name)
        self._specs[module.__name__] = module.__spec__  # the import system overwrites it; put it back
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._specs.pop(module.__name__, module.__spec__)


def install() -> None:
    """Put the finder first on ``sys.meta_path``, once. First, because a moved package's new
    ``__path__`` would otherwise let the normal finders load its submodules a second time under
    the old name; the finder answers only the names of :data:`MOVED`."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder())
