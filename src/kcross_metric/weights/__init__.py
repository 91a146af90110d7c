"""Weight files: resolution, SHA-256 verification, safe loading and Hugging Face Hub access.

K-CROSS (and the learned parts of its baselines) are networks whose parameters live in
``.safetensors`` files. This module is the only place that touches them, and it guarantees:

* **No pickle, ever.** Only safetensors files are read; the extension *and* the binary header
  (8-byte little-endian header length followed by a JSON object) are checked before anything
  else, so a ``torch.save``/pickle checkpoint renamed ``.safetensors`` is refused without being
  unpickled. ``torch.load`` is never called.
* **Integrity.** Bundled files are checked against the package's ``SHA256SUMS``; any directory
  holding a ``SHA256SUMS`` that lists the file is checked too; callers can pin
  ``expected_sha256``; Hub downloads of LFS files are checked against the SHA-256 the Hub
  announced, and against ``expected_sha256`` when given.
* **Pinned revisions.** Hub downloads take a revision that must be a 40-hex commit SHA unless the
  caller explicitly opts into a moving branch/tag with ``allow_unpinned=True``.
* **No silent random init.** :func:`resolve_weights` raises :class:`UntrainedWeightsError` when no
  pretrained file exists instead of letting a caller fall back to random parameters.

Resolution order of :func:`resolve_weights` (see ``docs/weights.md``): explicit path ->
``$KCROSS_WEIGHTS_DIR/<filename>`` -> bundled ``<package>/weights/<filename>`` (verified) -> error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .._util.files import atomic_write, atomic_write_text
from .._util.files import sha256_file as _sha256_file
from ..errors import (
    ChecksumError,
    ConfigError,
    OutputExistsError,
    UntrainedWeightsError,
    WeightsError,
    WeightsNotFoundError,
)

if TYPE_CHECKING:  # pragma: no cover
    import types

    import torch

__all__ = [
    "CACHE_ENV_VAR",
    "CHECKSUMS_FILENAME",
    "DEFAULT_FILENAME",
    "WEIGHTS_ENV_VAR",
    "bundled_dir",
    "hub_download",
    "is_commit_sha",
    "load_safetensors",
    "load_safetensors_with_metadata",
    "load_state_dict_strict",
    "read_checksums",
    "Located",
    "SearchFolder",
    "locate_file",
    "resolve_weights",
    "save_safetensors",
    "sha256_file",
    "verify_file",
    "write_checksums",
]

WEIGHTS_ENV_VAR = "KCROSS_WEIGHTS_DIR"
CACHE_ENV_VAR = "KCROSS_CACHE_DIR"
CHECKSUMS_FILENAME = "SHA256SUMS"
DEFAULT_FILENAME = "kcross.safetensors"
SAFETENSORS_SUFFIX = ".safetensors"

# The safetensors reference implementation refuses headers above 100 MB; so do we, before
# allocating anything, so that an arbitrary binary file cannot make us read gigabytes.
_MAX_HEADER_BYTES = 100_000_000
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
_COMMIT_RE = re.compile(r"[0-9a-fA-F]{40}")
_CHECKSUM_LINE_RE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")
_PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".tar", ".zip"}


# --------------------------------------------------------------------------------------------
# Hashing and checksum files
# --------------------------------------------------------------------------------------------


def bundled_dir() -> Path:
    """Folder of the weights shipped inside the package (``kcross_metric/weights/``)."""
    return Path(__file__).resolve().parent


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Lower-case hex SHA-256 of a weight file, read in 1 MiB chunks (constant memory)."""
    try:
        return _sha256_file(path)
    except FileNotFoundError as exc:
        raise WeightsNotFoundError(f"weight file {str(path)!r} does not exist") from exc
    except IsADirectoryError as exc:
        raise WeightsError(f"{str(path)!r} is a directory, expected a weight file") from exc


def _normalize_sha256(value: str, what: str = "expected_sha256") -> str:
    if not isinstance(value, str) or not _SHA256_RE.fullmatch(value.strip()):
        raise ConfigError(f"{what} must be 64 hexadecimal characters (a SHA-256 digest), got {value!r}")
    return value.strip().lower()


