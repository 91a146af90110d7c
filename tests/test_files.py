"""kcross_metric._util.files: the one atomic writer and checksum of the package."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from kcross_metric._util.files import atomic_write, atomic_write_text, cached_tensors, sha256_file
from kcross_metric.errors import ConfigError, OutputExistsError


def test_writes_refuses_and_keeps_permissions(tmp_path: Path) -> None:
    out = tmp_path / "table.csv"
    atomic_write_text(out, "a,b\n", newline="")
    assert out.read_bytes() == b"a,b\n"
    with pytest.raises(OutputExistsError, match="--overwrite"):
        atomic_write_text(out, "new")
    os.chmod(out, 0o600)
    atomic_write_text(out, "c,d\n", overwrite=True)
    assert out.read_text(encoding="utf-8") == "c,d\n" and out.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError, match="does not exist"):
        atomic_write_text(tmp_path / "missing" / "x.txt", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_a_failing_writer_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    out = tmp_path / "w.bin"
    out.write_bytes(b"old")

    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(out, fail, overwrite=True)
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["w.bin"]


def test_sha256_and_the_tensor_cache(tmp_path: Path) -> None:
    import torch

    f = tmp_path / "f"
    f.write_bytes(b"x" * 3_000_000)
    assert sha256_file(f) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    calls = []

    def compute() -> dict:
        calls.append(1)
        return {"v": torch.arange(3), "names": ["a"]}

    first = cached_tensors(tmp_path / "c" / "x.pt", compute)
    second = cached_tensors(tmp_path / "c" / "x.pt", compute)
    assert len(calls) == 1 and torch.equal(first["v"], second["v"]) and second["names"] == ["a"]
