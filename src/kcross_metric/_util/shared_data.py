"""The project's shared real-data folder, named by ``$KCROSS_SHARED_DIR`` (never bundled).

The folder holds public MRI data, published scores and ImageNet backbone arrays (see the
project's ``../shared/data/MANIFEST.md``). Library code never guesses where it is (no lookup of
``../shared`` beside the working directory or the checkout): the caller passes a path (``root=``,
``--data-root``, ``--extra-root``, ``--imagenet-dir``) or sets ``$KCROSS_SHARED_DIR``; the
project's tests and benchmark scripts set it to the ``shared`` folder beside the checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "KCROSS_SHARED_DIR"

__all__ = ["ENV_VAR", "shared_dir", "shared_path"]


def shared_dir() -> Path | None:
    """The folder named by ``$KCROSS_SHARED_DIR``, or ``None`` if unset or not a folder."""
    env = os.environ.get(ENV_VAR, "").strip()
    if not env:
        return None
    path = Path(env).expanduser()
    return path if path.is_dir() else None


def shared_path(*parts: str) -> Path | None:
    """Path inside the shared folder, or ``None`` if the folder or the entry is absent."""
    root = shared_dir()
    if root is None:
        return None
    path = root.joinpath(*parts)
    return path if path.exists() else None
