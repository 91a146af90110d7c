"""Tests of kcross_metric.weights: hashing, safe loading, resolution, and real Hub downloads
against a local HTTP server (tests/hub_server.py) speaking the Hub's file-resolve protocol."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch

from hub_server import FakeHub
from kcross_metric import weights as W
from kcross_metric.errors import (
    ChecksumError,
    ConfigError,
    OutputExistsError,
    UntrainedWeightsError,
    WeightsError,
    WeightsNotFoundError,
)

# SHA-256 test vectors from FIPS 180-2.
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "enc.weight": torch.randn(4, 3, 3, 3, generator=g),
        "enc.bias": torch.randn(4, generator=g),
        "half": torch.randn(5, generator=g).half(),
        "steps": torch.arange(7, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
    }


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def weight_file(tmp_path: Path) -> Path:
    path = tmp_path / "kcross.safetensors"
    W.save_safetensors(_tensors(), path, metadata={"arch": "kcross-v1", "data_range": "1.0"})
    return path


# ---------------------------------------------------------------------------------------------
# hashing and checksum files
# ---------------------------------------------------------------------------------------------


def test_sha256_file_matches_fips_vectors_and_streams_large_files(tmp_path: Path) -> None:
    (tmp_path / "abc").write_bytes(b"abc")
    (tmp_path / "empty").write_bytes(b"")
    assert W.sha256_file(tmp_path / "abc") == ABC_SHA256
    assert W.sha256_file(tmp_path / "empty") == EMPTY_SHA256
    big = os.urandom(3 * (1 << 20) + 17)  # spans several 1 MiB chunks
    (tmp_path / "big").write_bytes(big)
    assert W.sha256_file(str(tmp_path / "big")) == hashlib.sha256(big).hexdigest()
    with pytest.raises(WeightsNotFoundError):
        W.sha256_file(tmp_path / "missing")


def test_read_checksums_formats_and_errors(tmp_path: Path) -> None:
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(
        f"# comment\n{ABC_SHA256.upper()}  a.safetensors\n\n{EMPTY_SHA256} *b file.safetensors\n"
    )
    assert W.read_checksums(sums) == {"a.safetensors": ABC_SHA256, "b file.safetensors": EMPTY_SHA256}
    sums.write_text(f"{ABC_SHA256[:-1]}  a.safetensors\n")
    with pytest.raises(WeightsError, match=r"SHA256SUMS:1: malformed"):
        W.read_checksums(sums)
    sums.write_text(f"{ABC_SHA256}  a.safetensors\n{EMPTY_SHA256}  a.safetensors\n")
    with pytest.raises(WeightsError, match="listed twice"):
        W.read_checksums(sums)
    with pytest.raises(WeightsNotFoundError):
        W.read_checksums(tmp_path / "nope")


def test_write_checksums_is_sha256sum_compatible(weight_file: Path) -> None:
    shutil.copy(weight_file, weight_file.with_name("other.safetensors"))
    sums = W.write_checksums(weight_file.parent)
    listed = W.read_checksums(sums)
    assert listed == {
        "kcross.safetensors": W.sha256_file(weight_file),
        "other.safetensors": W.sha256_file(weight_file),
    }
    if shutil.which("sha256sum"):
        done = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=weight_file.parent,
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_verify_file_detects_a_single_flipped_bit(weight_file: Path) -> None:
    good = hashlib.sha256(weight_file.read_bytes()).hexdigest()
    assert W.verify_file(weight_file, good.upper()) == good
    _flip_byte(weight_file, weight_file.stat().st_size - 1)
    with pytest.raises(ChecksumError) as info:
        W.verify_file(weight_file, good)
    message = str(info.value)
    assert str(weight_file) in message and good in message
    assert W.sha256_file(weight_file) in message and "tampered" in message and "truncated" in message
    with pytest.raises(ConfigError, match="64 hexadecimal"):
        W.verify_file(weight_file, "abc123")
    with pytest.raises(WeightsNotFoundError):
        W.verify_file(weight_file.with_name("gone.safetensors"), good)


# ---------------------------------------------------------------------------------------------
# safetensors IO
# ---------------------------------------------------------------------------------------------


def test_save_load_roundtrip_exact_with_metadata(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    digest = W.save_safetensors(_tensors(), path, metadata={"arch": "kcross-v1"})
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    tensors, metadata = W.load_safetensors_with_metadata(path, expected_sha256=digest)
    assert metadata == {"arch": "kcross-v1"}
    reference = _tensors()
    assert tensors.keys() == reference.keys()
    for name, tensor in reference.items():
        assert tensors[name].dtype == tensor.dtype and torch.equal(tensors[name], tensor), name
    # The independent reference reader sees the same content.
    other = safetensors.torch.load_file(str(path))
    assert all(torch.equal(other[k], reference[k]) for k in reference)
    assert W.load_safetensors(path)["steps"].tolist() == list(range(7))


def test_save_refuses_overwrite_and_is_atomic(weight_file: Path) -> None:
    before = weight_file.read_bytes()
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        W.save_safetensors({"x": torch.zeros(2)}, weight_file)
    assert weight_file.read_bytes() == before
    W.save_safetensors({"x": torch.zeros(2)}, weight_file, overwrite=True)
    assert W.load_safetensors(weight_file).keys() == {"x"}
    assert sorted(p.name for p in weight_file.parent.iterdir()) == ["kcross.safetensors"]  # no temp left


def test_save_failure_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        Path(args[1]).write_bytes(b"partial")  # type: ignore[arg-type]
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        W.save_safetensors({"x": torch.zeros(2)}, tmp_path / "w.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_save_validates_arguments_and_handles_tied_weights(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=".safetensors"):
        W.save_safetensors({"x": torch.zeros(1)}, tmp_path / "w.pt")
    bad_meta: dict = {"n": 1}
    with pytest.raises(ConfigError, match="str to str"):
        W.save_safetensors({"x": torch.zeros(1)}, tmp_path / "w.safetensors", metadata=bad_meta)
    with pytest.raises(ConfigError, match="torch.Tensor"):
        W.save_safetensors({"x": [1.0]}, tmp_path / "w.safetensors")  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="empty"):
        W.save_safetensors({}, tmp_path / "w.safetensors")
    shared = torch.randn(3, 3)
    W.save_safetensors({"a": shared, "b": shared, "t": shared.t()}, tmp_path / "tied.safetensors")
    loaded = W.load_safetensors(tmp_path / "tied.safetensors")
    assert torch.equal(loaded["a"], shared) and torch.equal(loaded["b"], shared)
    assert torch.equal(loaded["t"], shared.t())


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pth", ".ckpt", ""])
def test_load_refuses_non_safetensors_extensions(weight_file: Path, suffix: str) -> None:
    renamed = weight_file.with_name("model" + suffix)
    shutil.copy(weight_file, renamed)  # valid safetensors content, wrong name: still refused
    with pytest.raises(WeightsError, match="only '.safetensors'"):
        W.load_safetensors(renamed)


class _Payload:
    """Unpickling this object creates ``marker`` (standing in for arbitrary code execution)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("kind", ["pickle-p2", "pickle-p4", "torch-zip"])
