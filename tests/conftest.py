from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from kcross_metric._util.shared_data import ENV_VAR, shared_path
from kcross_metric.baselines._backbones import OFFLINE_ENV_VAR, backbone_available

# The library never looks for ../shared by itself: the tests name the shared folder beside the
# checkout, unless the caller chose one (CI's first pass names a missing folder on purpose).
_CHECKOUT_SHARED = Path(__file__).resolve().parents[2] / "shared"
if _CHECKOUT_SHARED.joinpath("data").is_dir():
    os.environ.setdefault(ENV_VAR, str(_CHECKOUT_SHARED))

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
# Tests never download ImageNet backbones (the download path is tested against a local server
# with this variable lifted); without the backbones on disk, the tests that need them skip.
os.environ[OFFLINE_ENV_VAR] = "1"


def imagenet_available(*nets: str) -> bool:
    """The ImageNet backbones (default both) are on disk: shared folder, $KCROSS_IMAGENET_DIR or
    the torch hub cache."""
    return all(backbone_available(net) for net in (nets or ("alex", "vgg")))


def need_imagenet(*nets: str) -> None:
    if not imagenet_available(*nets):
        pytest.skip("ImageNet backbones not on disk (tests never download them; run "
                    "`kcross-score --fetch-backbones` or set KCROSS_IMAGENET_DIR)")


def need_shared(*parts: str) -> Path:
    """Return a path inside ../shared or skip the test with a clear reason."""
    path = shared_path(*parts)
    if path is None:
        pytest.skip(f"shared data {'/'.join(parts)} not found (set {ENV_VAR} to the shared folder)")
    return path


@pytest.fixture
def shared() -> object:
    return need_shared