def read_checksums(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse a ``sha256sum``-format file into ``{filename: lower-case hex digest}``.

    Lines look like ``"<64 hex>  <filename>"`` (text mode) or ``"<64 hex> *<filename>"`` (binary
    mode). Blank lines and lines starting with ``#`` are ignored. A malformed line, or a filename
    listed twice with different digests, raises :class:`WeightsError`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise WeightsNotFoundError(f"checksum file {str(path)!r} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise WeightsError(f"checksum file {str(path)!r} is not UTF-8 text") from exc
    sums: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _CHECKSUM_LINE_RE.fullmatch(line)
        if match is None:
            raise WeightsError(
                f"{str(path)}:{lineno}: malformed checksum line {raw!r}; expected "
                "'<64 hex digits>  <filename>' as written by sha256sum"
            )
        digest, name = match.group(1).lower(), match.group(2).strip()
        if name in sums and sums[name] != digest:
            raise WeightsError(f"{str(path)}:{lineno}: {name!r} is listed twice with different digests")
        sums[name] = digest
    return sums


def write_checksums(
    directory: str | os.PathLike[str],
    filenames: Iterable[str] | None = None,
) -> Path:
    """Write ``<directory>/SHA256SUMS`` for ``filenames`` (default: every ``*.safetensors`` there).

    The file is written atomically and sorted by name, in the format of ``sha256sum``, so that
    ``sha256sum -c SHA256SUMS`` checks it. Returns the path of the checksum file.
    """
    directory = Path(directory)
    if filenames is None:
        names = sorted(p.name for p in directory.glob(f"*{SAFETENSORS_SUFFIX}") if p.is_file())
    else:
        names = sorted(set(filenames))
    if not names:
        raise WeightsNotFoundError(f"no weight files to list in {str(directory)!r}")
    lines = [f"{sha256_file(directory / name)}  {name}\n" for name in names]
    target = directory / CHECKSUMS_FILENAME
    atomic_write_text(target, "".join(lines), overwrite=True)
    return target


def verify_file(path: str | os.PathLike[str], expected_sha256: str) -> str:
    """Check that ``path`` has SHA-256 ``expected_sha256``; return the digest.

    Raises:
        WeightsNotFoundError: the file does not exist.
        ChecksumError: the digest differs (the file may have been tampered with or truncated).
        ConfigError: ``expected_sha256`` is not a 64-hex digest.
    """
    expected = _normalize_sha256(expected_sha256)
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(
            f"SHA-256 mismatch for weight file {str(path)!r}: expected {expected}, got {actual}. "
            "The file may have been tampered with, truncated or corrupted; re-download it or "
            "restore it from a trusted source."
        )
    return actual


def _verify_against_sidecar(path: Path, *, required: bool) -> None:
    """Verify ``path`` against a ``SHA256SUMS`` in its folder, if one lists it (or if required)."""
    sums_path = path.parent / CHECKSUMS_FILENAME
    if not sums_path.is_file():
        if required:
            raise WeightsError(
                f"{str(path)!r} has no {CHECKSUMS_FILENAME} next to it; bundled weights must be "
                "listed there (packaging error)"
            )
        return
    sums = read_checksums(sums_path)
    if path.name not in sums:
        if required:
            raise WeightsError(
                f"{path.name!r} is not listed in {str(sums_path)!r}; bundled weights must have a "
                "recorded SHA-256 (packaging error)"
            )
        return
    verify_file(path, sums[path.name])


# --------------------------------------------------------------------------------------------
# safetensors reading / writing
# --------------------------------------------------------------------------------------------


def _sniff_foreign_format(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return " It looks like a zip archive, e.g. a torch.save() checkpoint (pickle inside)."
    if head[:1] == b"\x80" and head[1:2] in {bytes([p]) for p in range(2, 6)}:
        return " It looks like a Python pickle (e.g. a legacy torch.save() checkpoint)."
    if head.startswith(b"\x89HDF"):
        return " It looks like an HDF5 file."
    if head.startswith(b"\x93NUMPY"):
        return " It looks like a NumPy .npy file."
    return ""


def _parse_header(data: bytes, path: Path) -> tuple[dict[str, Any], int]:
    """Validate the safetensors header of ``data``; return (header dict, data-region offset)."""
    refuse = (
        f"{str(path)!r} is not a valid safetensors file"
        " (kcross-metric only loads safetensors and never unpickles)."
    )
    if len(data) < 8:
        raise WeightsError(
            f"{refuse} It has {len(data)} bytes, fewer than the 8-byte header length: the file is "
            "empty or truncated."
        )
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len < 2 or header_len > _MAX_HEADER_BYTES:
        raise WeightsError(
            f"{refuse} The first 8 bytes give a header length of {header_len}."
            + _sniff_foreign_format(data[:8])
        )
    if 8 + header_len > len(data):
        raise WeightsError(
            f"{refuse} The header declares {header_len} bytes but the file has only "
            f"{len(data) - 8} after the length field: truncated."
        )
    raw = data[8 : 8 + header_len]
    if raw[:1] != b"{":
        raise WeightsError(
            f"{refuse} The header does not start with a JSON object." + _sniff_foreign_format(data[:8])
        )
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{refuse} Its JSON header cannot be parsed ({exc}).") from exc
    if not isinstance(header, dict):
        raise WeightsError(f"{refuse} Its header is not a JSON object.")

    data_start = 8 + header_len
    data_len = len(data) - data_start
    end_max = 0
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in info.items()
            ):
                raise WeightsError(f"{refuse} '__metadata__' must map strings to strings.")
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]
            or "dtype" not in info
            or not isinstance(info.get("shape"), list)
        ):
            raise WeightsError(f"{refuse} Entry {name!r} lacks a valid dtype/shape/data_offsets.")
        end_max = max(end_max, offsets[1])
    if end_max > data_len:
        raise WeightsError(
            f"{str(path)!r} is truncated: its header declares {end_max} bytes of tensor data but only "
            f"{data_len} are present. Re-download or restore the file."
        )
    return header, data_start


