"""Translation models of the synthesized rated set (issue 4): networks, training steps, the CLI,
per-epoch checkpoints and the synthesized-set writer/reader, on tiny sizes."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from conftest import need_shared
from kcross_metric.cli.train import main as train_main
from kcross_metric.data.phantom import make_phantom
from kcross_metric.errors import ConfigError, OutputExistsError, ShapeError
from kcross_metric.train.config import TranslationConfig
from kcross_metric.train.translation.data import parse_direction
from kcross_metric.train.translation.nets import PatchDiscriminator, ResnetGenerator, UNetGenerator
from kcross_metric.train.translation.trainer import (
    TranslationModel,
    _cyclegan_step,
    _ImagePool,
    _OptimizerPair,
    _pix2pix_step,
)


def _phantom_pairs(n: int, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    src, tgt = [], []
    for seed in range(n):
        p = make_phantom((size, size), ("t1", "t2"), seed=seed)
        src.append(p["t1"][0])
        tgt.append(p["t2"][0])
    return torch.stack(src), torch.stack(tgt)


def test_generators_keep_shape_and_unit_range():
    x = torch.rand(2, 1, 64, 64)
    for net in (UNetGenerator(depth=4, base=8, max_channels=16), ResnetGenerator(base=8, n_blocks=1)):
        with torch.no_grad():
            y = net.eval()(x)
        assert y.shape == x.shape
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    d = PatchDiscriminator(2, base=8)
    assert d(x, x).shape == (2, 1, 6, 6)  # 70x70 PatchGAN on 64x64: 6x6 patch logits


def test_unet_skip_connections_carry_fine_detail():
    # With the bottleneck zeroed, a U-Net still passes detail through its skips; check that the
    # output depends on a single input pixel (receptive field through the outermost skip).
    net = UNetGenerator(depth=4, base=8, max_channels=16, dropout=0.0).eval()
    x = torch.rand(1, 1, 64, 64, requires_grad=True)
    net(x)[0, 0, 10, 10].backward()
    assert float(x.grad[0, 0, 10, 10].abs()) > 0


def test_unet_dropout_only_in_the_three_blocks_after_the_innermost():
    net = UNetGenerator(depth=6, base=8, max_channels=16)
    with_dropout = [i for i, block in enumerate(net.up) if any(isinstance(m, nn.Dropout) for m in block)]
    assert with_dropout == [1, 2, 3]


def test_sizes_not_divisible_are_clear_errors():
    with pytest.raises(ShapeError, match="divisible by 16"):
        UNetGenerator(depth=4)(torch.rand(1, 1, 40, 40))
    with pytest.raises(ShapeError, match=r"\(B, 1, H, W\)"):
        ResnetGenerator(base=8, n_blocks=1)(torch.rand(1, 2, 64, 64))
    with pytest.raises(ConfigError):
        UNetGenerator(depth=1)


@pytest.mark.parametrize("bad", ["t1", "t1-t1", "t1-pd", "t1-t2-flair"])
def test_bad_directions(bad):
    with pytest.raises(ConfigError, match="direction"):
        parse_direction(bad)


def test_pix2pix_steps_learn_the_phantom_mapping():
    torch.manual_seed(0)
    src, tgt = _phantom_pairs(4)
    cfg = TranslationConfig(unet_depth=4, base_channels=8, max_channels=16, disc_base=8, lr=2e-3)
    model = TranslationModel("pix2pix", cfg)
    opt = _OptimizerPair(model, cfg)
    model.train()
    first = [_pix2pix_step(model, opt, src, tgt, cfg)["g_l1"] for _ in range(3)]
    for _ in range(40):
        last = _pix2pix_step(model, opt, src, tgt, cfg)["g_l1"]
    assert last < 0.5 * np.mean(first), (first, last)


def test_cyclegan_steps_reduce_the_cycle_loss_and_train_both_directions():
    torch.manual_seed(0)
    src, tgt = _phantom_pairs(4)
    cfg = TranslationConfig(family="cyclegan", resnet_base=8, resnet_blocks=1, disc_base=8, lr=2e-3, pool_size=4)
    model = TranslationModel("cyclegan", cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = _OptimizerPair(model, cfg)
    pools, rng = (_ImagePool(4), _ImagePool(4)), random.Random(0)
    model.train()
    first = [_cyclegan_step(model, opt, src, tgt.flip(0), cfg, pools, rng)["cycle"] for _ in range(3)]
    for _ in range(30):
        last = _cyclegan_step(model, opt, src, tgt.flip(0), cfg, pools, rng)["cycle"]
    assert last < 0.6 * np.mean(first), (first, last)
    changed = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"generator", "generator_back", "disc_target", "disc_source"}


def test_image_pool_returns_history_and_fills_first():
    pool = _ImagePool(2)
    rng = random.Random(0)
    a = torch.zeros(2, 1, 4, 4)
    assert torch.equal(pool.query(a, rng), a)  # filling: the new images come back
    b = torch.ones(50, 1, 4, 4)
    out = pool.query(b, rng)
    old = int((out.flatten(1).mean(1) == 0).sum())
    assert 1 <= old <= 2  # some were swapped for history, no more than the pool held
    assert torch.equal(_ImagePool(0).query(b, rng), b)


# ----------------------------------------------------------------------------- real data, CLI


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    need_shared("data", "brats", "BraTS-GLI-00001-000")
    need_shared("data", "ixi")
    root = tmp_path_factory.mktemp("gan")
    for family in ("pix2pix", "cyclegan"):
        assert train_main(["translation", "--family", family, "--direction", "t1-t2",
                           "--run", str(root / f"{family}_t1-t2"), "--smoke"]) == 0
    return root


def test_each_epoch_keeps_a_generator_checkpoint_and_resume_adds_none(smoke_runs):
    run = smoke_runs / "pix2pix_t1-t2"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch_001.safetensors", "epoch_002.safetensors"]
    state = json.loads((run / "state.json").read_text(encoding="utf-8"))
    assert state["epochs_done"] == 2 and state["config"]["family"] == "pix2pix"
    log = (run / "log.jsonl").read_text(encoding="utf-8").splitlines()
    assert train_main(["translation", "--family", "pix2pix", "--direction", "t1-t2", "--run", str(run), "--smoke"]) == 0
    assert (run / "log.jsonl").read_text(encoding="utf-8").splitlines() == log
    assert {"val_l1", "val_psnr", "g_l1", "d"} <= set(json.loads(log[0]))


def test_synthesized_set_has_every_epoch_of_every_model(smoke_runs, tmp_path, monkeypatch):
    from kcross_metric.train.ratedsets.twoafc import pairs_from_synthesized

    monkeypatch.delenv("KCROSS_EXTRA_DIR", raising=False)  # the counts below are of the base cases
    from kcross_metric.train.translation.synthesize import COLUMNS, load_synthesized_set, write_synthesized_set

    out = tmp_path / "set"
    index = write_synthesized_set(smoke_runs, out)
    with open(index, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == COLUMNS
    # smoke: validation slices 70 and 72 of the one validation case with T1 and T2, 2 epochs, 2 models
    keys = {(r["generator"], r["epoch"], r["case"], r["slice"]) for r in rows}
    assert len(keys) == len(rows) == 2 * 2 * 2
    assert {r["case"] for r in rows} == {"BraTS-GLI-00001-000"}
    assert {r["mask_kind"] for r in rows} == {"segmenter"}
    for r in rows[:3]:
        fake = np.load(out / r["fake"], allow_pickle=False)
        real = np.load(out / r["real"], allow_pickle=False)
        assert fake.shape == real.shape == (64, 64) and fake.dtype == np.float32
        assert 0.0 <= fake.min() and fake.max() <= 1.0
        assert set(np.unique(np.load(out / r["mask"]))) <= {0.0, 1.0}
    # a fake of epoch 1 differs from epoch 2 (the set really holds per-epoch outputs)
    e1 = [r for r in rows if r["epoch"] == "1" and r["family"] == "pix2pix"][0]
    e2 = [r for r in rows if r["epoch"] == "2" and r["family"] == "pix2pix" and r["slice"] == e1["slice"]][0]
    assert not np.array_equal(np.load(out / e1["fake"]), np.load(out / e2["fake"]))
    provenance = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert {r["name"] for r in provenance["runs"]} == {"pix2pix_t1-t2", "cyclegan_t1-t2"}
    assert all(len(h) == 64 for r in provenance["runs"] for h in r["checkpoint_sha256"].values())
    with pytest.raises(OutputExistsError):
        write_synthesized_set(smoke_runs, out)
    records = load_synthesized_set(index)
    assert len(records) == len(rows) and records[0]["fake"].shape == (64, 64)
    pairs_from_synthesized(records, margin=0.0, allow_earlier_better=True)  # the records fit the 2AFC hook


def test_synthesize_cli_refuses_to_clobber(smoke_runs, tmp_path, capsys):
    out = tmp_path / "set"
    out.mkdir()
    (out / "synthesized.csv").write_text("mine\n")
    assert train_main(["synthesize", "--runs", str(smoke_runs), "--out", str(out), "--masks", "none"]) == 2
    assert (out / "synthesized.csv").read_text(encoding="utf-8") == "mine\n"
    assert "exists" in capsys.readouterr().err


def test_synthesized_set_of_the_training_cases_never_holds_a_validation_case(smoke_runs, tmp_path):
    from kcross_metric.train.splits import TRAIN_CASES, VALIDATION_CASES
    from kcross_metric.train.translation.synthesize import write_synthesized_set

    out = tmp_path / "train_set"
    assert train_main(["synthesize", "--runs", str(smoke_runs), "--out", str(out), "--split", "train",
                       "--masks", "none"]) == 0
    with open(out / "synthesized.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    cases = {r["case"] for r in rows}
    assert cases and cases <= set(TRAIN_CASES) and not cases & set(VALIDATION_CASES)
    assert json.loads((out / "dataset.json").read_text(encoding="utf-8"))["split"] == "train"
    with pytest.raises(ConfigError, match="split"):
        write_synthesized_set(smoke_runs, tmp_path / "x", split="test")
