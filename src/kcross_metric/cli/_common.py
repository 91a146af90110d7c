"""Shared CLI plumbing: exit codes, one-line errors, atomic writes that never clobber."""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable

__all__ = ["EXIT_OK", "EXIT_BAD_INPUT", "EXIT_ERROR", "run_main", "atomic_write_text", "check_output_path"]

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT = 0, 1, 2


def check_output_path(path: str | os.PathLike[str], overwrite: bool) -> Path:
    from ..errors import OutputExistsError

    p = Path(path)
    if p.is_dir():
        raise OutputExistsError(f"{p} is a directory, expected a file path")
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{p} exists; pass --overwrite to replace it")
    return p


def atomic_write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> Path:
    """Write ``text`` to a temp file beside ``path`` and rename it into place."""
    p = check_output_path(path, overwrite)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def run_main(body: Callable[[], int], debug: bool, prog: str) -> int:
    """Run a CLI body: bad input -> exit 2 with one line; other failures -> exit 1."""
    from ..errors import KCrossError

    try:
        return body()
    # OSError covers unreadable inputs and unwritable outputs (permissions, full disk, ...).
    except (KCrossError, ValueError, OSError, TypeError) as exc:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