def test_pickle_renamed_safetensors_is_refused_without_unpickling(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.safetensors"
    if kind == "torch-zip":
        torch.save({"w": _Payload(marker)}, evil)
    else:
        evil.write_bytes(pickle.dumps({"w": _Payload(marker)}, protocol=2 if kind == "pickle-p2" else 4))
    assert not marker.exists()

    with pytest.raises(WeightsError, match="not a valid safetensors file") as info:
        W.load_safetensors(evil)
    assert ("zip" in str(info.value)) == (kind == "torch-zip")
    assert "pickle" in str(info.value)
    with pytest.raises(WeightsError):
        W.load_safetensors_with_metadata(evil, expected_sha256=W.sha256_file(evil))
    assert not marker.exists(), "the payload was unpickled"

    # Control: the payload is live, so the assertion above can fail.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(control)))
    assert control.exists()


def test_truncated_files_are_refused(weight_file: Path) -> None:
    data = weight_file.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    cases = {
        "tail": data[:-5],  # tensor data cut short
        "header": data[: 8 + header_len // 2],  # JSON header cut short
        "length": data[:5],  # not even the length field
        "empty": b"",
    }
    for name, content in cases.items():
        weight_file.write_bytes(content)
        with pytest.raises(WeightsError, match="truncated") as info:
            W.load_safetensors(weight_file)
        assert not isinstance(info.value, ChecksumError), name
    weight_file.write_bytes(data[:-5])
    with pytest.raises(ChecksumError):
        W.load_safetensors(weight_file, expected_sha256=hashlib.sha256(data).hexdigest())


def test_corrupt_files_are_refused(weight_file: Path) -> None:
    data = weight_file.read_bytes()
    good = hashlib.sha256(data).hexdigest()
    _flip_byte(weight_file, len(data) - 3)  # flips one bit of a tensor value
    with pytest.raises(ChecksumError, match=good):
        W.load_safetensors(weight_file, expected_sha256=good)
    weight_file.write_bytes(data[:8] + data[8:9].replace(b"{", b"[") + data[9:])
    with pytest.raises(WeightsError, match="JSON object"):
        W.load_safetensors(weight_file)
    weight_file.write_bytes(os.urandom(64))
    with pytest.raises(WeightsError, match="not a valid safetensors file"):
        W.load_safetensors(weight_file)
    with pytest.raises(WeightsNotFoundError):
        W.load_safetensors(weight_file.with_name("absent.safetensors"))
    with pytest.raises(ConfigError, match="device"):
        W.load_safetensors(weight_file.with_name("absent.safetensors"), device="nonsense:0")


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3)
        self.norm = torch.nn.BatchNorm2d(2)


def test_load_state_dict_strict_loads_exact_values() -> None:
    src, dst = _Net(), _Net()
    with torch.no_grad():
        src.conv.weight.fill_(0.25)
        src.norm.running_mean.fill_(3.0)
    W.load_state_dict_strict(dst, src.state_dict())
    assert torch.equal(dst.conv.weight, torch.full((2, 1, 3, 3), 0.25))
    assert torch.equal(dst.norm.running_mean, torch.full((2,), 3.0))


def test_load_state_dict_strict_lists_every_problem() -> None:
    net = _Net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    state = dict(_Net().state_dict())
    del state["conv.bias"]
    state["head.weight"] = torch.zeros(1)
    state["norm.weight"] = torch.zeros(3)
    state["conv.weight"] = torch.full((2, 1, 3, 3), 9.0)
    with pytest.raises(WeightsError) as info:
        W.load_state_dict_strict(net, state)
    message = str(info.value)
    assert "missing keys (1): conv.bias" in message
    assert "unexpected keys (1): head.weight" in message
    assert "norm.weight (file (3,) vs model (2,))" in message
    assert not isinstance(info.value, RuntimeError)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())  # untouched


