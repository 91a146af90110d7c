"""NIRPS readers: published CSV, the prototype's per-item folder tree, the pre-fill list, real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kcross_metric.errors import ConfigError, FileFormatError
from kcross_metric.evaluation.agreement import chance_inconsistency, inconsistency
from kcross_metric.evaluation.nirps import (
    attach_prefill,
    load_nirps_csv,
    load_nirps_prefill,
    load_nirps_scores,
    load_nirps_tree,
)

HEADER = "dataset,target,model,epoch,slice_id,artificial,mae,psnr,ssim\n"
ROWS = [
    ("ixi", "t2", "cyclegan", 1, "IXI1-slice-1", 0.2, 0.05, 20.0, 0.80),
    ("ixi", "t2", "cyclegan", 1, "IXI2-slice-2", 0.5, 0.03, 24.0, 0.85),
    ("ixi", "t2", "Munit", 2, "IXI1-slice-1", 0.0, 0.09, 15.5, 0.60),
    ("ixi", "pd", "Unit", 41, "IXI2-slice-2", 0.9, 0.01, 30.0, 0.95),
    ("brats2021", "flair", "munit", 3, "BraTS2021_00027-slice-79", 0.4, 0.04, 21.0, 0.90),
]


def write_csv(path: Path, rows=ROWS, header: str = HEADER) -> Path:
    path.write_text(header + "".join(",".join(str(c) for c in r) + "\n" for r in rows))
    return path


def write_tree(root: Path, rows=ROWS) -> Path:
    """The prototype's layout: <root>/<dataset>/<target>/<model>/epoch_<n>/<slice_id>/<name>.txt."""
    for ds, tgt, model, ep, sl, rating, mae, psnr, ssim in rows:
        item = root / ds / tgt / model / f"epoch_{ep}" / sl
        item.mkdir(parents=True)
        for name, value in (("artificial", rating), ("mae", mae), ("psnr", psnr), ("ssim", ssim)):
            (item / f"{name}.txt").write_text(f"{value}\n")
        (item / "img.png").write_bytes(b"\x89PNG not really")
    (root / "ixi" / "t2" / "gt" / "IXI1-slice-1").mkdir(parents=True)  # ground-truth folder is skipped
    return root


