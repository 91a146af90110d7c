"""Old module paths of the regrouping (``kcross_metric._moved``): same module objects, a warning."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys

import pytest

from kcross_metric._moved import MOVED, new_name


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_is_the_new_module_with_a_warning(old: str) -> None:
    code = (
        "import importlib, warnings\n"
        "warnings.simplefilter('error', DeprecationWarning)\n"
        f"try:\n    importlib.import_module({old!r})\n    raise SystemExit('no warning')\n"
        "except DeprecationWarning as w:\n    print(w)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "moved to kcross_metric." in out.stdout, out.stdout + out.stderr
    with pytest.warns(DeprecationWarning):
        sys.modules.pop(old, None)
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])
    assert module.__spec__ is not None and module.__spec__.name == MOVED[old]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_submodules_of_moved_packages_are_not_loaded_twice() -> None:
    from kcross_metric.core.nets.complex import ComplexConv2d
    from kcross_metric.core.nets.kcross_nets import KCrossNetworks

    old_nets = importlib.import_module("kcross_metric.nets.kcross_nets")
    old_complex = importlib.import_module("kcross_metric.nn.complex")
    blocks = importlib.import_module("kcross_metric.nets.blocks")
    assert old_nets.KCrossNetworks is KCrossNetworks and old_complex.ComplexConv2d is ComplexConv2d
    assert blocks is importlib.import_module("kcross_metric.core.nets.blocks")
    assert new_name("kcross_metric.nets.score") == "kcross_metric.core.nets.score"
    assert new_name("kcross_metric.registry") is None


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_pickles_naming_old_paths_load_as_the_new_classes() -> None:
    from kcross_metric.core.metric import KCrossResult

    # a pickle written before the move names the class by its old module
    old = pickle.dumps(KCrossResult, protocol=0).replace(b"kcross_metric.core.metric", b"kcross_metric.metric")
    assert b"kcross_metric.metric" in old and pickle.loads(old) is KCrossResult