# ---------------------------------------------------------------------------------------------
# resolution
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No KCROSS_WEIGHTS_DIR, and an empty stand-in for the bundled folder."""
    monkeypatch.delenv(W.WEIGHTS_ENV_VAR, raising=False)
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    monkeypatch.setattr(W, "bundled_dir", lambda: bundled)
    return bundled


def test_resolve_explicit_path(weight_file: Path, no_env: Path) -> None:
    assert W.resolve_weights(weight_file) == weight_file
    assert W.resolve_weights(str(weight_file.parent)) == weight_file  # folder + default filename
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        W.resolve_weights(weight_file.with_name("nope.safetensors"))
    # A SHA256SUMS next to an explicit file is honoured.
    W.write_checksums(weight_file.parent)
    assert W.resolve_weights(weight_file) == weight_file
    _flip_byte(weight_file, 20)
    with pytest.raises(ChecksumError):
        W.resolve_weights(weight_file)


def test_resolve_order_env_then_bundled(weight_file: Path, no_env: Path,
                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shutil.copy(weight_file, no_env / "kcross.safetensors")
    W.write_checksums(no_env)
    assert W.resolve_weights() == no_env / "kcross.safetensors"
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    monkeypatch.setenv(W.WEIGHTS_ENV_VAR, str(env_dir))
    assert W.resolve_weights() == no_env / "kcross.safetensors"  # env dir lacks the file
    shutil.copy(weight_file, env_dir / "kcross.safetensors")
    assert W.resolve_weights() == env_dir / "kcross.safetensors"
    assert W.resolve_weights(weight_file) == weight_file  # explicit wins over both


def test_resolve_bundled_is_verified(weight_file: Path, no_env: Path) -> None:
    bundled = no_env / "kcross.safetensors"
    shutil.copy(weight_file, bundled)
    with pytest.raises(WeightsError, match="SHA256SUMS"):  # unlisted bundled file is a packaging bug
        W.resolve_weights()
    W.write_checksums(no_env)
    assert W.resolve_weights() == bundled
    _flip_byte(bundled, bundled.stat().st_size // 2)
    with pytest.raises(ChecksumError, match="tampered"):
        W.resolve_weights()


def test_resolve_without_weights_never_falls_back_to_random_init(no_env: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    monkeypatch.setenv(W.WEIGHTS_ENV_VAR, str(tmp_path / "empty"))
    with pytest.raises(UntrainedWeightsError) as info:
        W.resolve_weights()
    message = str(info.value)
    needles = ("no pretrained weights", "random", W.WEIGHTS_ENV_VAR, "hub_download", "kcross.safetensors")
    for needle in needles:
        assert needle in message
    with pytest.raises(ConfigError):
        W.resolve_weights(filename="../kcross.safetensors")


def test_resolve_with_the_real_bundled_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(W.WEIGHTS_ENV_VAR, raising=False)
    bundled = W.bundled_dir() / W.DEFAULT_FILENAME
    assert W.bundled_dir().name == "weights"
    if bundled.is_file():  # a build that ships weights must ship matching checksums
        assert W.resolve_weights() == bundled
        W.load_safetensors(bundled)
    else:
        with pytest.raises(UntrainedWeightsError):
            W.resolve_weights()


# ---------------------------------------------------------------------------------------------
# Hugging Face Hub, against a real local HTTP server
# ---------------------------------------------------------------------------------------------

REPO = "kcross/kcross-metric"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    from huggingface_hub import constants

    # No telemetry side-request (it would go to constants.ENDPOINT), and start online.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False, raising=False)
    for var in ("HF_HUB_OFFLINE", W.CACHE_ENV_VAR):
        monkeypatch.delenv(var, raising=False)
    server = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)  # hub_download reads it at call time
    yield server
    server.stop()


@pytest.fixture
def published(hub: FakeHub, weight_file: Path) -> tuple[str, bytes]:
    content = weight_file.read_bytes()
    sha = hub.add_commit(REPO, {"kcross.safetensors": content, "README.md": b"# K-CROSS\n"},
                         tags=("v1.0",))
    return sha, content


def _get(revision: str, cache: Path, **kwargs: object) -> Path:
    return W.hub_download(REPO, "kcross.safetensors", revision=revision, cache_dir=cache,
                          token=False, **kwargs)  # type: ignore[arg-type]


def test_hub_download_pinned_then_offline_from_cache(hub: FakeHub, published: tuple[str, bytes],
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    sha, content = published
    cache = tmp_path / "cache"
    digest = hashlib.sha256(content).hexdigest()
    path = _get(sha, cache, expected_sha256=digest)
    assert cache in path.parents and path.name == "kcross.safetensors"
    assert W.sha256_file(path) == digest
    assert hub.requests == [("HEAD", f"/{REPO}/resolve/{sha}/kcross.safetensors"),
                            ("GET", f"cdn:/lfs/{digest}")]
    assert torch.equal(W.load_safetensors(path, expected_sha256=digest)["enc.weight"],
                       _tensors()["enc.weight"])

    hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _get(sha, cache, expected_sha256=digest) == path
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert _get(sha, cache, local_files_only=True) == path
    assert _get(sha, cache) == path  # pinned + cached: no network needed even when "online"
    assert len(hub.requests) == 2


def test_hub_download_uses_kcross_cache_dir(hub: FakeHub, published: tuple[str, bytes],
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sha, _ = published
    monkeypatch.setenv(W.CACHE_ENV_VAR, str(tmp_path / "envcache"))
    path = W.hub_download(REPO, "kcross.safetensors", revision=sha.upper(), token=False)
    assert (tmp_path / "envcache") in path.parents and sha in str(path)


def test_hub_download_requires_pinned_revision(hub: FakeHub, published: tuple[str, bytes],
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sha, content = published
    cache = tmp_path / "cache"
    for ref in ("main", "v1.0", sha[:12]):
        with pytest.raises(ConfigError, match="40-hex commit SHA"):
            _get(ref, cache)
    with pytest.raises(ConfigError, match="required"):
        _get("", cache)
    assert hub.requests == []
    path = _get("v1.0", cache, allow_unpinned=True)
    assert path.read_bytes() == content and f"snapshots/{sha}/" in path.as_posix()
    hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the tag is resolved through the cached ref
    assert _get("v1.0", cache, allow_unpinned=True) == path


@pytest.mark.parametrize("filename", ["pytorch_model.bin", "model.pt", "ckpt.pth", "../x.safetensors",
                                      "/abs.safetensors"])
def test_hub_download_refuses_non_safetensors_names(hub: FakeHub, published: tuple[str, bytes],
                                                    tmp_path: Path, filename: str) -> None:
    sha, _ = published
    hub.add_commit(REPO, {filename.lstrip("/"): b"\x80\x04K\x01."})
    with pytest.raises(ConfigError):
        W.hub_download(REPO, filename, revision=sha, cache_dir=tmp_path, token=False)
    assert hub.requests == []


def test_hub_download_not_found_errors_are_clear(hub: FakeHub, published: tuple[str, bytes],
                                                 tmp_path: Path) -> None:
    sha, _ = published
    unknown = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(WeightsNotFoundError, match=f"revision '{unknown}' does not exist"):
        _get(unknown, tmp_path)
    with pytest.raises(WeightsNotFoundError, match="'other.safetensors' does not exist"):
        W.hub_download(REPO, "other.safetensors", revision=sha, cache_dir=tmp_path, token=False)
    with pytest.raises(WeightsNotFoundError, match="repository 'nobody/nothing' was not found"):
        W.hub_download("nobody/nothing", "kcross.safetensors", revision=sha, cache_dir=tmp_path,
                       token=False)
    with pytest.raises(ConfigError):
        W.hub_download("bad repo id!!", "kcross.safetensors", revision=sha, cache_dir=tmp_path,
                       token=False)


def test_hub_offline_with_empty_cache(hub: FakeHub, published: tuple[str, bytes], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    sha, _ = published
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match=r"not in the cache .* offline"):
        _get(sha, tmp_path / "empty")
    with pytest.raises(FileNotFoundError):  # WeightsNotFoundError is also a FileNotFoundError
        _get(sha, tmp_path / "empty", local_files_only=True)
    assert hub.requests == []


def test_hub_unreachable_with_empty_cache(hub: FakeHub, published: tuple[str, bytes], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    sha, _ = published
    hub.stop()
    # huggingface_hub retries a refused connection with exponential back-off (~23 s); skip the waits.
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    with pytest.raises(WeightsNotFoundError, match="nothing could be reached"):
        _get(sha, tmp_path / "empty")


def test_hub_tampered_content_vs_expected_sha256(hub: FakeHub, published: tuple[str, bytes],
                                                 tmp_path: Path) -> None:
    sha, content = published
    # The repository now consistently serves other bytes (hub headers agree with them).
    evil = bytearray(content)
    evil[-1] ^= 0xFF
    evil_sha = hub.add_commit(REPO, {"kcross.safetensors": bytes(evil)})
    with pytest.raises(ChecksumError, match=hashlib.sha256(content).hexdigest()):
        _get(evil_sha, tmp_path, expected_sha256=hashlib.sha256(content).hexdigest())
    assert _get(sha, tmp_path, expected_sha256=hashlib.sha256(content).hexdigest()).read_bytes() == content


def test_hub_corrupted_transfer_is_caught_and_evicted(hub: FakeHub, published: tuple[str, bytes],
                                                      tmp_path: Path) -> None:
    sha, content = published
    bad = bytearray(content)
    bad[len(bad) // 2] ^= 0x01
    hub.tamper_cdn(content, bytes(bad))  # the CDN disagrees with the SHA-256 the Hub announced
    with pytest.raises(ChecksumError, match="announced"):
        _get(sha, tmp_path)  # caught even without expected_sha256
    assert not list((tmp_path).rglob(hashlib.sha256(content).hexdigest()))  # evicted from cache
    hub.tamper_cdn(content, content)
    assert _get(sha, tmp_path).read_bytes() == content


def test_hub_truncated_transfer(hub: FakeHub, published: tuple[str, bytes], tmp_path: Path) -> None:
    sha, content = published
    hub.tamper_cdn(content, content[:-10])
    cache = tmp_path / "cache"
    with pytest.raises(WeightsError) as info:
        _get(sha, cache)
    assert not isinstance(info.value, WeightsNotFoundError)
    assert "incomplete" in str(info.value)
    assert not list(cache.rglob("kcross.safetensors"))  # no partial file left in the cache


def test_fake_hub_model_info_route(hub: FakeHub, published: tuple[str, bytes]) -> None:
    import json
    import urllib.request

    sha, _ = published
    with urllib.request.urlopen(f"{hub.url}/api/models/{REPO}/revision/main") as response:  # noqa: S310
        info = json.load(response)
    assert info["sha"] == sha and {s["rfilename"] for s in info["siblings"]} == {"kcross.safetensors",
                                                                                 "README.md"}
