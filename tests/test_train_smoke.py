"""Smoke runs of every training stage on a few real slices (seconds each), and the export."""

import json

import pytest
import torch

from conftest import need_shared
from kcross_metric.cli.train import main as train_main
from kcross_metric.metric import KCross


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    need_shared("data", "brats", "BraTS-GLI-00000-000")
    need_shared("weights", "imagenet")
    root = tmp_path_factory.mktemp("runs")
    for stage in ("segmenter", "stage1"):
        assert train_main([stage, "--run", str(root / stage), "--smoke"]) == 0
    assert train_main(["stage2", "--run", str(root / "stage2"), "--smoke",
                       "--segmenter", str(root / "segmenter"), "--stage1", str(root / "stage1")]) == 0
    return root


def test_each_stage_writes_a_resumable_run(runs):
    for stage in ("segmenter", "stage1", "stage2"):
        state = json.loads((runs / stage / "state.json").read_text())
        assert state["epochs_done"] >= 1
        assert (runs / stage / "model.safetensors").exists()
        lines = (runs / stage / "log.jsonl").read_text().splitlines()
        assert len(lines) == state["epochs_done"]
        assert all(isinstance(v, float) and v == v for k, v in json.loads(lines[-1]).items() if k not in ("epoch",))


def test_resume_does_not_redo_finished_epochs(runs):
    before = (runs / "stage1" / "log.jsonl").read_text()
    assert train_main(["stage1", "--run", str(runs / "stage1"), "--smoke"]) == 0
    assert (runs / "stage1" / "log.jsonl").read_text() == before


def test_export_makes_loadable_verified_weights(runs, tmp_path):
    out = tmp_path / "w" / "kcross.safetensors"
    out.parent.mkdir()
    args = ["export", "--segmenter", str(runs / "segmenter"), "--stage1", str(runs / "stage1"),
            "--stage2", str(runs / "stage2"), "--out", str(out)]
    assert train_main(args) == 0
    assert (out.parent / "SHA256SUMS").exists()
    assert train_main(args) == 2  # refuses to overwrite without --overwrite
    metric = KCross(weights=out)
    x = torch.rand(1, 1, 64, 64)
    assert metric.version["pretrained"] is True
    assert torch.allclose(metric(x, x), torch.ones(1), atol=1e-5)


def test_bad_config_key_is_a_clear_error(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("epochz: 3\n")
    assert train_main(["segmenter", "--run", str(tmp_path / "r"), "--config", str(cfg)]) == 2
    assert "unknown SegmenterConfig option(s): epochz" in capsys.readouterr().err
