"""ImageNet backbones on first use: downloaded (hash-checked) into the torch hub cache from a local
HTTP server on 127.0.0.1 standing in for download.pytorch.org, never when offline, pre-fetched with
``fetch_backbones`` / ``kcross-score --fetch-backbones``, and errors in the caller's words."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from kcross_metric.baselines import DISTS, LPIPSAlex, backbone_available, fetch_backbones
from kcross_metric.baselines import _backbones as B
from kcross_metric.cli.score import main as score_main
from kcross_metric.errors import BackboneNotFoundError, ChecksumError
from kcross_metric.weights import bundled_dir, load_safetensors


class _Server:
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1; ``requests`` logs every GET."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _alexnet_checkpoint() -> tuple[dict[str, torch.Tensor], bytes]:
    """A torchvision-layout AlexNet checkpoint (random weights, plus a classifier as the real one has)."""
    torch.manual_seed(0)
    state = {f"features.{k}": v.clone() for k, v in B.alexnet_features().state_dict().items()}
    buf = io.BytesIO()
    torch.save({**state, "classifier.1.weight": torch.zeros(4, 4)}, buf)
    return state, buf.getvalue()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[_Server, dict[str, torch.Tensor], Path]]:
    """A user with internet and nothing on disk: empty shared folder and hub cache, downloads allowed,
    the AlexNet checkpoint served under a name carrying its own SHA-256 prefix."""
    state, blob = _alexnet_checkpoint()
    prefix = hashlib.sha256(blob).hexdigest()[:8]
    name = f"alexnet-test-{prefix}.pth"
    monkeypatch.setitem(B.TORCHVISION_CHECKPOINTS, "alex", (name, prefix))
    empty = tmp_path / "shared"
    (empty / "data").mkdir(parents=True)
    monkeypatch.setenv("KCROSS_SHARED_DIR", str(empty))
    monkeypatch.delenv(B.ENV_VAR, raising=False)
    monkeypatch.delenv(B.OFFLINE_ENV_VAR, raising=False)
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    srv = _Server()
    srv.files[f"/models/{name}"] = blob
    monkeypatch.setenv(B.URL_ENV_VAR, srv.url)
    yield srv, state, hub / "checkpoints" / name
    srv.close()


def test_first_use_downloads_once_into_the_hub_cache(server) -> None:  # type: ignore[no-untyped-def]
    srv, state, cached = server
    assert not backbone_available("alex")
    metric = LPIPSAlex()
    assert len(srv.requests) == 1 and cached.is_file()
    for key, value in state.items():  # features from the download, LPIPS heads from the package
        torch.testing.assert_close(metric.backbone.state_dict()[key], value, rtol=0, atol=0)
    heads = load_safetensors(bundled_dir() / B.HEADS_FILE)
    torch.testing.assert_close(metric.lins[0].weight, heads["lpips_alex.lin0.weight"], rtol=0, atol=0)
    assert backbone_available("alex")
    LPIPSAlex()
    assert len(srv.requests) == 1, "the second use must read the cache"


def test_wrong_hash_keeps_nothing(server, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    srv, _, cached = server
    name, _ = B.TORCHVISION_CHECKPOINTS["alex"]
    monkeypatch.setitem(B.TORCHVISION_CHECKPOINTS, "alex", (name, "00000000"))
    with pytest.raises(ChecksumError, match="does not start with 00000000"):
        LPIPSAlex()
    assert list(cached.parent.iterdir()) == [], "neither the file nor a temp file may be left"


def test_offline_never_requests_and_says_what_to_do(server, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    srv, _, _ = server
    monkeypatch.setenv(B.OFFLINE_ENV_VAR, "1")
    with pytest.raises(BackboneNotFoundError) as info:
        LPIPSAlex()
    assert srv.requests == []
    assert "weights_path=" in str(info.value) and "KCROSS_IMAGENET_DIR" in str(info.value)
    cli = info.value.cli_message
    assert "--imagenet-dir" in cli and "--fetch-backbones" in cli and "weights_path" not in cli


def test_unreachable_server_is_a_clear_error(server, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    srv, _, _ = server
    srv.files.clear()  # 404
    with pytest.raises(BackboneNotFoundError, match="cannot download .*404"):
        LPIPSAlex()
    monkeypatch.setenv(B.URL_ENV_VAR, "not a url")  # a malformed mirror is a clear error too
    with pytest.raises(BackboneNotFoundError, match="cannot download"):
        LPIPSAlex()


def test_errors_survive_pickling() -> None:
    """Raised in a worker process (DataLoader, DDP), the errors keep their CLI wording."""
    import pickle

    from kcross_metric.errors import DataNotFoundError, EmptyReferenceError

    for exc in (BackboneNotFoundError("alex", ["here"], "a.npz", "a.pth", "VAR"), DataNotFoundError("py", "cli"),
                EmptyReferenceError("py", "cli")):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc) and back.cli_message == exc.cli_message


def test_fetch_to_a_folder_then_offline_use(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    srv, state, cached = server
    folder = tmp_path / "backbones"
    folder.mkdir()
    paths = fetch_backbones(("alex",), folder=folder)
    assert paths["alex"].parent == folder and not cached.exists()
    assert fetch_backbones(("alex",), folder=folder) == paths and len(srv.requests) == 1  # kept, not re-fetched
    good = paths["alex"].read_bytes()
    paths["alex"].write_bytes(good[:-10] + b"0123456789")  # corrupted: fetched again, with a warning
    with pytest.warns(UserWarning, match="fetching it again"):
        fetch_backbones(("alex",), folder=folder)
    assert paths["alex"].read_bytes() == good and len(srv.requests) == 2
    monkeypatch.setenv(B.OFFLINE_ENV_VAR, "1")
    monkeypatch.setenv(B.ENV_VAR, str(folder))
    torch.testing.assert_close(LPIPSAlex().backbone.state_dict()["features.0.weight"], state["features.0.weight"])
    monkeypatch.delenv(B.ENV_VAR)
    LPIPSAlex(weights_path=paths["alex"])  # the torchvision file itself as weights_path


def test_cli_fetch_and_cli_words(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    srv, _, _ = server
    monkeypatch.setitem(B.TORCHVISION_CHECKPOINTS, "vgg", ("vgg-missing-12345678.pth", "12345678"))
    folder = tmp_path / "fetched"
    assert score_main(["--fetch-backbones", "--imagenet-dir", str(folder)]) == 2  # folders are not created
    assert "no such folder" in capsys.readouterr().err and not folder.exists()
    assert score_main(["--fetch-backbones", "--metrics", "lpips_alex"]) == 2  # fetching is all it does
    assert "separate command" in capsys.readouterr().err
    folder.mkdir()
    assert score_main(["--fetch-backbones", "--imagenet-dir", str(folder)]) == 2  # vgg is not served
    err = capsys.readouterr().err
    assert "cannot download" in err
    assert (folder / B.TORCHVISION_CHECKPOINTS["alex"][0]).is_file()  # alex was fetched before the failure
    monkeypatch.setenv(B.OFFLINE_ENV_VAR, "1")
    assert score_main(["--demo", "--metrics", "dists"]) == 2
    err = capsys.readouterr().err
    assert "--imagenet-dir" in err and "weights_path" not in err
    assert score_main(["--demo", "--metrics", "lpips_alex", "--imagenet-dir", str(tmp_path / "none")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_dists_alpha_beta_ship_in_the_package(server, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """DISTS needs only the VGG backbone from outside: its alpha/beta are bundled."""
    monkeypatch.setenv(B.OFFLINE_ENV_VAR, "1")
    with pytest.raises(BackboneNotFoundError, match="vgg"):
        DISTS()
    ab = B.load_dists_state()
    assert ab["alpha"].shape == (1, sum(B.DISTS_CHANNELS), 1, 1) and bool((ab["alpha"] >= 0).all())


def test_kcross_score_metrics_first_use_then_offline(server, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """`kcross-score --metrics lpips_alex,dists` on a machine with internet: both backbones are
    fetched on first use; afterwards it runs offline from the cache, with no request."""
    srv, _, cached = server
    torch.manual_seed(1)
    vgg = {f"features.{k}": v.clone() for k, v in B.vgg16_features().state_dict().items()}
    buf = io.BytesIO()
    torch.save(vgg, buf)
    prefix = hashlib.sha256(buf.getvalue()).hexdigest()[:8]
    name = f"vgg16-test-{prefix}.pth"
    monkeypatch.setitem(B.TORCHVISION_CHECKPOINTS, "vgg", (name, prefix))
    srv.files[f"/models/{name}"] = buf.getvalue()
    assert score_main(["--demo", "--metrics", "lpips_alex,dists"]) == 0
    first = capsys.readouterr().out
    assert "lpips_alex" in first and "dists" in first
    assert sorted(srv.requests) == sorted([f"/models/{cached.name}", f"/models/{name}"])
    monkeypatch.setenv(B.OFFLINE_ENV_VAR, "1")
    assert score_main(["--demo", "--metrics", "lpips_alex,dists"]) == 0
    assert capsys.readouterr().out == first and len(srv.requests) == 2
