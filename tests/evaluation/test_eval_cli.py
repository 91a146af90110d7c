"""``kcross-eval``: nirps / rated / 2afc subcommands, exit codes, output safety, lazy imports."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from kcross_metric import registry
from kcross_metric.cli.eval import main
from kcross_metric.errors import ConfigError, FileFormatError
from kcross_metric.evaluation.agreement import evaluate_metric
from kcross_metric.evaluation.nirps import load_nirps_csv
from kcross_metric.registry import MetricInfo


class FakeL1(nn.Module):
    """Mean absolute difference divided by data_range, per sample: shape (B,). Records its calls."""

    calls: ClassVar[list[tuple]] = []

    def __init__(self, data_range: float = 1.0) -> None:
        super().__init__()
        self.data_range = data_range

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        FakeL1.calls.append(tuple(t.clone() for t in args))
        x, y = args  # a baseline is called as metric(fake, real), nothing else
        return (x - y).abs().flatten(1).mean(dim=1) / self.data_range


class RecordingSourceMetric(nn.Module):
    """A ``uses_source`` metric that records how it was built and called.

    Value: mean |fake - real| + mean(source) (0 without a source) + 10 * mean(mask) (0 without one),
    so a table value also shows what arrived.
    """

    built: ClassVar[list[dict]] = []
    calls: ClassVar[list[tuple]] = []

    def __init__(self, data_range: float = 1.0, **kwargs: object) -> None:
        super().__init__()
        RecordingSourceMetric.built.append({"data_range": data_range, **kwargs})

    def forward(self, *args: torch.Tensor | None, **kwargs: object) -> torch.Tensor:
        RecordingSourceMetric.calls.append((tuple(None if t is None else t.clone() for t in args), kwargs))
        fake, real, source, mask = args
        out = (fake - real).abs().flatten(1).mean(dim=1)
        if source is not None:
            out = out + source.flatten(1).mean(dim=1)
        if mask is not None:
            out = out + 10 * mask.flatten(1).mean(dim=1)
        return out


FAKES = [
    MetricInfo("evaltest_l1", f"{__name__}:FakeL1", False, True, True, (0.0, 1.0)),
    MetricInfo("evaltest_src", f"{__name__}:RecordingSourceMetric", False, True, False, (0.0, 20.0), uses_source=True),
    MetricInfo("evaltest_broken", "kcross_metric_no_such_module:Nope", True, True, True, (0.0, 1.0)),
]


@pytest.fixture(autouse=True)
def fake_metrics():
    for info in FAKES:
        registry.register_metric(info)
    FakeL1.calls.clear()
    RecordingSourceMetric.built.clear()
    RecordingSourceMetric.calls.clear()
    yield
    for info in FAKES:
        registry._REGISTRY.pop(info.name, None)


def _tiny_nirps(path: Path) -> Path:
    rng = np.random.default_rng(0)
    lines = ["dataset,target,model,epoch,slice_id,artificial,mae,psnr,ssim"]
    for model in ("cyclegan", "unit"):
        for i in range(8):
            rating = round(float(rng.integers(0, 10)) / 10, 1)
            psnr = 15 + 20 * rating + float(rng.normal(0, 3))
            lines.append(f"ixi,t2,{model},{i + 1},s{i},{rating},{0.2 - psnr / 200:.5f},{psnr:.4f},{0.5 + rating / 2:.4f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


class TestNirps:
    def test_tables_match_the_library(self, tmp_path: Path, capsys) -> None:
        src = _tiny_nirps(tmp_path / "s.csv")
        md, out = tmp_path / "t.md", tmp_path / "t.csv"
        rc = main(["nirps", "--csv", str(src), "--n-boot", "20", "--out", str(md), "--csv-out", str(out)])
        assert rc == 0
        text = md.read_text(encoding="utf-8")
        for heading in ("rank mode", "regression mode", "legacy mode", "Correlations"):
            assert heading in text
        assert "kcross-eval nirps --csv" in text  # provenance line
        rows = _read_csv(out)
        assert len(rows) == 6 and {r["model"] for r in rows} == {"cyclegan", "unit"}
        table = load_nirps_csv(src)
        sub = table.subset(table.keys["model"] == "unit")
        ref = evaluate_metric(sub.metrics["mae"], sub.ratings, higher_is_better=False, n_boot=20, seed=0)
        row = next(r for r in rows if r["model"] == "unit" and r["metric"] == "mae")
        assert float(row["inconsistency_rank"]) == pytest.approx(ref.inconsistency["rank"], abs=1e-6)
        assert float(row["srocc"]) == pytest.approx(ref.srocc, abs=1e-6)
        assert float(row["srocc_ci_low"]) == pytest.approx(ref.ci["srocc"].low, abs=1e-6)
        assert row["higher_is_better"] == "0"
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left

    def test_prints_markdown_without_out(self, tmp_path: Path, capsys) -> None:
        src = _tiny_nirps(tmp_path / "s.csv")
        assert main(["nirps", "--csv", str(src), "--n-boot", "0", "--group-by", "none", "--metrics", "psnr"]) == 0
        out = capsys.readouterr().out
        assert "| psnr |" in out and "| all |" in out

    def test_refuses_to_overwrite(self, tmp_path: Path, capsys) -> None:
        src = _tiny_nirps(tmp_path / "s.csv")
        md = tmp_path / "t.md"
        md.write_text("keep me")
        assert main(["nirps", "--csv", str(src), "--n-boot", "0", "--out", str(md)]) == 2
        err = capsys.readouterr().err
        assert "exists" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
        assert md.read_text(encoding="utf-8") == "keep me"
        assert main(["nirps", "--csv", str(src), "--n-boot", "0", "--out", str(md), "--overwrite"]) == 0
        assert md.read_text(encoding="utf-8").startswith("# NIRPS")

    def test_bad_input_exit_2_one_line(self, tmp_path: Path, capsys) -> None:
        bad = tmp_path / "bad.csv"
        bad.write_text("a,b\n1,2\n")
        assert main(["nirps", "--csv", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("kcross-eval: error:") and "missing column" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert main(["nirps", "--csv", str(tmp_path / "absent.csv")]) == 2
        assert main(["nirps", "--csv", str(_tiny_nirps(tmp_path / "s.csv")), "--group-by", "site"]) == 2
        assert "cannot group by 'site'" in capsys.readouterr().err

    def test_debug_shows_the_exception(self, tmp_path: Path) -> None:
        bad = tmp_path / "bad.csv"
        bad.write_text("a,b\n1,2\n")
        with pytest.raises(FileFormatError):
            main(["nirps", "--csv", str(bad), "--debug"])
        with pytest.raises(FileFormatError):
            main(["--debug", "nirps", "--csv", str(bad)])

    def test_argparse_errors_exit_2(self, capsys) -> None:
        with pytest.raises(SystemExit) as exc:
            main(["nirps", "--max-epoch", "0"])
        assert exc.value.code == 2
        with pytest.raises(SystemExit) as exc:
            main(["rated", "x.csv", "--metrics", "psnr"])  # --data-range missing
        assert exc.value.code == 2

    def test_prefill_column_and_all_epochs(self, tmp_path: Path) -> None:
        src = _tiny_nirps(tmp_path / "s.csv")
        table = load_nirps_csv(src, max_epoch=None)
        lines = [
            f"{0.9 - 0.05 * i:.4f}, ./nirps_dataset/ixi/t2/{m}/epoch_{e}/{s}"
            for i, (m, e, s) in enumerate(zip(table.keys["model"], table.keys["epoch"], table.keys["slice_id"]))
        ]
        (tmp_path / "human.txt").write_text("\n".join(lines) + "\n")
        out = tmp_path / "t.csv"
        rc = main(["nirps", "--csv", str(src), "--prefill", str(tmp_path / "human.txt"), "--max-epoch", "all",
                   "--n-boot", "0", "--group-by", "none", "--csv-out", str(out), "--out", str(tmp_path / "t.md")])
        assert rc == 0
        rows = {r["metric"]: r for r in _read_csv(out)}
        assert set(rows) == {"mae", "psnr", "ssim", "prefill"}
        assert rows["prefill"]["n"] == "16" and rows["prefill"]["higher_is_better"] == "1"

    def test_tree_input(self, tmp_path: Path) -> None:
        root = tmp_path / "nirps_dataset"
        for i, (rating, psnr) in enumerate([(0.1, 15.0), (0.3, 19.0), (0.5, 22.0), (0.9, 30.0)]):
            item = root / "ixi" / "t2" / "Unit" / f"epoch_{i + 1}" / "IXI1-slice-1"
            item.mkdir(parents=True)
            (item / "artificial.txt").write_text(f"{rating}\n")
            (item / "psnr.txt").write_text(f"{psnr}\n")
        out = tmp_path / "t.csv"
        assert main(["nirps", "--csv", str(root), "--n-boot", "0", "--csv-out", str(out), "--out", str(tmp_path / "t.md")]) == 0
        (row,) = _read_csv(out)
        assert row["model"] == "unit" and float(row["inconsistency_rank"]) == 0.0 and float(row["srocc"]) == 1.0

    @pytest.mark.shared_data
    def test_published_scores_default_path(self, shared, tmp_path: Path) -> None:
        shared("data", "nirps", "nirps_scores.csv")
        out = tmp_path / "t.csv"
        rc = main(["nirps", "--n-boot", "0", "--group-by", "dataset", "--csv-out", str(out), "--out", str(tmp_path / "t.md")])
        assert rc == 0
        rows = _read_csv(out)
        assert {(r["dataset"], r["metric"]) for r in rows} == {(d, m) for d in ("brats2021", "ixi") for m in ("mae", "psnr", "ssim")}
        assert {r["n"] for r in rows} == {"2400", "3600"}


def _rated_set(tmp_path: Path) -> Path:
    """Six items: fake = real + a_i, ratings strictly decreasing in a_i (perfect agreement for L1)."""
    rng = np.random.default_rng(1)
    real = (0.2 + 0.2 * rng.random((8, 8))).astype(np.float32)
    np.save(tmp_path / "real.npy", real)
    shifts = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5]
    ratings = [0.9, 0.8, 0.6, 0.5, 0.3, 0.1]
    lines = ["fake,real,source,score,site"]
    for i, (a, r) in enumerate(zip(shifts, ratings)):
        np.save(tmp_path / f"fake{i}.npy", real + np.float32(a))
        lines.append(f"fake{i}.npy,real.npy,,{r},{'AB'[i % 2]}")
    path = tmp_path / "rated.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


class TestRated:
    def test_perfect_metric(self, tmp_path: Path) -> None:
        src = _rated_set(tmp_path)
        out, scores = tmp_path / "t.csv", tmp_path / "scores.csv"
        rc = main(["rated", str(src), "--metrics", "evaltest_l1", "--data-range", "1", "--n-boot", "10",
                   "--csv-out", str(out), "--out", str(tmp_path / "t.md"), "--scores-out", str(scores)])
        assert rc == 0
        (row,) = _read_csv(out)
        assert float(row["inconsistency_rank"]) == 0.0
        assert float(row["srocc"]) == pytest.approx(1.0) and float(row["krocc"]) == pytest.approx(1.0)
        per_item = _read_csv(scores)
        np.testing.assert_allclose([float(r["evaltest_l1"]) for r in per_item], [0.05, 0.1, 0.2, 0.3, 0.4, 0.5], atol=1e-6)
        assert [r["site"] for r in per_item] == list("ABABAB")

    def test_group_by_and_data_range(self, tmp_path: Path) -> None:
        src = _rated_set(tmp_path)
        out, scores = tmp_path / "t.csv", tmp_path / "s.csv"
        rc = main(["rated", str(src), "--metrics", "evaltest_l1", "--data-range", "2", "--n-boot", "0",
                   "--group-by", "site", "--csv-out", str(out), "--out", str(tmp_path / "t.md"), "--scores-out", str(scores)])
        assert rc == 0
        assert [r["site"] for r in _read_csv(out)] == ["A", "B"]
        assert float(_read_csv(scores)[0]["evaltest_l1"]) == pytest.approx(0.025, abs=1e-6)  # 0.05 / 2

    def test_source_and_mask_reach_the_metrics_that_take_them(self, tmp_path: Path) -> None:
        nib = pytest.importorskip("nibabel")
        rng = np.random.default_rng(3)
        real = (0.3 + 0.4 * rng.random((6, 6))).astype(np.float32)
        fake = real + np.float32(0.2)
        source = np.full((6, 6), 0.1, np.float32)
        mask = np.zeros((6, 6), np.float32)
        mask[:3] = 2.0  # half the slice; any non-zero value is lesion
        np.save(tmp_path / "real.npy", real)
        # a 2-D NIfTI is read in the package's axis convention: rows = the file's second axis
        nib.save(nib.Nifti1Image(np.ascontiguousarray(fake.T), np.eye(4)), str(tmp_path / "fake.nii.gz"))
        np.save(tmp_path / "fake2.npy", real + np.float32(0.3))
        np.save(tmp_path / "src.npy", source)
        np.save(tmp_path / "mask.npy", mask)
        (tmp_path / "set.csv").write_text(
            "fake,real,source,score,mask\n"
            "fake.nii.gz,real.npy,src.npy,0.5,\n"
            "fake.nii.gz,real.npy,src.npy,0.4,mask.npy\n"
            "fake2.npy,real.npy,,0.3,\n"
        )
        scores = tmp_path / "scores.csv"
        rc = main(["rated", str(tmp_path / "set.csv"), "--metrics", "evaltest_src,evaltest_l1", "--data-range", "1",
                   "--n-boot", "0", "--scores-out", str(scores), "--out", str(tmp_path / "t.md")])
        assert rc == 0
        # K-CROSS-like metric: metric(fake, real, source, mask), tensors (1,1,H,W) or None, unmasked images
        calls = RecordingSourceMetric.calls
        assert len(calls) == 3 and all(len(args) == 4 and not kw for args, kw in calls)
        want_mask = torch.from_numpy((mask != 0).astype(np.float32))[None, None]
        for (f, r, src, m), shift, row_src, row_mask in zip(
            (args for args, _ in calls), (0.2, 0.2, 0.3), (source, source, None), (None, want_mask, None)
        ):
            torch.testing.assert_close(f, torch.from_numpy(real + np.float32(shift))[None, None], atol=1e-6, rtol=0)
            torch.testing.assert_close(r, torch.from_numpy(real)[None, None], atol=0, rtol=0)
            if row_src is None:
                assert src is None
            else:
                torch.testing.assert_close(src, torch.from_numpy(row_src)[None, None], atol=0, rtol=0)
            if row_mask is None:
                assert m is None
            else:
                assert m.dtype == torch.float32
                torch.testing.assert_close(m, row_mask, atol=0, rtol=0)
        # baselines: metric(fake, real) on the whole images, mask and source ignored
        assert [len(c) for c in FakeL1.calls] == [2, 2, 2]
        rows = _read_csv(scores)
        assert [float(r["evaltest_l1"]) for r in rows] == pytest.approx([0.2, 0.2, 0.3], abs=1e-6)
        assert [float(r["evaltest_src"]) for r in rows] == pytest.approx([0.3, 0.3 + 5.0, 0.3], abs=1e-6)

    def test_pairs_pass_source_and_mask_and_metric_kwargs(self, tmp_path: Path) -> None:
        from kcross_metric.evaluation.rated import score_pairs

        ref = np.full((4, 5), 0.5, np.float32)
        np.save(tmp_path / "ref.npy", ref)
        np.save(tmp_path / "a.npy", ref + np.float32(0.1))
        np.save(tmp_path / "b.npy", ref - np.float32(0.3))
        np.save(tmp_path / "src.npy", np.full((4, 5), 0.25, np.float32))
        m = np.zeros((4, 5), np.float32)
        m[0, 0] = 1
        np.save(tmp_path / "m.npy", m)
        (tmp_path / "p.csv").write_text("reference,a,b,better,source,mask\nref.npy,a.npy,b.npy,a,src.npy,m.npy\n")
        _, scores = score_pairs(tmp_path / "p.csv", ["evaltest_src", "evaltest_l1"], data_range=1.0,
                                metric_kwargs={"evaltest_src": {"weights": "w.safetensors"}})
        assert RecordingSourceMetric.built == [{"data_range": 1.0, "weights": "w.safetensors"}]
        (fa, ra, sa, ma), _ = RecordingSourceMetric.calls[0]
        assert float(fa.mean()) == pytest.approx(0.6) and float(ra.mean()) == 0.5
        assert float(sa.mean()) == 0.25 and int(ma.sum()) == 1 and ma[0, 0, 0, 0] == 1
        va, vb = scores["evaltest_src"]
        assert va[0] == pytest.approx(0.1 + 0.25 + 0.5) and vb[0] == pytest.approx(0.3 + 0.25 + 0.5)
        assert scores["evaltest_l1"][0][0] == pytest.approx(0.1) and scores["evaltest_l1"][1][0] == pytest.approx(0.3)
        with pytest.raises(ConfigError, match="not among the metrics"):
            score_pairs(tmp_path / "p.csv", ["evaltest_l1"], data_range=1.0, metric_kwargs={"kcross": {"weights": "w"}})

    def test_errors(self, tmp_path: Path, capsys) -> None:
        src = _rated_set(tmp_path)
        base = ["rated", str(src), "--data-range", "1", "--n-boot", "0"]
        assert main([*base, "--metrics", "no_such_metric"]) == 2
        assert "unknown metric" in capsys.readouterr().err
        assert main([*base, "--metrics", "evaltest_l1", "--weights", "w.safetensors"]) == 2
        assert "--weights is for metric 'kcross'" in capsys.readouterr().err
        assert main([*base, "--metrics", "kcross", "--weights", str(tmp_path / "none.safetensors")]) == 2
        assert "none.safetensors" in capsys.readouterr().err  # the path really reached K-CROSS
        assert main([*base, "--metrics", "evaltest_broken"]) == 2
        assert "cannot be imported" in capsys.readouterr().err
        (tmp_path / "fake1.npy").write_bytes(b"garbage")
        assert main([*base, "--metrics", "evaltest_l1"]) == 2
        assert "fake1.npy" in capsys.readouterr().err
        np.save(tmp_path / "fake1.npy", np.zeros((4, 4), np.float32))
        assert main([*base, "--metrics", "evaltest_l1"]) == 2
        assert "shapes" in capsys.readouterr().err
        (tmp_path / "missing.csv").write_text("fake,real,score\nnope.npy,real.npy,0.5\n")
        assert main(["rated", str(tmp_path / "missing.csv"), "--metrics", "evaltest_l1", "--data-range", "1"]) == 2
        assert "does not exist" in capsys.readouterr().err

    def test_real_psnr_if_available(self, tmp_path: Path) -> None:
        try:
            registry.create_metric("psnr", data_range=1.0)
        except (ImportError, AttributeError) as exc:
            pytest.skip(f"PSNR baseline not importable yet: {exc}")
        src = _rated_set(tmp_path)
        out = tmp_path / "t.csv"
        assert main(["rated", str(src), "--metrics", "psnr", "--data-range", "1", "--n-boot", "0",
                     "--csv-out", str(out), "--out", str(tmp_path / "t.md")]) == 0
        (row,) = _read_csv(out)
        assert float(row["srocc"]) == pytest.approx(1.0)  # PSNR of a constant shift orders like L1


def _pair_set(tmp_path: Path) -> Path:
    ref = np.full((8, 8), 0.5, np.float32)
    np.save(tmp_path / "ref.npy", ref)
    for d in (0.0, 0.1, 0.2, 0.3):
        np.save(tmp_path / f"d{int(d * 10)}.npy", ref + np.float32(d))
    # L1 distances: d0=0, d1=.1, d2=.2, d3=.3 (lower is better)
    # blur:  (d1 vs d2, a) agree; (d3 vs d1, b) agree; (d2 vs d2, a) tie -> (1 + 1 + .5) / 3
    # noise: (d1 vs d3, b) disagree; (d0 vs d1, 0.25) metric prefers a -> .25
    (tmp_path / "pairs.csv").write_text(
        "reference,a,b,better,rule\n"
        "ref.npy,d1.npy,d2.npy,a,blur\n"
        "ref.npy,d3.npy,d1.npy,b,blur\n"
        "ref.npy,d2.npy,d2.npy,a,blur\n"
        "ref.npy,d1.npy,d3.npy,b,noise\n"
        "ref.npy,d0.npy,d1.npy,0.25,noise\n"
    )
    return tmp_path / "pairs.csv"


class TestTwoAFC:
    def test_accuracy_per_rule(self, tmp_path: Path) -> None:
        out = tmp_path / "t.csv"
        rc = main(["2afc", str(_pair_set(tmp_path)), "--metrics", "evaltest_l1", "--data-range", "1",
                   "--n-boot", "50", "--csv-out", str(out), "--out", str(tmp_path / "t.md")])
        assert rc == 0
        rows = {r["rule"]: r for r in _read_csv(out)}
        assert set(rows) == {"blur", "noise", "all"}
        assert float(rows["blur"]["accuracy"]) == pytest.approx(2.5 / 3)
        assert float(rows["noise"]["accuracy"]) == pytest.approx(0.125)
        assert float(rows["all"]["accuracy"]) == pytest.approx(2.75 / 5)
        assert int(rows["all"]["n_pairs"]) == 5
        assert float(rows["all"]["ci_low"]) <= 0.55 <= float(rows["all"]["ci_high"])
        assert "2AFC accuracy" in (tmp_path / "t.md").read_text(encoding="utf-8")

    def test_direction_override(self, tmp_path: Path) -> None:
        out = tmp_path / "t.csv"
        rc = main(["2afc", str(_pair_set(tmp_path)), "--metrics", "evaltest_l1", "--data-range", "1", "--n-boot", "0",
                   "--higher-is-better", "evaltest_l1", "--csv-out", str(out), "--out", str(tmp_path / "t.md")])
        assert rc == 0
        rows = {r["rule"]: r for r in _read_csv(out)}
        assert float(rows["all"]["accuracy"]) == pytest.approx(1 - 2.75 / 5)

    def test_bad_better_value(self, tmp_path: Path, capsys) -> None:
        p = _pair_set(tmp_path)
        p.write_text(p.read_text(encoding="utf-8").replace("0.25,noise", "maybe,noise"))
        assert main(["2afc", str(p), "--metrics", "evaltest_l1", "--data-range", "1"]) == 2
        assert "better must be" in capsys.readouterr().err


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from kcross_metric.cli.eval import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    main(['nirps', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'scipy', 'nibabel') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    env = dict(os.environ)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "HEAVY []" in res.stdout
    assert "nirps" in res.stdout and "--max-epoch" in res.stdout


def test_kcross_with_weights_gets_source_and_mask(tmp_path: Path) -> None:
    """kcross-eval 2afc --metrics kcross --weights W equals KCross(weights=W)(x, ref, source, mask)."""
    from kcross_metric.core.metric import KCross
    from kcross_metric.core.nets.kcross_nets import KCrossNetworks
    from kcross_metric.data.phantom import make_phantom
    from kcross_metric.weights import save_safetensors

    torch.manual_seed(0)
    weights = tmp_path / "kcross.safetensors"
    save_safetensors({k: v.contiguous() for k, v in KCrossNetworks().state_dict().items()}, weights)
    ph = make_phantom((64, 64), contrasts=("t1", "t2"), seed=0)
    ref, src, mask = (ph[k][0, 0].numpy().astype(np.float32) for k in ("t2", "t1", "mask"))
    assert mask.sum() > 50
    a = np.clip(ref + 0.05 * np.random.default_rng(0).standard_normal(ref.shape), 0, 1).astype(np.float32)
    b = ref.copy()
    b[mask > 0] = ref[mask > 0] * 0.3  # faded lesion
    for name, arr in (("ref", ref), ("src", src), ("mask", mask), ("a", a), ("b", b)):
        np.save(tmp_path / f"{name}.npy", arr)
    (tmp_path / "pairs.csv").write_text(
        "reference,a,b,better,source,mask,rule\n"
        "ref.npy,a.npy,b.npy,a,src.npy,mask.npy,lesion\n"
        "ref.npy,a.npy,b.npy,a,,,lesion\n"
    )
    from kcross_metric.evaluation.rated import score_pairs

    _, scores = score_pairs(tmp_path / "pairs.csv", ["kcross"], data_range=1.0,
                            metric_kwargs={"kcross": {"weights": str(weights)}})
    metric = KCross(weights=weights)
    t = {k: torch.from_numpy(v)[None, None] for k, v in (("ref", ref), ("src", src), ("a", a), ("b", b))}
    m = torch.from_numpy((mask != 0).astype(np.float32))[None, None]
    with torch.no_grad():
        want_a = float(metric(t["a"], t["ref"], t["src"], m)[0])
        want_b = float(metric(t["b"], t["ref"], t["src"], m)[0])
        want_b_plain = float(metric(t["b"], t["ref"])[0])
    va, vb = scores["kcross"]
    assert va[0] == pytest.approx(want_a, abs=1e-6) and vb[0] == pytest.approx(want_b, abs=1e-6)
    assert vb[1] == pytest.approx(want_b_plain, abs=1e-6)
    assert abs(vb[0] - vb[1]) > 1e-6  # the given lesion mask and source changed the score
    out = tmp_path / "t.csv"
    assert main(["2afc", str(tmp_path / "pairs.csv"), "--metrics", "kcross", "--weights", str(weights),
                 "--data-range", "1", "--n-boot", "0", "--csv-out", str(out), "--out", str(tmp_path / "t.md")]) == 0
    rows = {r["rule"]: r for r in _read_csv(out)}
    assert int(rows["lesion"]["n_pairs"]) == 2
