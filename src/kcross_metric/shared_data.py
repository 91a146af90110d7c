"""Locate the project's shared real-data folder (never bundled with the package).

The folder holds public MRI data, published scores and ImageNet backbone arrays (see the
project's ``../shared/data/MANIFEST.md``). Its location is ``$KCROSS_SHARED_DIR`` if set, else
``../shared`` next to the current working directory or next to the source checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "KCROSS_SHARED_DIR"

__all__ = ["ENV_VAR", "shared_dir", "shared_path"]


def shared_dir() -> Path | None:
    """Return the shared folder, or ``None`` if it cannot be found."""
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        return path if path.is_dir() else None
    candidates = [Path.cwd().parent / "shared", Path(__file__).resolve().parents[3] / "shared"]
    for path in candidates:
        if (path / "data").is_dir():
            return path
    return None


def shared_path(*parts: str) -> Path | None:
    """Path inside the shared folder, or ``None`` if the folder or the entry is absent."""
    root = shared_dir()
    if root is None:
        return None
    path = root.joinpath(*parts)
    return path if path.exists() else None
