"""KCross.from_pretrained against a local Hub endpoint on 127.0.0.1 and an offline cache."""

import hashlib

import pytest
import torch

from hub_server import FakeHub
from kcross_metric import KCross
from kcross_metric.core.nets.kcross_nets import KCrossNetworks
from kcross_metric.errors import ConfigError, WeightsNotFoundError
from kcross_metric.weights import save_safetensors

REPO = "kcross/kcross-metric"


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False, raising=False)
    for var in ("HF_HUB_OFFLINE", "KCROSS_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    server = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    yield server
    server.stop()


@pytest.fixture
def weight_bytes(tmp_path):
    torch.manual_seed(3)
    path = tmp_path / "kcross.safetensors"
    save_safetensors({k: v.contiguous() for k, v in KCrossNetworks().state_dict().items()}, path)
    return path, path.read_bytes()


def test_from_pretrained_pinned_then_offline(hub, weight_bytes, tmp_path, monkeypatch):
    local, content = weight_bytes
    sha = hub.add_commit(REPO, {"kcross.safetensors": content})
    cache = tmp_path / "cache"
    digest = hashlib.sha256(content).hexdigest()
    metric = KCross.from_pretrained(REPO, revision=sha, cache_dir=cache, expected_sha256=digest)
    assert metric.version["revision"] == sha and metric.version["weights_sha256"] == digest
    x = torch.rand(1, 1, 64, 64)
    y = (x + 0.1 * torch.rand_like(x)).clamp(0, 1)
    assert torch.equal(metric(y, x), KCross(weights=local)(y, x))

    hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = KCross.from_pretrained(REPO, revision=sha, cache_dir=cache)
    assert torch.equal(offline(y, x), metric(y, x))


def test_from_pretrained_requires_pinned_revision(hub, weight_bytes, tmp_path):
    hub.add_commit(REPO, {"kcross.safetensors": weight_bytes[1]})
    with pytest.raises(ConfigError):
        KCross.from_pretrained(REPO, revision="main", cache_dir=tmp_path / "c")


def test_from_pretrained_offline_without_cache_is_clear(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError):
        KCross.from_pretrained(REPO, revision="a" * 40, cache_dir=tmp_path / "empty")
