"""Seeded fuzzing of the NIfTI reader (:func:`kcross_metric.data.io.load_volume`).

~200 corrupted variants of a valid small NIfTI (truncation at random offsets, random bytes flipped
in the header or the data, zeroed header, random header fields, random garbage, gzip of garbage).
Every outcome must be either a volume of finite float32 data or an :class:`InputError`
(:class:`FileFormatError`, :class:`NonFiniteError`): never another exception type, never a hang,
never a huge allocation driven by a corrupted header.
"""

from __future__ import annotations

import gzip
import io
import signal
import struct
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from kcross_metric.data.io import Volume, load_image, load_volume
from kcross_metric.errors import FileFormatError, InputError

SHAPE = (6, 7, 5)
HEADER_BYTES = 348  # NIfTI-1 header; voxel data start at vox_offset = 352
CASES_PER_KIND = 25
SECONDS_PER_CASE = 10  # generous: a case normally takes a few milliseconds


class _Hang(Exception):
    pass


@contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    """Turn a hang into a test failure (SIGALRM; the test runs in the main thread)."""

    def handler(signum: int, frame: object) -> None:
        raise _Hang(f"load_volume did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _valid_bytes() -> tuple[bytes, np.ndarray]:
    data = np.random.default_rng(1).random(SHAPE).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([1.0, 2.0, 3.0, 1.0]))
    buf = io.BytesIO()
    img.to_file_map({"image": nib.FileHolder(fileobj=buf), "header": nib.FileHolder(fileobj=buf)})
    return buf.getvalue(), data


RAW, DATA = _valid_bytes()
GZ = gzip.compress(RAW, mtime=0)


def _flip(blob: bytes, rng: np.random.Generator, lo: int, hi: int) -> bytes:
    out = bytearray(blob)
    for _ in range(int(rng.integers(1, 9))):
        out[int(rng.integers(lo, hi))] = int(rng.integers(0, 256))
    return bytes(out)


