"""Smoke runs of every training stage on a few real slices (seconds each), and the export."""

import json
from pathlib import Path

import pytest
import torch

from conftest import need_imagenet, need_shared
from kcross_metric.cli.train import main as train_main
from kcross_metric.core.metric import KCross


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    need_shared("data", "brats", "BraTS-GLI-00000-000")
    need_imagenet()
    root = tmp_path_factory.mktemp("runs")
    for stage in ("segmenter", "stage1"):
        assert train_main([stage, "--run", str(root / stage), "--smoke"]) == 0
    assert train_main(["stage2", "--run", str(root / "stage2"), "--smoke",
                       "--segmenter", str(root / "segmenter"), "--stage1", str(root / "stage1")]) == 0
    return root


def test_each_stage_writes_a_resumable_run(runs):
    for stage in ("segmenter", "stage1", "stage2"):
        state = json.loads((runs / stage / "state.json").read_text(encoding="utf-8"))
        assert state["epochs_done"] >= 1
        assert (runs / stage / "model.safetensors").exists()
        lines = (runs / stage / "log.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == state["epochs_done"]
        assert all(isinstance(v, float) and v == v for k, v in json.loads(lines[-1]).items() if k not in ("epoch",))


def test_resume_does_not_redo_finished_epochs(runs):
    before = (runs / "stage1" / "log.jsonl").read_text(encoding="utf-8")
    assert train_main(["stage1", "--run", str(runs / "stage1"), "--smoke"]) == 0
    assert (runs / "stage1" / "log.jsonl").read_text(encoding="utf-8") == before


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


def test_stage2_adds_further_pair_sets(runs, tmp_path):
    """--add-pairs appends a pair set (here: 3 noise-level pairs of a phantom) to the training pairs."""
    from kcross_metric.data.phantom import make_phantom
    from kcross_metric.train.ratedsets.twoafc import TwoAFCPair, write_twoafc_set

    ref = make_phantom((64, 64), contrasts=("t2",), seed=0)["t2"]
    gen = torch.Generator().manual_seed(0)
    pairs = []
    for i in range(3):
        noise = torch.randn(ref.shape, generator=gen)
        mild, strong = (ref + 0.02 * noise).clamp(0, 1), (ref + 0.2 * noise).clamp(0, 1)
        pairs.append(TwoAFCPair(f"p{i}", "phantom", 0, "t2", "t1", "synthesized_epochs", "noise",
                                0.02, 0.2, "a", ref, mild, strong))
    extra = write_twoafc_set(pairs, tmp_path / "extra")
    run = tmp_path / "stage2"
    args = ["stage2", "--run", str(run), "--smoke", "--segmenter", str(runs / "segmenter"),
            "--stage1", str(runs / "stage1"), "--add-pairs", str(extra)]
    assert train_main(args) == 0
    state = json.loads((run / "state.json").read_text(encoding="utf-8"))
    assert state["config"]["add_pairs_csv"] == [str(extra)]
    base = json.loads((runs / "stage2" / "log.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    with_extra = json.loads((run / "log.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    assert "val_train_2afc_synthesized_epochs" in with_extra and "val_train_2afc_synthesized_epochs" not in base


def test_pair_bank_mixes_image_sizes_and_keeps_pair_order():
    from kcross_metric.data.phantom import make_phantom
    from kcross_metric.train.ratedsets.twoafc import TwoAFCPair
    from kcross_metric.train.stage2 import pair_bank

    metric = KCross()
    pairs = []
    for i, size in enumerate((64, 96, 64, 96)):
        ph = make_phantom((size, size), contrasts=("t2", "t1"), seed=i)
        ref, src = ph["t2"], ph["t1"] if i != 3 else None
        pairs.append(TwoAFCPair(f"p{i}", "phantom", 0, "t2", "t1", "same_family", "noise", 0.0, 0.1,
                                "a" if i % 2 else "b", ref, ref, (ref + 0.1 * i).clamp(0, 1), src))
    mixed = pair_bank(metric, pairs)
    for i, p in enumerate(pairs):
        alone = pair_bank(metric, [p])
        for key in ("vc", "vt", "vs", "vc_b", "vt_b", "vs_b"):
            # batch composition moves float sums by ~1e-4 (oneDNN picks kernels by batch size)
            assert torch.allclose(mixed[key][i], alone[key][0], rtol=1e-3, atol=1e-3), (i, key)
    assert mixed["a_better"].tolist() == [0.0, 1.0, 0.0, 1.0]


def test_stage2_from_the_bundled_weights_and_export_on_a_base(tmp_path, capsys):
    """Refit only the score networks: no segmenter/stage-1 runs, the bundled networks are the base."""
    from kcross_metric.weights import bundled_dir, load_safetensors_with_metadata

    need_shared("data", "brats", "BraTS-GLI-00000-000")
    run = tmp_path / "stage2"
    assert train_main(["stage2", "--run", str(run), "--smoke"]) == 0
    out = tmp_path / "w" / "kcross.safetensors"
    out.parent.mkdir()
    assert train_main(["export", "--base-weights", "bundled", "--stage2", str(run), "--out", str(out)]) == 0
    new, meta = load_safetensors_with_metadata(out)
    base, base_meta = load_safetensors_with_metadata(bundled_dir() / "kcross.safetensors")
    refit = json.loads(meta["stage2_state"])
    assert refit["config"]["epochs"] == 2 and meta["segmenter_state"] == base_meta["segmenter_state"]
    assert meta["stage1_state"] == base_meta["stage1_state"] and len(meta["base_weights_sha256"]) == 64
    for key in base:
        same = torch.equal(new[key], base[key])
        assert same != key.startswith(("complex_score", "natural_score")), key  # only the heads changed
    x = torch.rand(1, 1, 64, 64)
    assert torch.allclose(KCross(weights=out)(x, x), torch.ones(1), atol=1e-5)
    # the card of the refitted file: segmenter and stage-1 sections copied from the bundled card
    from kcross_metric.train.model_card import card_section

    base_card = (bundled_dir() / "kcross.md").read_text(encoding="utf-8")
    card = tmp_path / "w" / "kcross.md"
    assert train_main(["model-card", "--stage2", str(run), "--weights", str(out), "--out", str(card),
                       "--base-card", str(bundled_dir() / "kcross.md")]) == 0
    text = card.read_text(encoding="utf-8")
    assert card_section(base_card, "segmenter") in text and card_section(base_card, "stage1") in text
    assert card_section(base_card, "stage2") not in text and meta["base_weights_sha256"] in text
    assert '"epochs": 2' in card_section(text, "stage2")
    capsys.readouterr()
    # a run that is not a segmenter run, a base file beside both runs, and no base for a missing part
    # are clear errors (one run alone takes the other networks from --base-weights, default bundled)
    assert train_main(["stage2", "--run", str(tmp_path / "x"), "--smoke", "--segmenter", str(run)]) == 2
    assert "for the segmenter part" in capsys.readouterr().err
    assert train_main(["stage2", "--run", str(tmp_path / "x"), "--smoke", "--segmenter", str(run), "--stage1", str(run),
                       "--base-weights", "bundled"]) == 2
    assert "--base-weights would be unused" in capsys.readouterr().err
    assert train_main(["export", "--stage2", str(run), "--out", str(tmp_path / "y.safetensors")]) == 2
    assert "no run for segmenter, stage1" in capsys.readouterr().err
    assert train_main(["export", "--base-weights", str(tmp_path / "missing.safetensors"), "--stage2", str(run),
                       "--out", str(tmp_path / "z.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_segmenter_lr_schedule(tmp_path):
    """lr_schedule: piecewise-constant factors, last entry at or before the epoch wins; it supersedes
    lr_drop_epoch; the shipped config's schedule is the one the shipped segmenter was trained with."""
    from kcross_metric.errors import ConfigError
    from kcross_metric.train.config import SegmenterConfig, load_config

    cfg = SegmenterConfig(lr=1.0, lr_drop_epoch=1, lr_drop_factor=0.5, lr_schedule=[(7, 0.2), (3, 0.5), (9, 1.0)])
    assert [cfg.lr_at(e) for e in (0, 2, 3, 6, 7, 8, 9, 30)] == [1.0, 1.0, 0.5, 0.5, 0.2, 0.2, 1.0, 1.0]
    assert [SegmenterConfig(lr=1.0, lr_drop_epoch=2, lr_drop_factor=0.5).lr_at(e) for e in (1, 2)] == [1.0, 0.5]
    for bad in ([5], [(1, 0.0)], [(-1, 0.5)], [("a", 0.5)]):
        with pytest.raises(ConfigError, match="lr_schedule"):
            SegmenterConfig(lr_schedule=bad)
    (tmp_path / "s.yaml").write_text("lr: 0.1\nlr_schedule: [[2, 0.5]]\n")
    assert load_config(SegmenterConfig, tmp_path / "s.yaml").lr_at(2) == pytest.approx(0.05)
    shipped = load_config(SegmenterConfig, Path(__file__).resolve().parents[1] / "src/kcross_metric/train/configs/segmenter.yaml")
    assert shipped.epochs > max(e for e, _ in shipped.lr_schedule)  # every step of the schedule is reached


def test_cli_words_without_data(tmp_path, monkeypatch, capsys):
    """Without data, kcross-train says what to do in flags, not Python arguments; --help is plain text."""
    monkeypatch.setenv("KCROSS_SHARED_DIR", str(tmp_path / "nowhere"))
    monkeypatch.delenv("KCROSS_EXTRA_DIR", raising=False)  # the extra subjects alone would do
    assert train_main(["segmenter", "--run", str(tmp_path / "r"), "--smoke"]) == 2
    err = capsys.readouterr().err
    assert "--data-root DIR" in err and "root=" not in err
    assert not (tmp_path / "r").exists()
    assert train_main(["stage1", "--run", str(tmp_path / "r"), "--extra-root", str(tmp_path / "none")]) == 2
    assert "--extra-root" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_main(["--help"])
    help_text = capsys.readouterr().out
    assert "``" not in help_text and "kcross-train segmenter" in help_text


def test_random_affine_moves_image_and_mask_together():
    """Zoom/rotation of segmenter crops: identity at scale 1 and 0 degrees; a zoom > 1 enlarges the
    lesion; image and mask stay aligned; samples not drawn are untouched."""
    from kcross_metric.train.segmenter import random_affine

    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    disc = (((yy - 40) ** 2 + (xx - 30) ** 2) < 64).float()[None, None].repeat(3, 1, 1, 1)
    image = 0.2 + 0.6 * disc
    same_x, same_m = random_affine(image, disc, 1.0, (1.0, 1.0), 0.0, g)
    assert torch.allclose(same_x, image, atol=1e-5) and torch.equal(same_m, disc)
    big_x, big_m = random_affine(image, disc, 1.0, (1.5, 1.5), 0.0, g)
    assert big_m.sum(dim=(1, 2, 3)).min() > 1.8 * disc[0].sum()  # area ~ 1.5^2
    inside = big_x[big_m.bool()]
    assert inside.mean() > 0.7  # the enlarged mask covers the enlarged bright disc
    none_x, none_m = random_affine(image, disc, 0.0, (0.5, 2.0), 45.0, g)
    assert torch.equal(none_x, image) and torch.equal(none_m, disc)


def test_segmenter_finetune_phase_config(tmp_path, capsys):
    """segmenter_finetune.yaml continues segmenter.yaml: same network, init_from given by --init; a
    missing or mismatched init is a clear error before any data is read."""
    from kcross_metric.core.nets.segmenter import LesionSegmenter
    from kcross_metric.errors import ConfigError
    from kcross_metric.train.config import SegmenterConfig, load_config
    from kcross_metric.train.segmenter import _load_initial_weights
    from kcross_metric.weights import save_safetensors

    configs = Path(__file__).resolve().parents[1] / "src/kcross_metric/train/configs"
    first = load_config(SegmenterConfig, configs / "segmenter.yaml")
    second = load_config(SegmenterConfig, configs / "segmenter_finetune.yaml")
    assert (second.channels, second.norm, second.size, second.crop) == (first.channels, first.norm, first.size, first.crop)
    assert second.init_from is None and second.affine_prob > 0 and second.epochs > max(e for e, _ in second.lr_schedule)
    for bad in ({"affine_prob": 1.5}, {"affine_scale": (1.2, 0.9)}):
        with pytest.raises(ConfigError, match="affine"):
            SegmenterConfig(**bad)
    model = LesionSegmenter((16, 32, 64, 128), "instance")
    with pytest.raises(ConfigError, match="no segmenter weights"):
        _load_initial_weights(model, tmp_path / "missing-run")
    narrow = LesionSegmenter((8, 16, 32, 64), "instance")
    save_safetensors({k: v.contiguous() for k, v in narrow.state_dict().items()}, tmp_path / "narrow.safetensors")
    with pytest.raises(ConfigError, match="widths"):
        _load_initial_weights(model, tmp_path / "narrow.safetensors")
    twin = LesionSegmenter((16, 32, 64, 128), "instance")
    save_safetensors({k: v.contiguous() for k, v in twin.state_dict().items()}, tmp_path / "twin.safetensors")
    _load_initial_weights(model, tmp_path / "twin.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))
    assert train_main(["segmenter", "--run", str(tmp_path / "r"), "--init", str(tmp_path / "nothing")]) == 2
    assert "no segmenter weights" in capsys.readouterr().err