def _check_suffix(path: Path) -> None:
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        return
    hint = ""
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        hint = (
            f" '{path.suffix}' files are usually pickle-based checkpoints, which can execute "
            "arbitrary code when loaded; convert a *trusted* checkpoint once with "
            "torch.load(..., weights_only=True) followed by kcross_metric.weights.save_safetensors()."
        )
    raise WeightsError(
        f"refusing to load {str(path)!r}: only '{SAFETENSORS_SUFFIX}' weight files are accepted.{hint}"
    )


def _resolve_device(device: str | torch.device) -> torch.device:
    import torch

    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"invalid device {device!r}: {exc}") from exc


def load_safetensors_with_metadata(
    path: str | os.PathLike[str],
    *,
    expected_sha256: str | None = None,
    device: str | torch.device = "cpu",
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load a ``.safetensors`` file; return ``(tensors, metadata)``.

    The file is read once into memory; its SHA-256 (if ``expected_sha256`` is given) and its
    header are checked on those very bytes, so what is verified is what is loaded.

    Args:
        path: a file whose name ends with ``.safetensors``.
        expected_sha256: 64-hex digest the file must have (checked before parsing).
        device: where to put the tensors (``"cpu"``, ``"cuda:0"``, ...).

    Returns:
        ``tensors`` maps names to tensors (dtype and shape as stored), ``metadata`` is the
        file's ``__metadata__`` string map (empty if absent).

    Raises:
        WeightsNotFoundError: missing file. WeightsError: wrong extension, not a safetensors file,
        truncated or corrupt. ChecksumError: digest mismatch. ConfigError: bad argument.
    """
    path = Path(path)
    _check_suffix(path)
    expected = _normalize_sha256(expected_sha256) if expected_sha256 is not None else None
    dev = _resolve_device(device)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise WeightsNotFoundError(f"weight file {str(path)!r} does not exist") from exc
    except IsADirectoryError as exc:
        raise WeightsError(f"{str(path)!r} is a directory, expected a .safetensors file") from exc
    if expected is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise ChecksumError(
                f"SHA-256 mismatch for weight file {str(path)!r}: expected {expected}, got {actual}. "
                "The file may have been tampered with, truncated or corrupted; re-download it or "
                "restore it from a trusted source."
            )
    header, _ = _parse_header(data, path)
    metadata = dict(header.get("__metadata__") or {})

    import safetensors
    import safetensors.torch

    try:
        tensors = safetensors.torch.load(data)
    except (safetensors.SafetensorError, ValueError, TypeError, RuntimeError) as exc:
        raise WeightsError(f"{str(path)!r} is a corrupt safetensors file: {exc}") from exc
    if dev.type != "cpu":
        tensors = {name: t.to(dev) for name, t in tensors.items()}
    return tensors, metadata


def load_safetensors(
    path: str | os.PathLike[str],
    *,
    expected_sha256: str | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Load the tensors of a ``.safetensors`` file (see :func:`load_safetensors_with_metadata`)."""
    tensors, _ = load_safetensors_with_metadata(path, expected_sha256=expected_sha256, device=device)
    return tensors


def save_safetensors(
    tensors: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> str:
    """Write ``tensors`` to ``path`` atomically (temp file + ``os.replace``); return its SHA-256.

    Tensors are detached, moved to CPU and made contiguous; tensors sharing storage (tied
    weights) are copied so that safetensors accepts them. ``metadata`` must map str to str.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        ConfigError: wrong extension, non-string metadata, non-tensor values, empty ``tensors``.
    """
    import torch

    path = Path(path)
    if path.suffix.lower() != SAFETENSORS_SUFFIX:
        raise ConfigError(f"weight files must be written as '{SAFETENSORS_SUFFIX}', got {str(path)!r}")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{str(path)!r} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if not tensors:
        raise ConfigError("refusing to write an empty weight file: 'tensors' is empty")
    meta: dict[str, str] | None = None
    if metadata is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ConfigError(
                "safetensors metadata must map str to str (serialize other values, e.g. with json.dumps)"
            )
        meta = dict(metadata)

    prepared: dict[str, torch.Tensor] = {}
    seen_storages: set[tuple[int, int]] = set()
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise ConfigError(
                f"tensors must map str to torch.Tensor, got {type(name).__name__} -> {type(tensor).__name__}"
            )
        t = tensor.detach().to("cpu").contiguous()
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if t.numel() > 0 and key in seen_storages:
            t = t.clone()
        elif t.numel() > 0:
            seen_storages.add(key)
        prepared[name] = t

    import safetensors.torch

    # weight files are published into folders the caller names (run directories are created)
    atomic_write(path, lambda tmp: safetensors.torch.save_file(prepared, str(tmp), metadata=meta),
                 overwrite=overwrite, make_parents=True)
    return sha256_file(path)


def _listing(title: str, items: list[str], limit: int = 20) -> str:
    shown = ", ".join(items[:limit])
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"{title} ({len(items)}): {shown}{more}"


def load_state_dict_strict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load ``state_dict`` into ``module`` requiring exactly matching keys and shapes.

    Unlike ``module.load_state_dict`` (which raises a bare RuntimeError), every missing key,
    unexpected key and shape mismatch is listed in one :class:`WeightsError`, so a weight file
    for the wrong architecture or version is diagnosed at once. Nothing is modified on error.
    """
    expected = module.state_dict()
    missing = sorted(k for k in expected if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in expected)
    mismatched = sorted(
        f"{k} (file {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)})"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or mismatched:
        parts = [
            _listing(title, items)
            for title, items in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", mismatched),
            )
            if items
        ]
        raise WeightsError(
            f"weights do not match {type(module).__name__}: " + "; ".join(parts)
            + ". The file was probably saved for another architecture or package version."
        )
    try:
        module.load_state_dict(dict(state_dict), strict=True)
    except RuntimeError as exc:  # e.g. dtype that cannot be copied
        raise WeightsError(f"could not load weights into {type(module).__name__}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------


class SearchFolder(NamedTuple):
    """A place :func:`locate_file` looks in; ``label`` names it in messages, ``folder`` is ``None``
    when the place is not configured (an unset variable); ``names``, if given, replaces the file
    names looked for in this place."""

    label: str
    folder: Path | None
    names: tuple[str, ...] | None = None


class Located(NamedTuple):
    """What :func:`locate_file` found: the file (``None`` if nothing), the place it was found in
    (``None`` for an explicit path) and the places tried before, for error messages."""

    path: Path | None
    place: SearchFolder | None
    tried: list[str]


def locate_file(
    names: Sequence[str],
    places: Sequence[SearchFolder],
    *,
    explicit: str | os.PathLike[str] | None = None,
    what: str = "weight file",
) -> Located:
    """The one search every weight file goes through (K-CROSS weights, ImageNet backbones).

    An ``explicit`` path (a file, or a folder holding one of ``names``) wins and nothing else is
    tried; it must exist (:class:`WeightsNotFoundError`). Otherwise the first of ``names`` found in
    the first of ``places`` that holds one. Checksums are the caller's job (policies differ: the
    bundled folder must list its files, backbone ``.npz`` files are checked when listed).
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_dir():
            found = next((path / n for n in names if (path / n).is_file()), None)
            if found is None:
                raise WeightsNotFoundError(
                    f"{what} folder {str(path)!r} holds no {' or '.join(names)} (passed explicitly; nothing else was tried)"
                )
            return Located(found, None, [])
        if not path.is_file():
            raise WeightsNotFoundError(f"{what} {str(path)!r} does not exist (passed explicitly; nothing else was tried)")
        return Located(path, None, [])
    tried: list[str] = []
    for place in places:
        if place.folder is None:
            tried.append(f"{place.label} (not set)")
            continue
        wanted = place.names or names
        found = next((place.folder / n for n in wanted if (place.folder / n).is_file()), None)
        if found is not None:
            return Located(found, place, tried)
        tried.append(f"{place.label} ({str(place.folder)!r}: no {' or '.join(wanted)})")
    return Located(None, None, tried)


def folder_from_env(variable: str) -> Path | None:
    """The folder an environment variable names (``None`` if unset or blank; not checked)."""
    value = os.environ.get(variable, "").strip()
    return Path(value).expanduser() if value else None


def resolve_weights(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    filename: str = DEFAULT_FILENAME,
) -> Path:
    """Find the weight file to use; never returns something unverified or a random-init placeholder.

    Order:
      1. ``name_or_path`` if given: a file (must exist) or a directory containing ``filename``;
         otherwise :class:`WeightsNotFoundError`.
      2. ``$KCROSS_WEIGHTS_DIR/<filename>`` if the variable is set and the file exists.
      3. ``bundled_dir()/<filename>``, verified against the bundled ``SHA256SUMS``.
      4. :class:`UntrainedWeightsError` explaining how to obtain and pass weights.

    Files in a folder that holds a ``SHA256SUMS`` listing them are verified (steps 1-2), bundled
    files must be listed (step 3). Loading itself is :func:`load_safetensors`.
    """
    if not isinstance(filename, str) or not filename or Path(filename).name != filename:
        raise ConfigError(f"filename must be a bare file name such as {DEFAULT_FILENAME!r}, got {filename!r}")
    bundled = SearchFolder("bundled", bundled_dir())
    path, place, tried = locate_file(
        [filename], [SearchFolder(f"${WEIGHTS_ENV_VAR}", folder_from_env(WEIGHTS_ENV_VAR)), bundled], explicit=name_or_path
    )
    if path is not None:
        _verify_against_sidecar(path, required=place == bundled)
        return path
    raise UntrainedWeightsError(
        f"no pretrained weights {filename!r} found; this build of kcross-metric bundles no "
        f"pretrained weights for it, and kcross-metric never falls back to random initialization. "
        f"Looked at: {'; '.join(tried)}. To use trained weights, either pass a path explicitly "
        f"(e.g. weights='/path/to/{filename}'), set {WEIGHTS_ENV_VAR} to a folder containing "
        f"{filename!r}, download a published file with kcross_metric.weights.hub_download(repo_id, "
        f"{filename!r}, revision='<40-hex commit sha>') and pass the returned path, or train your "
        "own with kcross-train. See docs/weights.md."
    )


# --------------------------------------------------------------------------------------------
# Hugging Face Hub
# --------------------------------------------------------------------------------------------


def is_commit_sha(revision: str) -> bool:
    """True if ``revision`` is a full 40-hex git commit SHA (an immutable, pinned revision)."""
    return isinstance(revision, str) and _COMMIT_RE.fullmatch(revision) is not None


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hub_exceptions() -> dict[str, tuple[type[BaseException], ...]]:
    """huggingface_hub's exception classes (their module moved between versions)."""
    import huggingface_hub.utils as hf_utils

    hf_errors: types.ModuleType
    try:
        import huggingface_hub.errors as hf_errors
    except ImportError:  # pragma: no cover - huggingface_hub < 0.23
        hf_errors = hf_utils

    def get(*names: str) -> tuple[type[BaseException], ...]:
        found = [getattr(hf_errors, n, None) or getattr(hf_utils, n, None) for n in names]
        return tuple(cls for cls in found if isinstance(cls, type))

    transport: list[type[BaseException]] = []
    for module_name, attr in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                              ("requests.exceptions", "ConnectionError"),
                              ("requests.exceptions", "Timeout")):
        try:
            module = __import__(module_name, fromlist=[attr])
        except ImportError:
            continue
        cls = getattr(module, attr, None)
        if isinstance(cls, type):
            transport.append(cls)
    return {
        "local": get("LocalEntryNotFoundError"),
        "revision": get("RevisionNotFoundError"),
        "repo": get("RepositoryNotFoundError"),
        "entry": get("EntryNotFoundError", "RemoteEntryNotFoundError"),
        "http": get("HfHubHTTPError"),
        "validation": get("HFValidationError"),
        "offline": get("OfflineModeIsEnabled"),
        "transport": tuple(transport) + (ConnectionError, TimeoutError),
    }


