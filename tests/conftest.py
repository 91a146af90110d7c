from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kcross_metric.shared_data import ENV_VAR, shared_path

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def need_shared(*parts: str) -> Path:
    """Return a path inside ../shared or skip the test with a clear reason."""
    path = shared_path(*parts)
    if path is None:
        pytest.skip(f"shared data {'/'.join(parts)} not found (set {ENV_VAR} to the shared folder)")
    return path


@pytest.fixture
def shared() -> object:
    return need_shared