def _random_field(rng: np.random.Generator) -> bytes:
    out = bytearray(RAW)
    offset = int(rng.integers(0, HEADER_BYTES - 4))
    out[offset : offset + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
    return bytes(out)


# kind -> (rng -> (suffix, bytes))
MUTATIONS: dict[str, Callable[[np.random.Generator], tuple[str, bytes]]] = {
    "truncate-nii": lambda r: (".nii", RAW[: int(r.integers(1, len(RAW)))]),
    "truncate-gz": lambda r: (".nii.gz", GZ[: int(r.integers(1, len(GZ)))]),
    "flip-header": lambda r: (".nii", _flip(RAW, r, 0, HEADER_BYTES)),
    "flip-anywhere-nii": lambda r: (".nii", _flip(RAW, r, 0, len(RAW))),
    "flip-gz-stream": lambda r: (".nii.gz", _flip(GZ, r, 0, len(GZ))),
    "header-field-gz": lambda r: (".nii.gz", gzip.compress(_random_field(r), mtime=0)),
    "zero-header": lambda r: ((".nii", bytes(HEADER_BYTES) + RAW[HEADER_BYTES:]) if r.random() < 0.5
                              else (".nii.gz", gzip.compress(bytes(HEADER_BYTES) + RAW[HEADER_BYTES:], mtime=0))),
    "garbage": lambda r: ((".nii", r.integers(0, 256, int(r.integers(1, 3000)), dtype=np.uint8).tobytes())
                          if r.random() < 0.5 else
                          (".nii.gz", gzip.compress(r.integers(0, 256, int(r.integers(1, 3000)), dtype=np.uint8).tobytes()))),
}


def _outcome(path: Path) -> str:
    """'ok' or the InputError subclass name; anything else fails the test."""
    with _deadline(SECONDS_PER_CASE):
        try:
            vol = load_volume(path)
        except InputError as exc:
            assert str(exc), "errors must carry a message"
            return type(exc).__name__
    assert isinstance(vol, Volume) and vol.data.dtype == np.float32 and vol.data.ndim == 3
    assert np.isfinite(vol.data).all() and np.isfinite(vol.affine).all()
    return "ok"


def test_unmodified_file_loads_exactly(tmp_path: Path) -> None:
    """Control: the fuzzed template itself is valid, in both encodings."""
    for suffix, blob in ((".nii", RAW), (".nii.gz", GZ)):
        path = tmp_path / f"valid{suffix}"
        path.write_bytes(blob)
        np.testing.assert_array_equal(load_volume(path, canonical=False).data, DATA)


@pytest.mark.parametrize("kind", list(MUTATIONS))
def test_fuzzed_nifti_loads_or_raises_input_error(kind: str, tmp_path: Path) -> None:
    rng = np.random.default_rng([9, list(MUTATIONS).index(kind)])
    outcomes: dict[str, int] = {}
    failures = []
    for case in range(CASES_PER_KIND):
        suffix, blob = MUTATIONS[kind](rng)
        path = tmp_path / f"case{case}{suffix}"
        path.write_bytes(blob)
        try:
            result = _outcome(path)
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            failures.append(f"{kind} case {case}: {type(exc).__name__}: {exc}")
            continue
        outcomes[result] = outcomes.get(result, 0) + 1
        path.unlink()
    assert not failures, "\n".join(failures)
    assert sum(outcomes.values()) == CASES_PER_KIND
    if kind in ("truncate-nii", "truncate-gz", "garbage"):
        assert set(outcomes) <= {"FileFormatError"}, outcomes  # nothing usable can survive these


def test_fuzz_exercises_both_outcomes(tmp_path: Path) -> None:
    """The mutations are neither all harmless nor all fatal, so the test above can fail."""
    rng = np.random.default_rng(3)
    seen = set()
    for case in range(30):
        path = tmp_path / f"c{case}.nii"
        path.write_bytes(_flip(RAW, rng, 0, HEADER_BYTES))
        seen.add(_outcome(path))
    assert "ok" in seen and "FileFormatError" in seen


# ---------------------------------------------------------------------------------------------
# Targeted header corruptions found by fuzzing


def _with_dims(dims: tuple[int, ...]) -> bytes:
    out = bytearray(RAW)
    out[40:56] = struct.pack("<8h", len(dims), *dims, *([1] * (7 - len(dims))))
    return bytes(out)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dims", [(2048, 2048, 64), (32767, 32767, 32767)])
def test_huge_declared_size_fails_fast_without_allocating(tmp_path: Path, suffix: str, dims: tuple[int, ...]) -> None:
    blob = _with_dims(dims)
    path = tmp_path / f"huge{suffix}"
    path.write_bytes(gzip.compress(blob, mtime=0) if suffix == ".nii.gz" else blob)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(FileFormatError, match="truncated"):
            load_volume(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"peak allocation {peak / 2**20:.0f} MiB for a {len(blob)}-byte file"
    assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_negative_dimensions_are_refused(tmp_path: Path, suffix: str) -> None:
    blob = _with_dims((-28519, -10777, 5))
    path = tmp_path / f"neg{suffix}"
    path.write_bytes(gzip.compress(blob, mtime=0) if suffix == ".nii.gz" else blob)
    with pytest.raises(FileFormatError, match="negative dimensions"):
        load_volume(path)


@pytest.mark.parametrize("affine", [np.zeros((4, 4)), np.diag([1.0, 0.0, 1.0, 1.0]),
                                    np.array([[1.0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])])
def test_degenerate_affine_is_a_file_format_error(tmp_path: Path, affine: np.ndarray) -> None:
    blob = bytearray(RAW)  # nibabel refuses to write such affines: patch the header fields
    blob[252:256] = struct.pack("<hh", 0, 1)  # qform_code 0 (unused), sform_code 1
    blob[280:328] = affine[:3].astype("<f4").tobytes()  # srow_x, srow_y, srow_z
    path = tmp_path / "degenerate.nii"
    path.write_bytes(bytes(blob))
    with pytest.raises(FileFormatError, match="degenerate affine"):
        load_volume(path)


def test_corrupted_npy_header_is_a_file_format_error(tmp_path: Path) -> None:
    """numpy raises tokenize.TokenError / SyntaxError on some broken .npy headers (found by fuzzing)."""
    buf = io.BytesIO()
    np.save(buf, DATA[..., 0])
    blob = bytearray(buf.getvalue())
    header_end = blob.index(b"}")
    for i, byte in enumerate((b"(", b"[", b"{")):
        bad = bytes(blob[:header_end] + byte + blob[header_end + 1 :])
        path = tmp_path / f"bad{i}.npy"
        path.write_bytes(bad)
        with pytest.raises(FileFormatError, match="not a readable .npy"):
            load_image(path)
