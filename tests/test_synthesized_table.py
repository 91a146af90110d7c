"""kcross_metric.evaluation.synthesized (the library behind benchmarks/synthesized_table.py) on a tiny
synthesized set with a known answer, and a thin end-to-end run of the script's main()."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kcross_metric.data.phantom import make_phantom
from kcross_metric.evaluation import synthesized as syn
from kcross_metric.train.translation.synthesize import COLUMNS, load_synthesized_set

S = 64


def _script():
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
    rows = load_synthesized_set(tiny_set)
    scores = syn.score_rows(rows, ["psnr", "mae"], tiny_set.parent / "scores", verbose=False)
    assert set(scores) == {"psnr", "mae"} and len(scores["psnr"]) == len(rows) == 12
    md, csv_rows = syn.build_tables(rows, scores, margin=0.1, n_boot=50)
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

    monkeypatch.setattr(syn, "create_metric", refuse)
    again = syn.score_rows(rows, ["psnr", "mae"], tiny_set.parent / "scores", verbose=False)
    assert again == scores


def test_kcross_columns_include_the_branches(tiny_set):
    rows = load_synthesized_set(tiny_set)[:2]
    scores = syn.score_rows(rows, ["kcross"], tiny_set.parent / "scores", verbose=False)
    assert set(scores) == set(syn.KCROSS_COLUMNS)
    for col in syn.KCROSS_COLUMNS:
        assert all(0.0 <= v <= 1.0 for v in scores[col].values())


def test_kcross_scores_are_cached_per_weights_file(tiny_set, tmp_path):
    """Other weights must not read the bundled weights' cached scores (and must not erase them)."""
    from kcross_metric.weights import bundled_dir, load_safetensors_with_metadata, save_safetensors, write_checksums

    rows = load_synthesized_set(tiny_set)[:2]
    cache = tiny_set.parent / "scores"
    bundled = syn.score_rows(rows, ["kcross"], cache, verbose=False)
    tensors, metadata = load_safetensors_with_metadata(bundled_dir() / "kcross.safetensors")
    key = next(k for k in tensors if k.startswith("complex_score"))
    tensors[key] = tensors[key] * 0.5  # other (still valid) score-network weights
    other = tmp_path / "w" / "kcross.safetensors"
    other.parent.mkdir()
    save_safetensors(tensors, other, metadata=metadata)
    write_checksums(other.parent)
    changed = syn.score_rows(rows, ["kcross"], cache, verbose=False, weights=other)
    assert changed["K-CROSS"] != bundled["K-CROSS"]
    assert changed["K-CROSS tumor branch"] == bundled["K-CROSS tumor branch"]  # branch qualities do not use the heads
    assert syn.score_rows(rows, ["kcross"], cache, verbose=False) == bundled


def test_a_set_resynthesized_into_the_same_folder_is_scored_afresh(tiny_set):
    """Same paths, new images (e.g. `kcross-train synthesize --overwrite` after retraining a model):
    the cache must not hand back the old images' scores, and the set digest must change."""
    rows = load_synthesized_set(tiny_set)
    cache = tiny_set.parent / "scores"
    before = syn.score_rows(rows, ["psnr"], cache, verbose=False)["psnr"]
    digest = syn.set_digest(rows)
    first = rows[0]["files"]["fake"]
    np.save(tiny_set.parent / first, np.zeros((S, S), dtype=np.float32))
    rows = load_synthesized_set(tiny_set)
    after = syn.score_rows(rows, ["psnr"], cache, verbose=False)["psnr"]
    assert after[first] != before[first]
    assert all(after[k] == before[k] for k in before if k != first)
    assert syn.set_digest(rows) != digest


def test_page_and_table_csv(tiny_set, tmp_path):
    rows = load_synthesized_set(tiny_set)
    scores = syn.score_rows(rows, ["psnr"], tiny_set.parent / "scores", verbose=False)
    md, csv_rows = syn.build_tables(rows, scores, n_boot=20)
    digest = syn.set_digest(rows)
    page = syn.synthesized_page(rows, md, digest=digest, weights_sha256="0123456789abcdef", seconds=3.2)
    assert page.startswith("# Results: the synthesized set (pix2pix / CycleGAN outputs, every epoch)\n")
    assert (f"12 synthesized validation slices from 2 models (cyclegan_t1-t2, pix2pix_t1-t2), set digest {digest}; "
            "K-CROSS weights sha256 `0123456789abcdef`.") in page
    assert syn.NOTE.strip() in page and md in page
    assert "Lesion masks: " in page and "Not scored" not in page
    assert f"were made for set digest {syn.FINDINGS_DIGEST}; this set is {digest}, so they are left out" in page
    assert syn.FINDINGS not in page
    assert page.endswith("_Computed in 3 s (scores cached in the set's `scores/`)._\n")
    other = syn.synthesized_page(rows, md, digest=syn.FINDINGS_DIGEST, weights_sha256="x", weights=Path("w.safetensors"))
    assert syn.FINDINGS in other and "K-CROSS weights: `w.safetensors`." in other and syn.NEVER_SAW not in other
    syn.write_table_csv(tmp_path / "t.csv", csv_rows)
    with open(tmp_path / "t.csv", newline="") as fh:
        written = list(csv.reader(fh))
    assert tuple(written[0]) == syn.TABLE_CSV_COLUMNS and written[1:] == csv_rows


def test_script_end_to_end(tiny_set, tmp_path):
    """The script is a thin main over the library: its page and CSV are the library's."""
    out, csv_out = tmp_path / "page.md", tmp_path / "tables.csv"
    assert _script().main([str(tiny_set), "--metrics", "psnr,mae", "--n-boot", "20", "--threads", "1",
                           "--out", str(out), "--csv-out", str(csv_out)]) == 0
    rows = load_synthesized_set(tiny_set)
    scores = syn.score_rows(rows, ["psnr", "mae"], tiny_set.parent / "scores", verbose=False)
    md, csv_rows = syn.build_tables(rows, scores, n_boot=20)
    page = out.read_text(encoding="utf-8")
    assert page.rsplit("\n_Computed in", 1)[0] == syn.synthesized_page(
        rows, md, digest=syn.set_digest(rows), weights_sha256=page.split("weights sha256 `")[1][:16],
        left_out=[b for b in syn.BASELINES if b not in ("psnr", "mae")]).rsplit("\n_Computed in", 1)[0]
    assert "Not scored in this run (for time): ssim, nlpd," in page
    with open(csv_out, newline="") as fh:
        assert list(csv.reader(fh))[1:] == csv_rows
