"""benchmarks/synthesized_table.py on a tiny synthesized set with a known answer."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kcross_metric.data.phantom import make_phantom
from kcross_metric.train.translation.synthesize import COLUMNS, load_synthesized_set

S = 64


def _bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "synthesized_table.py"
    spec = importlib.util.spec_from_file_location("_bench_synthesized_table", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def tiny_set(tmp_path) -> Path:
    """Two generators x 3 epochs x 2 slices; the error shrinks with the epoch for generator A and
    grows for generator B, so an MSE-like metric has SROCC near +1 and -1 with the epoch."""
    rows = []
    noise = torch.randn(S, S, generator=torch.Generator().manual_seed(0))
    for k in (1, 2):
        p = make_phantom((S, S), ("t1", "t2"), seed=k)
        real, src, mask = p["t2"][0, 0], p["t1"][0, 0], p["mask"][0, 0]
        for name, t in (("real", real), ("source", src), ("mask", mask)):
            np.save(tmp_path / f"{name}_{k}.npy", t.numpy())
        for gen, sigmas in (("pix2pix_t1-t2", (0.3, 0.15, 0.05)), ("cyclegan_t1-t2", (0.05, 0.15, 0.3))):
            for epoch, sigma in enumerate(sigmas, start=1):
                fake = (real + sigma * noise).clamp(0, 1)
                rel = f"{gen}_e{epoch}_{k}.npy"
                np.save(tmp_path / rel, fake.numpy())
                rows.append({"fake": rel, "real": f"real_{k}.npy", "source": f"source_{k}.npy", "mask": f"mask_{k}.npy",
                             "mask_kind": "manual", "generator": gen, "family": gen.split("_")[0], "direction": "t1-t2",
                             "source_contrast": "t1", "target_contrast": "t2", "epoch": epoch, "case": "c", "slice": k})
    with open(tmp_path / "synthesized.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        w.writeheader()
        w.writerows(rows)
    return tmp_path / "synthesized.csv"


def test_tables_have_the_known_answers_and_scores_are_cached(tiny_set, monkeypatch):
    bench = _bench()
    rows = load_synthesized_set(tiny_set)
    scores = bench.score_rows(rows, ["psnr", "mae"], tiny_set.parent / "scores", verbose=False)
    assert set(scores) == {"psnr", "mae"} and len(scores["psnr"]) == len(rows) == 12
    md, csv_rows = bench.build_tables(rows, scores, margin=0.1, n_boot=50)
    got = {(r[0], r[1], r[2]): float(r[3]) for r in csv_rows}
    # epoch pairs are ordered by MSE, so PSNR and MAE (monotone in the error here) agree with all of them
    assert got[("epoch_pairs", "psnr", "all")] == 1.0 and got[("epoch_pairs", "mae", "all")] == 1.0
    # pooled over two slices of different PSNR levels, so close to but not exactly +-1
    assert got[("srocc_epoch", "psnr", "pix2pix_t1-t2")] > 0.9
    assert got[("srocc_epoch", "psnr", "cyclegan_t1-t2")] < -0.9
    assert got[("last_epoch_mean", "psnr", "pix2pix_t1-t2")] > got[("last_epoch_mean", "psnr", "cyclegan_t1-t2")]
    assert "## Summary" in md and "psnr 1.000" in md

    # a second run reads every score from the cache: building a metric would fail
    def refuse(*args, **kwargs):
        raise AssertionError("recomputed a cached score")

    monkeypatch.setattr(bench, "create_metric", refuse)
    again = bench.score_rows(rows, ["psnr", "mae"], tiny_set.parent / "scores", verbose=False)
    assert again == scores


def test_kcross_columns_include_the_branches(tiny_set):
    bench = _bench()
    rows = load_synthesized_set(tiny_set)[:2]
    scores = bench.score_rows(rows, ["kcross"], tiny_set.parent / "scores", verbose=False)
    assert set(scores) == set(bench.KCROSS_COLUMNS)
    for col in bench.KCROSS_COLUMNS:
        assert all(0.0 <= v <= 1.0 for v in scores[col].values())


def test_kcross_scores_are_cached_per_weights_file(tiny_set, tmp_path):
    """Other weights must not read the bundled weights' cached scores (and must not erase them)."""
    from kcross_metric.weights import bundled_dir, load_safetensors_with_metadata, save_safetensors, write_checksums

    bench = _bench()
    rows = load_synthesized_set(tiny_set)[:2]
    cache = tiny_set.parent / "scores"
    bundled = bench.score_rows(rows, ["kcross"], cache, verbose=False)
    tensors, metadata = load_safetensors_with_metadata(bundled_dir() / "kcross.safetensors")
    key = next(k for k in tensors if k.startswith("complex_score"))
    tensors[key] = tensors[key] * 0.5  # other (still valid) score-network weights
    other = tmp_path / "w" / "kcross.safetensors"
    other.parent.mkdir()
    save_safetensors(tensors, other, metadata=metadata)
    write_checksums(other.parent)
    changed = bench.score_rows(rows, ["kcross"], cache, verbose=False, weights=other)
    assert changed["K-CROSS"] != bundled["K-CROSS"]
    assert changed["K-CROSS tumor branch"] == bundled["K-CROSS tumor branch"]  # branch qualities do not use the heads
    assert bench.score_rows(rows, ["kcross"], cache, verbose=False) == bundled


def test_a_set_resynthesized_into_the_same_folder_is_scored_afresh(tiny_set):
    """Same paths, new images (e.g. `kcross-train synthesize --overwrite` after retraining a model):
    the cache must not hand back the old images' scores, and the set digest must change."""
    bench = _bench()
    rows = load_synthesized_set(tiny_set)
    cache = tiny_set.parent / "scores"
    before = bench.score_rows(rows, ["psnr"], cache, verbose=False)["psnr"]
    digest = bench._digest(rows)
    first = rows[0]["files"]["fake"]
    np.save(tiny_set.parent / first, np.zeros((S, S), dtype=np.float32))
    rows = load_synthesized_set(tiny_set)
    after = bench.score_rows(rows, ["psnr"], cache, verbose=False)["psnr"]
    assert after[first] != before[first]
    assert all(after[k] == before[k] for k in before if k != first)
    assert bench._digest(rows) != digest