class TestCSV:
    def test_reads_and_filters_epochs(self, tmp_path: Path) -> None:
        t = load_nirps_csv(write_csv(tmp_path / "s.csv"), max_epoch=40)
        assert len(t) == 4  # epoch 41 dropped
        assert t.metric_names == ["mae", "psnr", "ssim"]
        assert list(t.keys["model"]) == ["cyclegan", "cyclegan", "munit", "munit"]  # lower-cased
        assert list(t.keys["epoch"]) == ["1", "1", "2", "3"]
        np.testing.assert_allclose(t.ratings, [0.2, 0.5, 0.0, 0.4])
        np.testing.assert_allclose(t.metrics["psnr"], [20.0, 24.0, 15.5, 21.0])
        assert len(load_nirps_csv(tmp_path / "s.csv", max_epoch=None)) == 5
        assert len(load_nirps_scores(tmp_path / "s.csv", max_epoch=1)) == 2

    def test_extra_metric_columns_are_kept(self, tmp_path: Path) -> None:
        rows = [r + (0.7,) for r in ROWS]
        t = load_nirps_csv(write_csv(tmp_path / "s.csv", rows, HEADER.strip() + ",kcross\n"))
        assert t.metric_names == ["mae", "psnr", "ssim", "kcross"]

    @pytest.mark.parametrize(
        "content, message",
        [
            ("", "empty"),
            ("dataset,target,model,epoch,slice_id,mae\nixi,t2,unit,1,a,0.1\n", "missing column"),
            (HEADER + "ixi,t2,unit,1,a,0.5,0.1,20\n", "fields"),
            (HEADER + "ixi,t2,unit,1,a,high,0.1,20,0.9\n", "expected a number"),
            (HEADER + "ixi,t2,unit,one,a,0.5,0.1,20,0.9\n", "epoch must be an integer"),
            (HEADER + "ixi,t2,unit,1,a,1.5,0.1,20,0.9\n", "outside [0, 1]"),
            (HEADER + "ixi,t2,unit,1,a,0.5,nan,20,0.9\n", "not finite"),
            (HEADER + "ixi,t2,unit,1,a,0.5,0.1,20,0.9\nixi,t2,unit,1,a,0.4,0.1,20,0.9\n", "more than once"),
            (HEADER + "ixi,t2,unit,45,a,0.5,0.1,20,0.9\n", "no NIRPS items"),
        ],
    )
    def test_malformed(self, tmp_path: Path, content: str, message: str) -> None:
        p = tmp_path / "bad.csv"
        p.write_text(content)
        with pytest.raises(FileFormatError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_nirps_csv(p)

    def test_line_number_in_message(self, tmp_path: Path) -> None:
        p = tmp_path / "bad.csv"
        p.write_text(HEADER + "ixi,t2,unit,1,a,0.5,0.1,20,0.9\nixi,t2,unit,1,b,0.5,x,20,0.9\n")
        with pytest.raises(FileFormatError, match=r"bad\.csv:3 column mae"):
            load_nirps_csv(p)

    def test_missing_file_and_bad_epoch_limit(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            load_nirps_scores(tmp_path / "absent.csv")
        with pytest.raises(ConfigError):
            load_nirps_csv(write_csv(tmp_path / "s.csv"), max_epoch=0)


class TestTree:
    def test_tree_equals_csv(self, tmp_path: Path) -> None:
        tree = load_nirps_scores(write_tree(tmp_path / "nirps_dataset"), max_epoch=None)
        flat = load_nirps_csv(write_csv(tmp_path / "s.csv"), max_epoch=None)
        assert len(tree) == len(flat) == 5
        assert tree.metric_names == ["mae", "psnr", "ssim"]

        def as_dict(t):
            return {
                tuple(t.keys[k][i] for k in ("dataset", "target", "model", "epoch", "slice_id")):
                (t.ratings[i], *(t.metrics[m][i] for m in ("mae", "psnr", "ssim")))
                for i in range(len(t))
            }

        assert as_dict(tree) == pytest.approx(as_dict(flat))
        # sorted by dataset, target, model, epoch
        assert list(tree.keys["dataset"]) == ["brats2021", "ixi", "ixi", "ixi", "ixi"]
        assert len(load_nirps_tree(tmp_path / "nirps_dataset", max_epoch=40)) == 4

    def test_last_line_wins(self, tmp_path: Path) -> None:
        root = write_tree(tmp_path / "n", ROWS[:2])
        item = root / "ixi" / "t2" / "cyclegan" / "epoch_1" / "IXI1-slice-1"
        (item / "artificial.txt").write_text("0.3\n0.7\n\n")  # re-saved by the rating tool
        t = load_nirps_tree(root)
        assert t.ratings[0] == pytest.approx(0.7)

    def test_choose_rating_and_metrics(self, tmp_path: Path) -> None:
        root = write_tree(tmp_path / "n", ROWS[:2])
        for item in (root / "ixi" / "t2" / "cyclegan" / "epoch_1").iterdir():
            (item / "human.txt").write_text("0.5\n")
        t = load_nirps_tree(root, rating="human", metrics=["psnr"])
        np.testing.assert_allclose(t.ratings, [0.5, 0.5])
        assert t.metric_names == ["psnr"]
        assert load_nirps_tree(root).metric_names == ["mae", "psnr", "ssim", "human"]

    def test_metric_missing_in_one_item(self, tmp_path: Path) -> None:
        root = write_tree(tmp_path / "n", ROWS[:2])
        (root / "ixi" / "t2" / "cyclegan" / "epoch_1" / "IXI2-slice-2" / "ssim.txt").unlink()
        assert load_nirps_tree(root).metric_names == ["mae", "psnr"]  # only metrics every item has
        with pytest.raises(FileFormatError, match="ssim.txt"):
            load_nirps_tree(root, metrics=["ssim"])

    @pytest.mark.parametrize(
        "damage, message",
        [
            (lambda item: (item / "artificial.txt").unlink(), "no artificial.txt"),
            (lambda item: (item / "psnr.txt").write_text("24.0\nabc\n"), r"psnr\.txt:2: expected a number"),
            (lambda item: (item / "mae.txt").write_text("\n\n"), "is empty"),
            (lambda item: (item / "artificial.txt").write_text("7\n"), r"outside \[0, 1\]"),
            (lambda item: (item.parent.parent / "epoch_x").mkdir(), "epoch_<n>"),
        ],
    )
    def test_malformed(self, tmp_path: Path, damage, message: str) -> None:
        root = write_tree(tmp_path / "n", ROWS[:2])
        damage(root / "ixi" / "t2" / "cyclegan" / "epoch_1" / "IXI1-slice-1")
        with pytest.raises(FileFormatError, match=message):
            load_nirps_tree(root)

    def test_empty_or_missing_folder(self, tmp_path: Path) -> None:
        (tmp_path / "empty").mkdir()
        with pytest.raises(FileFormatError, match="no item folders"):
            load_nirps_tree(tmp_path / "empty")
        with pytest.raises(FileNotFoundError):
            load_nirps_tree(tmp_path / "absent")


class TestPrefill:
    LINES = (
        "0.9708, ./nirps_dataset/ixi/t2/cyclegan/epoch_1/IXI1-slice-1\n"
        "0.5000, ./nirps_dataset/ixi/t2/cyclegan/epoch_1/IXI2-slice-2\n"
        "0.4000, ./nirps_dataset/ixi/t2/Munit/epoch_2/IXI1-slice-1\n"
        "0.4000, ./nirps_dataset/ixi/t2/Munit/epoch_2/IXI1-slice-1\n"  # listed twice, identical: fine
        "0.1000, ./nirps_dataset/brats2021/flair/munit/epoch_3/BraTS2021_00027-slice-79\n"
    )

    def test_parse_and_attach(self, tmp_path: Path) -> None:
        p = tmp_path / "human.txt"
        p.write_text(self.LINES)
        pre = load_nirps_prefill(p)
        assert len(pre) == 4
        assert pre[("ixi", "t2", "munit", "2", "IXI1-slice-1")] == 0.4
        t = attach_prefill(load_nirps_csv(write_csv(tmp_path / "s.csv")), pre)
        np.testing.assert_allclose(t.metrics["prefill"], [0.9708, 0.5, 0.4, 0.1])

    def test_conflicts_and_gaps(self, tmp_path: Path) -> None:
        p = tmp_path / "human.txt"
        p.write_text(self.LINES + "0.3000, ./nirps_dataset/ixi/t2/Munit/epoch_2/IXI1-slice-1\n")
        with pytest.raises(FileFormatError, match="different score"):
            load_nirps_prefill(p)
        p.write_text("0.5 ./nirps_dataset/ixi/t2/unit/epoch_1/a\n")
        with pytest.raises(FileFormatError, match="expected"):
            load_nirps_prefill(p)
        p.write_text(self.LINES.splitlines()[0] + "\n")
        with pytest.raises(FileFormatError, match="no pre-fill score"):
            attach_prefill(load_nirps_csv(write_csv(tmp_path / "s.csv")), load_nirps_prefill(p))


@pytest.mark.shared_data
class TestRealNIRPS:
    def test_published_scores(self, shared) -> None:
        path = shared("data", "nirps", "nirps_scores.csv")
        t = load_nirps_scores(path)
        assert len(t) == 6000 and len(load_nirps_scores(path, max_epoch=None)) == 7500
        assert t.metric_names == ["mae", "psnr", "ssim"]
        assert set(np.round(t.ratings, 6)) == {round(0.1 * k, 6) for k in range(10)}
        sizes = {label: len(sub) for label, sub in t.group_by(["dataset", "model"])}
        assert sizes[(("dataset", "ixi"), ("model", "unit"))] == 800
        assert sizes[(("dataset", "brats2021"), ("model", "cyclegan"))] == 1200

    def test_regression_mode_reproduces_the_prototype_log(self, shared) -> None:
        # the prototype's logged regression-mode output for UNIT, epochs 1-40 (4 decimals)
        logged = {
            ("ixi", "mae"): 0.3301, ("ixi", "psnr"): 0.2169, ("ixi", "ssim"): 0.3614,
            ("brats2021", "mae"): 0.3544, ("brats2021", "psnr"): 0.2089, ("brats2021", "ssim"): 0.4965,
        }
        t = load_nirps_scores(shared("data", "nirps", "nirps_scores.csv"))
        for (ds, metric), value in logged.items():
            sub = t.subset((t.keys["dataset"] == ds) & (t.keys["model"] == "unit"))
            ours = inconsistency(sub.metrics[metric], sub.ratings, higher_is_better=metric != "mae", mode="regression")
            assert ours == pytest.approx(value, abs=5e-5), (ds, metric)

    def test_rank_mode_beats_chance_legacy_does_not(self, shared) -> None:
        t = load_nirps_scores(shared("data", "nirps", "nirps_scores.csv"))
        for _, sub in t.group_by(["dataset", "model"]):
            chance = chance_inconsistency(sub.ratings)
            rank = inconsistency(-sub.metrics["mae"], sub.ratings, higher_is_better=True)
            legacy = inconsistency(sub.metrics["mae"], sub.ratings, higher_is_better=False, mode="legacy")
            assert rank < chance - 0.03
            assert abs(legacy - chance) < 0.04

    def test_prefill_list(self, shared) -> None:
        pre = load_nirps_prefill(shared("data", "nirps", "nirps_dataset_human.txt"))
        assert len(pre) == 7500
        t = attach_prefill(load_nirps_scores(shared("data", "nirps", "nirps_scores.csv")), pre)
        assert np.all((t.metrics["prefill"] >= 0) & (t.metrics["prefill"] <= 1))
