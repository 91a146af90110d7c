"""File plumbing shared by every layer: output-path checks, atomic writes, SHA-256 of a file.

One helper for each job, so that the files the package writes (weights, tables, volumes, CSVs,
reports, checkpoints) is published the same way: written to a temporary file in the target's
folder, flushed to disk and moved into place with :func:`os.replace`, so that a reader never sees a
half-written file and an interrupted write leaves the old file intact.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import ConfigError, OutputExistsError

__all__ = ["atomic_write", "atomic_write_text", "cached_tensors", "check_output_path", "sha256_file"]

_CHUNK = 1 << 20
# read once: os.umask can only be read by setting it, which races with other threads
_UMASK = os.umask(0)
os.umask(_UMASK)
_T = TypeVar("_T")


def check_output_path(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """An output file path: not a directory, not an existing file unless ``overwrite``, and in a
    folder that exists (output folders are never created behind the user's back).

    Raises:
        OutputExistsError: ``path`` is a directory, or exists and ``overwrite`` is False.
        ConfigError: the parent folder does not exist.
    """
    p = Path(path)
    if p.is_dir():
        raise OutputExistsError(f"{p} is a directory, expected a file path")
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{p} exists; pass --overwrite to replace it")
    if not p.parent.is_dir():
        raise ConfigError(f"cannot write {p}: folder {p.parent} does not exist (create it first)")
    return p


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[Path], object],
    *,
    overwrite: bool = True,
    make_parents: bool = False,
    suffix: str = ".tmp",
) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then move it into place.

    ``suffix`` is the temporary file's suffix (writers that choose a format by extension, such as
    SimpleITK, need the real one). ``make_parents`` creates missing folders (for caches and run
    directories the package owns); otherwise the folder must exist. A new file gets the usual
    permissions (``0666`` minus the umask), not ``mkstemp``'s ``0600``; a replaced file keeps its own.
    """
    p = Path(path)
    if make_parents:
        p.parent.mkdir(parents=True, exist_ok=True)
    p = check_output_path(p, overwrite)
    # a replaced file keeps its permissions (a report chmod-ed 600 stays private)
    mode = stat.S_IMODE(p.stat().st_mode) if p.exists() else 0o666 & ~_UMASK
    fd, tmp_name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=suffix, dir=p.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, mode)
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        if not overwrite and p.exists():  # appeared while we were writing
            raise OutputExistsError(f"{p} exists; pass --overwrite to replace it")
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def atomic_write_text(
    path: str | os.PathLike[str],
    text: str,
    *,
    overwrite: bool = False,
    make_parents: bool = False,
    newline: str | None = None,
) -> Path:
    """Write ``text`` as UTF-8 through :func:`atomic_write` (``newline=""`` keeps CSV line ends)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline=newline) as handle:
            handle.write(text)

    return atomic_write(path, write, overwrite=overwrite, make_parents=make_parents)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Lower-case hex SHA-256 of a file, read in 1 MiB chunks (constant memory).

    Raises ``FileNotFoundError`` / ``IsADirectoryError``; callers that own a domain (weights,
    datasets) turn them into their typed errors.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_tensors(path: str | os.PathLike[str], compute: Callable[[], _T]) -> _T:
    """``compute()``, kept at ``path`` with ``torch.save`` the first time and read back after.

    For caches of plain containers (dicts, lists, strings, numbers) of tensors: they are read with
    ``weights_only=True``, so nothing is unpickled. Written atomically (the folder is created).
    """
    import torch

    p = Path(path)
    if p.exists():
        value: _T = torch.load(p, weights_only=True)
        return value
    value = compute()
    atomic_write(p, lambda tmp: torch.save(value, tmp), make_parents=True)
    return value
