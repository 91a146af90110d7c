"""kcross-score on NIfTI files: grids, resampling, bad files, outputs, exit codes."""

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from kcross_metric.cli.score import main
from kcross_metric.core.nets.kcross_nets import KCrossNetworks
from kcross_metric.data.phantom import make_phantom
from kcross_metric.weights import save_safetensors, write_checksums


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """An architecture-valid weight file (random init) so the CLI path runs without trained weights."""
    torch.manual_seed(0)
    nets = KCrossNetworks()
    path = tmp_path_factory.mktemp("w") / "kcross.safetensors"
    save_safetensors({k: v.contiguous() for k, v in nets.state_dict().items()}, path)
    write_checksums(path.parent)
    return path


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    d = tmp_path_factory.mktemp("vol")
    ph = make_phantom((16, 64, 64), contrasts=("t1", "t2"), seed=0)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    paths = {}
    for name, arr in (("real", ph["t2"]), ("source", ph["t1"]), ("mask", ph["mask"])):
        data = arr[0, 0].numpy().transpose(2, 1, 0)  # package (D,H,W) -> file (x,y,z) in RAS
        paths[name] = d / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), paths[name])
    fake = np.clip(ph["t2"][0, 0].numpy() * 0.9 + 0.02, 0, 1).transpose(2, 1, 0)
    paths["fake"] = d / "fake.nii.gz"
    nib.save(nib.Nifti1Image(fake.astype(np.float32), affine), paths["fake"])
    shifted = affine.copy()
    shifted[:3, :3] *= 1.5
    paths["fake_other_grid"] = d / "fake_other_grid.nii.gz"
    nib.save(nib.Nifti1Image(fake.astype(np.float32), shifted), paths["fake_other_grid"])
    paths["fourd"] = d / "fourd.nii.gz"
    nib.save(nib.Nifti1Image(np.stack([fake, fake], -1).astype(np.float32), affine), paths["fourd"])
    return paths


def test_scores_volume_json(volumes, weights_file, capsys):
    code = main([str(volumes["fake"]), str(volumes["real"]), "--source", str(volumes["source"]),
                 "--weights", str(weights_file), "--json", "--slices"])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert 0.0 <= res["kcross"] <= 1.0
    assert res["slices_total"] == 16 and 0 < res["slices_scored"] <= 16
    assert len(res["slice_scores"]) == 16
    assert set(res["branches"]) == {"complex", "tumor", "structure", "natural"}
    assert res["version"]["weights_sha256"]


def test_mask_option_marks_lesion_slices(volumes, weights_file, capsys):
    assert main([str(volumes["fake"]), str(volumes["real"]), "--mask", str(volumes["mask"]),
                 "--weights", str(weights_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["slices_with_lesion"] > 0


def test_grid_mismatch_is_exit_2_unless_resample(volumes, weights_file, capsys):
    args = [str(volumes["fake_other_grid"]), str(volumes["real"]), "--weights", str(weights_file)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("kcross-score: error:") and "grid" in err.lower() and "Traceback" not in err
    assert main(args + ["--resample"]) == 0


def test_4d_file_is_exit_2(volumes, weights_file, capsys):
    assert main([str(volumes["fourd"]), str(volumes["real"]), "--weights", str(weights_file)]) == 2
    err = capsys.readouterr().err
    assert "4-D" in err or "4D" in err


def test_missing_and_corrupt_files_are_exit_2(volumes, weights_file, tmp_path, capsys):
    assert main([str(tmp_path / "nope.nii.gz"), str(volumes["real"]), "--weights", str(weights_file)]) == 2
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(volumes["fake"].read_bytes()[:200])
    assert main([str(bad), str(volumes["real"]), "--weights", str(weights_file)]) == 2


def test_out_file_never_overwritten_without_flag(volumes, weights_file, tmp_path):
    out = tmp_path / "res.json"
    out.write_text("keep me")
    args = [str(volumes["fake"]), str(volumes["real"]), "--weights", str(weights_file), "--out", str(out)]
    assert main(args) == 2
    assert out.read_text(encoding="utf-8") == "keep me"
    assert main(args + ["--overwrite"]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["kcross"] >= 0.0
    assert not list(tmp_path.glob("*.tmp"))


def test_demo_with_explicit_weights(weights_file, capsys):
    assert main(["--demo", "--weights", str(weights_file)]) == 0
    out = capsys.readouterr().out
    assert "mild" in out and "severe" in out


def test_help_does_not_import_torch():
    code = "import sys; from kcross_metric.cli import score; score.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_empty_reference_volume_is_an_error(volumes, weights_file, tmp_path, capsys):
    """An all-zero real volume is refused with a message in CLI words, not scored silently."""
    zero = tmp_path / "zero.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((64, 64, 16), np.float32), np.eye(4)), zero)
    assert main([str(volumes["fake"]), str(zero), "--weights", str(weights_file)]) == 2
    err = capsys.readouterr().err
    assert "constant" in err and "zero.nii.gz" in err and "KCross(" not in err


def test_empty_reference_in_python_names_the_volume():
    from kcross_metric.core.metric import KCross
    from kcross_metric.errors import EmptyReferenceError, InputError

    real = torch.rand(2, 1, 3, 32, 32)
    real[1] = 0.0
    with pytest.raises(EmptyReferenceError, match=r"\[1\].*min_brain_fraction") as info:
        KCross.untrained(seed=0).score(real, real)
    assert isinstance(info.value, InputError) and "KCross(" not in info.value.cli_message
