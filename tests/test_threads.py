"""Thread defaults (issue 19): the CLI takes the cores other work leaves free; the library leaves
torch's setting alone; the choice never changes a score."""

import json

import pytest
import torch

from kcross_metric._util import threads
from kcross_metric.cli._common import apply_threads_option
from kcross_metric.errors import ConfigError

STAT = """cpu  {u} 0 {s} {i} {w} 0 0 0 0 0
cpu0 {u} 0 0 {i} 0 0 0 0 0 0
cpu1 0 0 {s} {w} 0 0 0 0 0 0
intr 1
"""


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("busy, cores, expected", [
    (0.0, 2, 2), (0.05, 2, 2), (0.6, 2, 1), (1.0, 2, 1), (1.9, 2, 1), (5.0, 2, 1),
    (0.4, 2, 2), (1.0, 8, 7), (0.0, 1, 1), (None, 4, 4), (float("nan"), 4, 4),
])
def test_recommended_threads_is_the_free_cores(busy, cores, expected, monkeypatch):
    monkeypatch.setattr(threads, "busy_cores", lambda: None)  # busy=None: "could not be measured"
    assert threads.recommended_threads(busy=busy, cores=cores) == expected


def test_busy_cores_from_two_samples_of_proc_stat(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    samples = iter([STAT.format(u=100, s=0, i=100, w=0), STAT.format(u=175, s=25, i=190, w=10)])

    def sleep(_):
        stat.write_text(next(samples))

    sleep(0)
    monkeypatch.setattr(threads.time, "sleep", sleep)
    monkeypatch.setattr(threads, "_affinity", lambda: {0, 1})
    # cpu0: 75 of 165 jiffies busy; cpu1: 25 of 35 (iowait counts as idle)
    assert threads.busy_cores(stat_file=str(stat)) == pytest.approx(75 / 165 + 25 / 35)
    samples = iter([STAT.format(u=100, s=0, i=100, w=0), STAT.format(u=175, s=25, i=190, w=10)])
    sleep(0)
    monkeypatch.setattr(threads, "_affinity", lambda: {1})  # only cpu1 is ours: cpu0's load is not
    assert threads.busy_cores(stat_file=str(stat)) == pytest.approx(25 / 35)


def test_busy_cores_without_per_cpu_lines_scales_the_machine_share(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    samples = iter(["cpu  100 0 0 100 0 0 0 0 0 0\n", "cpu  150 0 0 150 0 0 0 0 0 0\n"])
    monkeypatch.setattr(threads.time, "sleep", lambda _: stat.write_text(next(samples)))
    stat.write_text(next(samples))
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    assert threads.busy_cores(stat_file=str(stat)) == pytest.approx(0.5 * 4)


def test_busy_cores_without_proc_stat_falls_back_to_load_average(tmp_path, monkeypatch):
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.5, 1.0, 0.5), raising=False)
    assert threads.busy_cores(stat_file=str(tmp_path / "missing")) == 1.5


def test_busy_cores_on_this_machine_is_in_range():
    busy = threads.busy_cores(sample_seconds=0.05)
    if busy is None:
        pytest.skip("no /proc/stat and no load average on this system")
    assert 0.0 <= busy <= threads.os.cpu_count() + 1e-6


def test_threads_option(monkeypatch, restore_threads):
    assert apply_threads_option("1", "cpu") == 1 and torch.get_num_threads() == 1
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.raises(ConfigError, match="--threads"):
            apply_threads_option(bad, "cpu")
    monkeypatch.setattr(threads, "recommended_threads", lambda: 1)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    assert apply_threads_option("auto", "cpu") == 1  # measured free cores
    torch.set_num_threads(2)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert apply_threads_option("auto", "cpu") == 2  # an explicit OMP_NUM_THREADS wins
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert apply_threads_option("AUTO", torch.device("cuda", 0)) == 2  # GPU work: left as it is
    assert apply_threads_option("auto", "no-such-device") == 2  # reported where the device is used
    assert apply_threads_option("auto", "CPU") == 1


def test_library_leaves_torch_threads_alone(restore_threads):
    from kcross_metric import KCross
    from kcross_metric.data.phantom import make_pair

    torch.set_num_threads(2)
    fake, real, source, _ = make_pair((64, 64), seed=0)
    KCross()(fake, real, source)
    assert torch.get_num_threads() == 2


def test_thread_count_does_not_change_scores(restore_threads):
    from kcross_metric import KCross
    from kcross_metric.data.phantom import make_pair

    fake, real, source, _ = make_pair((16, 64, 64), seed=1, blur_sigma=1.0)
    metric = KCross(reference_cache_mb=0)
    out = []
    for n in (1, 2):
        torch.set_num_threads(n)
        out.append(metric.score(fake, real, source).slice_scores)
    diff = (out[0] - out[1]).nan_to_num(0).abs().max().item()
    assert diff <= 1e-6  # float32 reduction order only


def test_cli_reports_threads_used(tmp_path, capsys, restore_threads):
    import nibabel as nib
    import numpy as np

    from kcross_metric.cli.score import main
    from kcross_metric.data.phantom import make_pair

    fake, real, _, _ = make_pair((16, 64, 64), seed=0)
    paths = []
    for name, t in (("fake", fake), ("real", real)):
        path = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(t[0, 0].numpy().transpose(2, 1, 0).astype(np.float32), np.eye(4)), path)
        paths.append(str(path))
    assert main([*paths, "--json", "--threads", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["threads"] == 1
    assert main([*paths, "--threads", "zero"]) == 2
    assert "--threads must be" in capsys.readouterr().err
