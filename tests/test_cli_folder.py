"""kcross-score folder mode: pairing, CSV rows, baselines, per-slice rows, report, resuming."""

import csv
import io
import json
import shutil
import sys

import numpy as np
import pytest
import torch

from kcross_metric import create_metric
from kcross_metric.cli import folder as folder_mod
from kcross_metric.cli._common import load_inputs
from kcross_metric.cli.folder import pair_files, parse_metrics, report_parts_dir, slice_csv_path
from kcross_metric.cli.score import main
from kcross_metric.core.metric import KCross
from kcross_metric.core.nets.kcross_nets import KCrossNetworks
from kcross_metric.data.io import save_volume
from kcross_metric.data.phantom import make_pair
from kcross_metric.errors import ConfigError, InputError
from kcross_metric.weights import save_safetensors, write_checksums

# maps array indices (d, h, w) to world (z, y, x): files load back as the same (D, H, W) arrays
AFFINE = np.array([[0.0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])


def _weights(directory, seed):
    torch.manual_seed(seed)
    path = directory / "kcross.safetensors"
    save_safetensors({k: v.contiguous() for k, v in KCrossNetworks().state_dict().items()}, path)
    write_checksums(directory)
    return path


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    return _weights(tmp_path_factory.mktemp("w0"), 0)


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory):
    return _weights(tmp_path_factory.mktemp("w1"), 1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two cases of 5 axial 32x32 slices; case1's real volume is a .nii (pairs with .nii.gz)."""
    root = tmp_path_factory.mktemp("cases")
    for d in ("fake", "real", "source", "mask"):
        (root / d).mkdir()
    for i, (blur, fade) in enumerate([(0.5, 0.2), (2.0, 0.9)]):
        f, r, s, m = make_pair((16, 32, 32), seed=i, blur_sigma=blur, lesion_fade=fade)
        for d, t in zip(("fake", "real", "source", "mask"), (f, r, s, m)):
            suffix = ".nii" if (d, i) == ("real", 1) else ".nii.gz"
            save_volume(t[0, 0, 5:10].numpy(), AFFINE, root / d / f"case{i}{suffix}")
    return root


def _args(folders, out, weights, *extra):
    return [str(folders / "fake"), str(folders / "real"), "--source-dir", str(folders / "source"),
            "--mask-dir", str(folders / "mask"), "--out", str(out), "--weights", str(weights), *extra]


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def scored(folders, weights_file, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("out")
    out, report = out_dir / "scores.csv", out_dir / "report.html"
    args = _args(folders, out, weights_file, "--metrics", "kcross,psnr,gmsd", "--per-slice", "--report", str(report))
    assert main(args) == 0
    return out, report


def test_pairing_by_name(folders, tmp_path):
    pairs = pair_files(folders / "fake", folders / "real", folders / "source")
    assert [p.name for p in pairs] == ["case0", "case1"]
    assert pairs[1].real.name == "case1.nii" and pairs[1].mask is None
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for name in ("x.nii.gz", "only_fake.nii.gz", "notes.txt"):
        shutil.copy(folders / "fake" / "case0.nii.gz", tmp_path / "a" / name)
    for name in ("x.nii", "only_real.nii.gz", ".hidden.nii.gz"):
        shutil.copy(folders / "fake" / "case0.nii.gz", tmp_path / "b" / name)
    with pytest.raises(InputError) as exc:
        pair_files(tmp_path / "a", tmp_path / "b", source_dir=folders / "source")
    msg = str(exc.value)
    assert "only_fake.nii.gz" in msg and "only_real.nii.gz" in msg and "no match in REAL_DIR" in msg
    assert "no match in FAKE_DIR" in msg and "--source-dir" in msg and "x.nii" in msg  # x has no source
    assert "notes" not in msg and "hidden" not in msg
    shutil.copy(folders / "fake" / "case0.nii.gz", tmp_path / "a" / "x.nii")
    with pytest.raises(InputError, match="two files named 'x'"):
        pair_files(tmp_path / "a", tmp_path / "b")


def test_parse_metrics():
    assert parse_metrics("kcross, PSNR,ssim,psnr") == ["psnr", "ssim"]
    assert parse_metrics(None) == []
    with pytest.raises(ConfigError, match="available"):
        parse_metrics("kcross,nope")


def test_rows_match_single_file_mode_and_direct_baselines(scored, folders, weights_file, capsys):
    out, _ = scored
    rows = _rows(out)
    assert [r["name"] for r in rows] == ["case0", "case1"]
    assert list(rows[0])[:6] == ["name", "fake", "real", "source", "mask", "kcross"]
    assert {"psnr", "gmsd", "weights_sha256"} <= set(rows[0]) and rows[0]["slicewise"] == ""
    capsys.readouterr()
    assert main([str(folders / "fake" / "case1.nii.gz"), str(folders / "real" / "case1.nii"),
                 "--source", str(folders / "source" / "case1.nii.gz"), "--mask", str(folders / "mask" / "case1.nii.gz"),
                 "--weights", str(weights_file), "--json"]) == 0
    single = json.loads(capsys.readouterr().out)
    r1 = rows[1]
    assert float(r1["kcross"]) == pytest.approx(single["kcross"], abs=1e-6)
    assert float(r1["kcross_complex"]) == pytest.approx(single["branches"]["complex"], abs=1e-6)
    assert int(r1["slices_total"]) == 5 and int(r1["slices_scored"]) == single["slices_scored"]
    assert float(rows[0]["kcross"]) > float(r1["kcross"])  # the milder synthesis error scores higher
    # baselines on the same normalized volumes: PSNR in 3-D, GMSD as the mean over scored slices
    x = load_inputs(folders / "fake" / "case1.nii.gz", folders / "real" / "case1.nii")
    psnr = float(create_metric("psnr", data_range=1.0)(x["fake"], x["real"])[0])
    assert float(r1["psnr"]) == pytest.approx(psnr, rel=1e-6)
    fs, rs = x["fake"][0].transpose(0, 1), x["real"][0].transpose(0, 1)
    gmsd = create_metric("gmsd", data_range=1.0)(fs, rs).mean()
    assert int(r1["slices_scored"]) == 5
    assert float(r1["gmsd"]) == pytest.approx(float(gmsd), rel=1e-5)


def test_per_slice_rows(scored):
    out, _ = scored
    rows = _rows(out)
    slices = _rows(slice_csv_path(out))
    assert slice_csv_path(out).name == "scores_slices.csv"
    assert len(slices) == sum(int(r["slices_total"]) for r in rows)
    assert "psnr" not in slices[0] and "gmsd" in slices[0]  # only the per-slice (2-D) baselines
    for r in rows:
        mine = [s for s in slices if s["name"] == r["name"] and s["scored"] == "1"]
        mean = sum(float(s["kcross"]) for s in mine) / len(mine)
        assert mean == pytest.approx(float(r["kcross"]), abs=1e-6)
        gmsd = sum(float(s["gmsd"]) for s in mine) / len(mine)
        assert gmsd == pytest.approx(float(r["gmsd"]), rel=1e-6)


def test_report_written_and_sections_kept_beside_the_csv(scored):
    out, report = scored
    html = report.read_text(encoding="utf-8")
    assert "case0" in html and "case1" in html
    assert html.count("<img ") == 2 * 3 * 6  # 2 volumes x 3 worst slices x 6 images
    assert "gmsd (mean of scored slices)" in html and "psnr (3-D)" in html
    assert len(list(report_parts_dir(out).iterdir())) == 2


def test_finished_run_rebuilds_report_without_scoring(scored, folders, weights_file, tmp_path, monkeypatch, capsys):
    out, report = scored
    before = report.read_text(encoding="utf-8")
    monkeypatch.setattr(KCross, "explain", lambda *a, **k: pytest.fail("must not score again"))
    monkeypatch.setattr(KCross, "score", lambda *a, **k: pytest.fail("must not score again"))
    capsys.readouterr()
    args = _args(folders, out, weights_file, "--metrics", "kcross,psnr,gmsd", "--per-slice", "--report", str(report))
    assert main(args) == 2  # the report exists: never replaced without --overwrite
    assert "--report" in capsys.readouterr().err and report.read_text(encoding="utf-8") == before
    again = out.parent / "again.html"
    args[args.index(str(report))] = str(again)
    assert main(args) == 0
    assert "0 pair(s) scored, 2 already" in capsys.readouterr().out
    rebuilt = again.read_text(encoding="utf-8")
    assert rebuilt.count("<img ") == before.count("<img ") and rebuilt.count("case1") == before.count("case1")


def test_output_folders_are_not_created(folders, weights_file, tmp_path, capsys):
    for extra in (["--out", str(tmp_path / "nowhere" / "s.csv")],
                  ["--out", str(tmp_path / "s.csv"), "--report", str(tmp_path / "nowhere" / "r.html")]):
        args = [str(folders / "fake"), str(folders / "real"), "--weights", str(weights_file), *extra]
        assert main(args) == 2
        assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()
    one = [str(folders / "fake" / "case0.nii.gz"), str(folders / "real" / "case0.nii.gz"), "--weights", str(weights_file)]
    assert main([*one, "--out", str(tmp_path / "nowhere" / "x.json")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "nowhere").exists()


def test_interrupted_run_resumes_without_redoing_pairs(folders, weights_file, tmp_path, monkeypatch, capsys):
    out, report = tmp_path / "s.csv", tmp_path / "r.html"
    args = _args(folders, out, weights_file, "--metrics", "psnr", "--report", str(report))
    real_call = folder_mod.BaselineSet.__call__
    calls = []

    def interrupt_second(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_call(self, *a, **k)

    monkeypatch.setattr(folder_mod.BaselineSet, "__call__", interrupt_second)
    assert main(args) == 130
    first = out.read_text(encoding="utf-8")
    assert [r["name"] for r in _rows(out)] == ["case0"]
    assert len(list(report_parts_dir(out).iterdir())) == 1  # case0's report section is kept
    monkeypatch.setattr(folder_mod.BaselineSet, "__call__", real_call)
    with open(out, "a") as fh:
        fh.write("case1,half-written")  # a row cut by a crash is scored again
    explained = []
    orig = KCross.explain
    monkeypatch.setattr(KCross, "explain", lambda self, *a, **k: explained.append(1) or orig(self, *a, **k))
    capsys.readouterr()
    assert main(args) == 0
    assert "1 pair(s) scored, 1 already" in capsys.readouterr().out
    assert len(explained) == 1  # case0 was neither rescored nor re-explained for the report
    text = out.read_text(encoding="utf-8")
    assert text.startswith(first) and [r["name"] for r in _rows(out)] == ["case0", "case1"]
    assert "half-written" not in text
    assert "case1" in report.read_text(encoding="utf-8")


def test_refuses_other_settings_and_overwrite_starts_fresh(scored, folders, weights_file, other_weights, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    shutil.copy(scored[0], out)
    before = out.read_text(encoding="utf-8")
    cases = [
        (_args(folders, out, weights_file, "--metrics", "kcross,psnr"), "--metrics kcross,psnr,gmsd"),
        (_args(folders, out, other_weights, "--metrics", "psnr,gmsd"), "other K-CROSS weights"),
        (_args(folders, out, weights_file, "--metrics", "psnr,gmsd", "--per-slice"), "without --per-slice"),
        ([str(folders / "fake"), str(folders / "real"), "--mask-dir", str(folders / "mask"), "--out", str(out),
          "--weights", str(weights_file), "--metrics", "psnr,gmsd"], "with --source-dir"),
    ]
    for args, expected in cases:
        capsys.readouterr()
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("kcross-score: error:") and expected in err and "--overwrite" in err
        assert out.read_text(encoding="utf-8") == before
    # --overwrite starts afresh; 3-D SSIM needs 11 slices, so these 5-slice volumes get the slice mean
    assert main(_args(folders, out, weights_file, "--metrics", "ssim", "--overwrite")) == 0
    captured = capsys.readouterr()
    assert "2 pair(s) scored, 0 already" in captured.out
    assert captured.err.count("too few voxels for 3-D ssim") == 1  # warned once
    rows = _rows(out)
    assert len(rows) == 2 and "psnr" not in rows[0] and [r["slicewise"] for r in rows] == ["ssim", "ssim"]
    x = load_inputs(folders / "fake" / "case0.nii.gz", folders / "real" / "case0.nii.gz")
    slices = create_metric("ssim", data_range=1.0)(x["fake"][0].transpose(0, 1), x["real"][0].transpose(0, 1))
    assert float(rows[0]["ssim"]) == pytest.approx(float(slices.mean()), rel=1e-5)


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal(scored, folders, weights_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "scores.csv"
    shutil.copy(scored[0], out)
    args = _args(folders, out, weights_file, "--metrics", "psnr,gmsd")
    assert main(args) == 0  # everything already scored: nothing to do
    assert capsys.readouterr().err == ""
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main(args) == 0
    assert "kcross-score" in tty.getvalue() and "2/2" in tty.getvalue()


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--json"], "--json applies to single-file mode"),
        (["--source", "x.nii.gz"], "--source-dir"),
        (["--report-slices", "-1"], "--report-slices"),
    ],
)
def test_folder_mode_option_errors(folders, weights_file, tmp_path, capsys, extra, expected):
    assert main(_args(folders, tmp_path / "o.csv", weights_file, *extra)) == 2
    assert expected in capsys.readouterr().err


def test_mixing_file_and_folder_or_missing_out(folders, weights_file, tmp_path, capsys):
    assert main([str(folders / "fake"), str(folders / "real" / "case1.nii"), "--weights", str(weights_file)]) == 2
    assert "or both be folders of volumes" in capsys.readouterr().err
    assert main([str(folders / "fake"), str(folders / "real"), "--weights", str(weights_file)]) == 2
    assert "--out" in capsys.readouterr().err
    assert main([str(folders / "fake" / "case0.nii.gz"), str(folders / "real" / "case0.nii.gz"),
                 "--source-dir", str(folders / "source")]) == 2
    assert "folder mode" in capsys.readouterr().err


def test_single_file_report_and_metrics(folders, weights_file, tmp_path, capsys):
    report = tmp_path / "one.html"
    args = [str(folders / "fake" / "case0.nii.gz"), str(folders / "real" / "case0.nii.gz"),
            "--weights", str(weights_file), "--metrics", "kcross,mae", "--json", "--report", str(report)]
    assert main(args) == 0
    res = json.loads(capsys.readouterr().out)
    x = load_inputs(folders / "fake" / "case0.nii.gz", folders / "real" / "case0.nii.gz")
    assert res["metrics"]["mae"] == pytest.approx(float((x["fake"] - x["real"]).abs().mean()), rel=1e-5)
    assert "case0.nii.gz" in report.read_text(encoding="utf-8") and report.read_text(encoding="utf-8").count("<img ") == 3 * 5  # no source


@pytest.mark.slow
def test_demo_report(weights_file, tmp_path, capsys):
    demo = tmp_path / "demo.html"
    assert main(["--demo", "--weights", str(weights_file), "--report", str(demo), "--report-slices", "1"]) == 0
    html = demo.read_text(encoding="utf-8")
    assert html.count("<section") == 2 and "severe synthesis error" in html and html.count("<img ") == 2 * 6
    assert "mild" in capsys.readouterr().out


def test_rescored_pair_drops_its_old_report_section(scored, folders, weights_file, tmp_path, capsys):
    """A pair scored again (its CSV row gone) never keeps a section of its earlier scoring."""
    out, _ = scored
    copy = tmp_path / "scores.csv"
    shutil.copytree(report_parts_dir(out), report_parts_dir(copy))
    rows = out.read_text(encoding="utf-8").splitlines()
    copy.write_text("\n".join(rows[:-1]) + "\n")  # drop the last pair's row: it is scored again
    before = len(list(report_parts_dir(copy).iterdir()))
    capsys.readouterr()
    assert main(_args(folders, copy, weights_file, "--metrics", "kcross,psnr,gmsd")) == 0  # no --report
    assert "1 pair(s) scored" in capsys.readouterr().out
    assert len(list(report_parts_dir(copy).iterdir())) == before - 1
