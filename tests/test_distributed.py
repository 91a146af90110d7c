"""Metric states across processes: two CPU ranks (gloo) that each see part of a fixed dataset must
compute() the single-process result.

Both ranks and the single-process reference score the same batches with one thread, so per-sample
values are bitwise equal and compared with ``torch.equal``; the means differ only by the order of
float64 additions and are compared with an absolute tolerance of 1e-12.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import torch

pytest.importorskip("torchmetrics")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():  # pragma: no cover
    pytest.skip("torch.distributed with the gloo backend is not available", allow_module_level=True)

from kcross_metric import KCross  # noqa: E402 (after the skip above)
from kcross_metric.data.phantom import make_pair  # noqa: E402 (after the skip above)
from kcross_metric.integrations.metrics import KCrossMetric, MAEMetric, RegistryMetric, SSIMMetric  # noqa: E402 (after the skip above)

N_SAMPLES = 7
#: scenario -> per rank, the (start, stop) slices of the dataset it updates with, in order.
SCENARIOS: dict[str, list[list[tuple[int, int]]]] = {
    "uneven": [[(0, 2), (2, 5)], [(5, 7)]],  # 5 samples in two batches vs 2 in one
    "one_rank_empty": [[(0, 3), (3, 7)], []],  # rank 1 sees nothing
}


def _metrics() -> dict[str, RegistryMetric]:
    return {
        "kcross": KCrossMetric(module=KCross.untrained(seed=0), keep_per_sample=True),
        "ssim": SSIMMetric(keep_per_sample=True),
        "mae": MAEMetric(),
    }


def _run(metrics: dict[str, RegistryMetric], data: dict[str, torch.Tensor], batches: list[tuple[int, int]]) -> None:
    for start, stop in batches:
        sl = slice(start, stop)
        fake, real, source = data["fake"][sl], data["real"][sl], data["source"][sl]
        metrics["kcross"].update(fake, real, source)
        metrics["ssim"].update(fake, real)
        metrics["mae"].update(fake, real)


def _results(metrics: dict[str, RegistryMetric]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, m in metrics.items():
        out[name] = m.compute()
        if m.keep_per_sample:
            out[name + "/per_sample"] = m.per_sample()
    return out


def _worker(rank: int, world: int, init_file: str, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    try:
        data = torch.load(Path(folder) / "data.pt")
        metrics = _metrics()
        results = {}
        for scenario, per_rank in SCENARIOS.items():
            for m in metrics.values():
                m.reset()
            _run(metrics, data, per_rank[rank])
            results[scenario] = _results(metrics)
        torch.save(results, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_compute_the_single_process_result(tmp_path: Path):
    import torch.multiprocessing as mp

    fakes, reals, sources = [], [], []
    for i in range(N_SAMPLES):
        f, r, s, _ = make_pair((64, 64), seed=i, blur_sigma=0.4 + 0.3 * i, lesion_fade=0.1 * i)
        fakes.append(f)
        reals.append(r)
        sources.append(s)
    data = {"fake": torch.cat(fakes), "real": torch.cat(reals), "source": torch.cat(sources)}
    torch.save(data, tmp_path / "data.pt")

    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = {}
        for scenario, per_rank in SCENARIOS.items():
            metrics = _metrics()
            _run(metrics, data, [b for batches in per_rank for b in batches])  # same batches, one process
            reference[scenario] = _results(metrics)
            assert all(m.count.item() == N_SAMPLES for m in metrics.values())
    finally:
        torch.set_num_threads(threads)

    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        for scenario, ref in reference.items():
            for key, expected in ref.items():
                value = got[scenario][key]
                where = f"rank {rank}, {scenario}, {key}"
                if key.endswith("/per_sample"):
                    assert value.shape == (N_SAMPLES,), where
                    assert torch.equal(value, expected), where
                else:
                    assert value.dtype == torch.float64, where
                    assert abs(value.item() - expected.item()) <= 1e-12, where
    # the scores spread, so a rank that computed only its own share would be caught
    per = reference["uneven"]["kcross/per_sample"]
    assert float(per[:5].mean() - per[5:].mean()) != pytest.approx(0.0, abs=1e-3)