def _check_hub_filename(filename: str) -> None:
    if not isinstance(filename, str) or not filename:
        raise ConfigError(f"filename must be a non-empty string, got {filename!r}")
    parts = filename.split("/")
    if filename.startswith("/") or "\\" in filename or any(p in {"", ".", ".."} for p in parts):
        raise ConfigError(f"filename must be a relative path inside the repository, got {filename!r}")
    if not filename.endswith(SAFETENSORS_SUFFIX):
        raise ConfigError(
            f"refusing to download {filename!r}: only '{SAFETENSORS_SUFFIX}' files are allowed "
            "(pickle-based .bin/.pt/.ckpt checkpoints can execute code when loaded)"
        )


def _hub_blob_sha256(pointer: Path) -> str | None:
    """The SHA-256 the Hub announced for an LFS file (its cache blob is named after it)."""
    if not pointer.is_symlink():
        return None
    name = Path(os.path.realpath(pointer)).name
    return name.lower() if _SHA256_RE.fullmatch(name) else None


def hub_download(
    repo_id: str,
    filename: str,
    *,
    revision: str,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool | None = None,
    expected_sha256: str | None = None,
    allow_unpinned: bool = False,
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> Path:
    """Download (or take from cache) ``filename`` of Hub model repo ``repo_id`` at ``revision``.

    Args:
        repo_id: ``"owner/name"`` of a Hugging Face Hub model repository.
        filename: path of a ``.safetensors`` file in the repository (other kinds are refused).
        revision: a 40-hex commit SHA (recommended: immutable). A branch or tag name is accepted
            only with ``allow_unpinned=True``, because what it points to can change.
        cache_dir: cache folder; default ``$KCROSS_CACHE_DIR``, else huggingface_hub's default.
        local_files_only: never touch the network; default True iff ``HF_HUB_OFFLINE`` is set.
        expected_sha256: 64-hex digest the file must have.
        allow_unpinned: accept a branch/tag ``revision``.
        endpoint: Hub URL; default ``$HF_ENDPOINT`` (read at call time), else huggingface.co.
        token: passed to huggingface_hub (None: its stored token, if any).

    Returns:
        Path of the file in the cache (read-only use; load it with :func:`load_safetensors`).

    Raises:
        ConfigError: unpinned revision, non-safetensors filename, bad repo id or digest.
        WeightsNotFoundError: not in cache while offline, Hub unreachable, or repository /
            revision / file not found.
        ChecksumError: downloaded bytes differ from the Hub's announced SHA-256 (the corrupt
            cache entry is removed) or from ``expected_sha256``.
        WeightsError: the transfer failed half-way (e.g. size mismatch).
    """
    _check_hub_filename(filename)
    if not isinstance(revision, str) or not revision.strip():
        raise ConfigError(
            "revision is required: pass the 40-hex commit SHA of the Hub repository to pin the weights"
        )
    revision = revision.strip()
    if is_commit_sha(revision):
        revision = revision.lower()
    elif not allow_unpinned:
        raise ConfigError(
            f"revision {revision!r} is not a 40-hex commit SHA: a branch or tag can move, so the "
            "weights would not be reproducible or verifiable. Pin the commit SHA (shown in the "
            "repository's history on the Hub), or pass allow_unpinned=True to accept a moving reference."
        )
    expected = _normalize_sha256(expected_sha256) if expected_sha256 is not None else None

    if cache_dir is None and os.environ.get(CACHE_ENV_VAR, "").strip():
        cache_dir = os.environ[CACHE_ENV_VAR].strip()
    cache = str(Path(cache_dir).expanduser()) if cache_dir is not None else None
    if endpoint is None and os.environ.get("HF_ENDPOINT", "").strip():
        endpoint = os.environ["HF_ENDPOINT"].strip()
    endpoint = endpoint.rstrip("/") if endpoint else None

    import huggingface_hub
    from huggingface_hub import constants as hf_constants

    if local_files_only is None:
        local_files_only = _env_true("HF_HUB_OFFLINE") or bool(getattr(hf_constants, "HF_HUB_OFFLINE", False))
    offline = bool(local_files_only)
    where = f"{repo_id}@{revision}/{filename}"
    cache_desc = cache or getattr(hf_constants, "HF_HUB_CACHE", "the huggingface_hub cache")
    hub = endpoint or getattr(hf_constants, "ENDPOINT", "https://huggingface.co")
    exc_types = _hub_exceptions()

    from .._version import __version__

    try:
        local = huggingface_hub.hf_hub_download(
            repo_id=repo_id,
            filename=filename,
            revision=revision,
            cache_dir=cache,
            local_files_only=offline,
            endpoint=endpoint,
            token=token,
            library_name="kcross-metric",
            library_version=__version__,
        )
    except exc_types["local"] as exc:
        if offline:
            msg = (
                f"{where} is not in the cache ({cache_desc}) and offline mode is on "
                "(HF_HUB_OFFLINE=1 or local_files_only=True): download it once while online "
                f"(same cache_dir / ${CACHE_ENV_VAR}), or pass a local file path instead."
            )
        else:
            msg = (
                f"could not reach the Hugging Face Hub at {hub} to get {where}, and it is not in the "
                f"cache ({cache_desc}); nothing could be reached. Check the network/proxy or "
                "HF_ENDPOINT, or pass a local file path instead."
            )
        raise WeightsNotFoundError(f"{msg} (cause: {exc})") from exc
    except exc_types["revision"] as exc:
        raise WeightsNotFoundError(f"revision {revision!r} does not exist in Hub repository {repo_id!r} "
                                   f"({hub}); check the commit SHA") from exc
    except exc_types["repo"] as exc:
        raise WeightsNotFoundError(f"Hub repository {repo_id!r} was not found at {hub} (or it is "
                                   "private/gated and no valid token was given)") from exc
    except exc_types["entry"] as exc:
        raise WeightsNotFoundError(f"file {filename!r} does not exist in {repo_id!r} at revision "
                                   f"{revision!r}") from exc
    except exc_types["http"] as exc:
        raise WeightsNotFoundError(f"the Hub at {hub} refused {where}: {exc}") from exc
    except exc_types["validation"] as exc:
        raise ConfigError(f"invalid Hub repository id or revision for {where}: {exc}") from exc
    except exc_types["transport"] as exc:
        raise WeightsNotFoundError(
            f"the download of {where} from {hub} failed: nothing could be reached or the connection "
            f"broke ({type(exc).__name__}: {exc}). Retry, or pass a local file path."
        ) from exc
    except OSError as exc:
        raise WeightsError(f"the download of {where} from {hub} failed or is incomplete: {exc}") from exc

    path = Path(local)
    announced = _hub_blob_sha256(path)
    actual = sha256_file(path)
    if announced is not None and actual != announced:
        blob = Path(os.path.realpath(path))
        path.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
        raise ChecksumError(
            f"SHA-256 mismatch for {where}: the Hub announced {announced} but the downloaded file "
            f"has {actual}; it was corrupted or tampered with in transit or in the cache, and the "
            "bad cache entry was removed. Retry the download."
        )
    if expected is not None and actual != expected:
        raise ChecksumError(
            f"SHA-256 mismatch for {where} ({str(path)!r}): expected {expected}, got {actual}. The "
            "file may have been tampered with or truncated, or the revision holds different weights "
            "than the ones you pinned."
        )
    return path
