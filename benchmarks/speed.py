"""Speed and memory of K-CROSS next to LPIPS-Alex, LPIPS-VGG, DISTS, SSIM and MS-SSIM.

Usage (from the repository root)::

    python benchmarks/speed.py [--quick] [--threads N] [--batch-sizes 1 4 16] [--channels-last]
                               [--profile] [--flops] [--epoch [--epochs 3] [--epoch-cache-mb 0 512 2048]]
                               [--no-volume] [--compete 0 1] [--json results.json]

What it measures, in one run, printed as markdown tables:

1. per-slice throughput of every metric on the same 256x256 phantom slices (T1 -> T2 pairs; K-CROSS
   also gets the source) at batch sizes 1, 4, 16: median slices/s over the timed calls, CPU
   milliseconds per slice (process time, all threads; far less sensitive than wall time to other
   jobs on the machine), the throughput ratio to LPIPS-VGG at the same batch size, the peak RSS of
   the process that ran that metric (each metric runs in its own subprocess, so peaks do not mix)
   and the metric's share of it (peak minus the RSS once torch was imported and the inputs made).
   K-CROSS uses ``KCross.untrained(seed=0)`` when no weights are bundled: the architecture, hence
   the speed, is the same;
2. a full 240x240x155 BraTS volume scored end to end by ``kcross-score`` (NIfTI reading,
   normalisation, scoring; a subprocess: wall time and peak RSS). The real T2 of
   BraTS-GLI-00001-000 (a validation subject) from ../shared/data is the reference, its T1 the source, and the "fake" is the
   T2 blurred by a Gaussian of sigma 1 voxel, written to a temporary folder. Without the shared data
   a 240x240x155 phantom volume stands in (said so in the output);
3. start-up: ``python -c "import kcross_metric"`` and ``kcross-score --help`` (best of 3 wall times,
   next to a bare ``python -c pass``);
4. ``--profile``: where K-CROSS spends its time (CPU time per network, and the top torch operators);
5. ``--flops``: floating-point operations per 256x256 slice of every K-CROSS network and of the whole
   call (``torch.utils.flop_counter``; convolutions and matrix products, 2 per multiply-add), this
   machine's float32 matrix-multiply rate at the same thread count, and the fraction of it K-CROSS
   reaches (FLOPs per slice x slices/s / matmul FLOP/s);
6. ``--epoch``: a validation epoch as a training loop runs it: the same real (T2) and source (T1)
   slices of every validation subject each epoch, a new fake (the real blurred and noised, stronger
   each epoch), scored in batches of one subject's slices, with the reference cache off, at its
   default bound and large enough for the whole set; wall and CPU seconds per epoch, peak RSS.

``kcross`` is timed without the reference cache (every call a new reference, as for LPIPS);
``kcross_cached`` repeats the same reference, the case the cache serves.

``--quick``: batch sizes 1 and 4, one timed call each, no volume: a smoke run of a few minutes.
The machine is shared by other jobs here, so wall times vary from run to run; the load average is
printed with the results.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("kcross", "kcross_cached", "lpips_alex", "lpips_vgg", "dists", "ssim", "ms_ssim")
REFERENCE = "lpips_vgg"
SIZE = 256
# a validation subject (never trained on): speed figures are measured on what the weights did not see
VOLUME_CASE = ("data", "brats", "BraTS-GLI-00001-000")


# ---------------------------------------------------------------------------------- helpers
def _run_measured(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 3600) -> dict[str, Any]:
    """Run ``cmd``; return wall seconds, peak RSS (MB) of that process, exit code and stdout/stderr."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # rusage of this child only
            proc.returncode = os.waitstatus_to_exitcode(status)
        except AttributeError:  # pragma: no cover - not Linux/macOS
            proc.wait(timeout=timeout)
            import resource

            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        scale = 1024.0 if sys.platform != "darwin" else 1024.0 * 1024.0  # ru_maxrss: KiB on Linux
        return {
            "wall_s": wall,
            "peak_rss_mb": usage.ru_maxrss / scale,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "returncode": proc.returncode,
            "stdout": out.read(),
            "stderr": err.read(),
        }


def _env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
        env["MKL_NUM_THREADS"] = str(threads)
    return env


def _bundled_weights() -> bool:
    from kcross_metric.core.metric import WEIGHTS_FILENAME
    from kcross_metric.errors import WeightsError
    from kcross_metric.weights import resolve_weights

    try:
        resolve_weights(None, filename=WEIGHTS_FILENAME)
    except WeightsError:
        return False
    return True


def _build(name: str, channels_last: bool) -> Callable[..., Any]:
    import torch

    from kcross_metric import KCross, create_metric

    if name in ("kcross", "kcross_cached"):
        # "kcross": every call a new reference (no cache); "kcross_cached": the same real/source slices
        # call after call (a validation set), the reference side served by the default cache
        cache = {} if name == "kcross_cached" else {"reference_cache_mb": 0}
        metric = KCross(**cache) if _bundled_weights() else KCross.untrained(seed=0, **cache)
        if channels_last:
            metric.nets.to(memory_format=torch.channels_last)
        return metric
    metric = create_metric(name)
    return metric.to(memory_format=torch.channels_last) if channels_last else metric


def _inputs(batch: int, channels_last: bool) -> tuple[Any, Any, Any]:
    import torch

    from kcross_metric.data.phantom import make_pair

    fakes, reals, sources = [], [], []
    for i in range(batch):
        f, r, s, _ = make_pair((SIZE, SIZE), seed=i % 4, blur_sigma=1.0 + 0.25 * (i % 4))
        fakes.append(f)
        reals.append(r)
        sources.append(s)
    out = [torch.cat(t) for t in (fakes, reals, sources)]
    if channels_last:
        out = [t.contiguous(memory_format=torch.channels_last) for t in out]
    return out[0], out[1], out[2]


# ---------------------------------------------------------------------------------- worker
def worker(name: str, batch_sizes: list[int], repeats: int, min_time: float, channels_last: bool) -> dict[str, Any]:
    """Time one metric (in this process) at each batch size."""
    import torch

    inputs = {batch: _inputs(batch, channels_last) for batch in batch_sizes}
    rss_inputs = _maxrss_mb()
    metric = _build(name, channels_last)
    rows = []
    with torch.inference_mode():
        for batch in batch_sizes:
            fake, real, source = inputs[batch]
            args = (fake, real, source) if name.startswith("kcross") else (fake, real)
            metric(*args)  # warm-up (oneDNN primitive creation, allocator)
            walls, cpus = [], []
            start = time.perf_counter()
            while len(walls) < repeats or (time.perf_counter() - start < min_time and len(walls) < 50):
                t0, c0 = time.perf_counter(), time.process_time()
                metric(*args)
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
            rows.append(
                {
                    "batch": batch,
                    "calls": len(walls),
                    "slices_per_s": batch / statistics.median(walls),
                    "best_slices_per_s": batch / min(walls),
                    "cpu_ms_per_slice": 1000.0 * statistics.median(cpus) / batch,
                }
            )
    return {
        "metric": name,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "rows": rows,
        "rss_before_metric_mb": rss_inputs,
        "peak_rss_mb": _maxrss_mb(),
    }


def _maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024.0 * (1024.0 if sys.platform == "darwin" else 1.0))


def profile_kcross(batch: int) -> str:
    """CPU time per K-CROSS network and the top operators, for one call on ``batch`` slices."""
    import torch

    import kcross_metric.core.metric as km

    metric = _build("kcross", channels_last=False)
    fake, real, source = _inputs(batch, channels_last=False)
    spent: dict[str, float] = {}

    def timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **k: Any) -> Any:
            c0 = time.process_time()
            out = fn(*a, **k)
            spent[label] = spent.get(label, 0.0) + time.process_time() - c0
            return out

        return wrapper

    nets = metric.nets
    nets.segmenter.forward = timed("lesion segmenter (x3: real, fake, source)", nets.segmenter.forward)
    nets.complex_unet.encode = timed("complex U-Net encoder (x2)", nets.complex_unet.encode)
    nets.tumor.encode = timed("tumor encoder (x2)", nets.tumor.encode)
    nets.structure.encode = timed("structure encoder (x3)", nets.structure.encode)
    nets.complex_score.forward = timed("score networks", nets.complex_score.forward)
    nets.natural_score.forward = timed("score networks", nets.natural_score.forward)
    original_kspace = km.image_to_kspace
    km.image_to_kspace = timed("FFT + k-space normalisation (x2)", original_kspace)
    try:
        with torch.inference_mode():
            metric(fake, real, source)  # warm-up
            spent.clear()
            c0 = time.process_time()
            metric(fake, real, source)
            total = time.process_time() - c0
            parts = dict(spent)
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                metric(fake, real, source)
    finally:
        km.image_to_kspace = original_kspace
    header = (
        f"K-CROSS, {batch} slices of {SIZE}x{SIZE} with source, {torch.get_num_threads()} thread(s): "
        f"{1000 * total / batch:.1f} CPU ms/slice"
    )
    lines = [
        header,
        "",
        "| part | CPU ms/slice | share |",
        "|---|---:|---:|",
    ]
    rest = total - sum(parts.values())
    for label, sec in sorted(parts.items(), key=lambda kv: -kv[1]) + [("other (padding, masks, relative RMS, ...)", rest)]:
        lines.append(f"| {label} | {1000 * sec / batch:.1f} | {100 * sec / total:.0f}% |")
    lines += ["", "Top operators (torch.profiler, self CPU time):", "", "```"]
    lines.append(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    lines.append("```")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- FLOPs
def _matmul_flops_per_s(n: int = 2048, repeats: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2.0 * n**3 / best


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def flops_report(batch: int = 4) -> dict[str, Any]:
    """FLOPs per slice of each K-CROSS network and of whole calls, and the matmul rate here."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from kcross_metric.core.kspace import image_to_kspace

    metric = _build("kcross", channels_last=False)
    cached = _build("kcross_cached", channels_last=False)
    fake, real, source = _inputs(batch, channels_last=False)
    nets = metric.nets

    def count(fn: Callable[[], Any]) -> float:
        counter = FlopCounterMode(display=False)
        with counter:
            fn()
        return counter.get_total_flops() / batch

    ones = torch.ones_like(real)
    with torch.inference_mode():
        networks = {
            "lesion segmenter": (count(lambda: nets.segmenter(real)), 3),
            "complex U-Net encoder": (count(lambda: nets.complex_unet.encode(image_to_kspace(real))), 2),
            "tumor encoder": (count(lambda: nets.tumor.encode(real, ones)), 2),
            "structure encoder": (count(lambda: nets.structure.encode(real)), 3),
        }
        whole = count(lambda: metric(fake, real, source))
        cached(fake, real, source)
        whole_cached = count(lambda: cached(fake, real, source))
        lpips = None
        try:
            lp = _build("lpips_alex", channels_last=False)
            lpips = count(lambda: lp(fake, real))
        except Exception as exc:  # noqa: BLE001 - a missing ImageNet backbone only drops that row
            print(f"LPIPS-Alex FLOPs not counted: {exc}", file=sys.stderr)
        matmul = _matmul_flops_per_s()
        # slices/s of the same calls, timed here at the same threads
        rates = {}
        for label, m in (("kcross", metric), ("kcross_cached", cached)):
            m(fake, real, source)
            rates[label] = batch / min(_timed(lambda m=m: m(fake, real, source)) for _ in range(3))
    return {"threads": torch.get_num_threads(), "networks": networks, "kcross": whole, "kcross_cached": whole_cached,
            "lpips_alex": lpips, "matmul_flops_per_s": matmul, "slices_per_s": rates}


def _flops_markdown(rep: dict[str, Any]) -> str:
    g = 1e9
    lines = [
        f"{SIZE}x{SIZE} slices with a source, batch 4, {rep['threads']} thread(s); float32 matmul (2048x2048) "
        f"{rep['matmul_flops_per_s'] / g:.1f} GFLOP/s on this machine.",
        "",
        "| network | GFLOP per call | calls per slice | GFLOP per slice |",
        "|---|---:|---:|---:|",
    ]
    for name, (flops, calls) in rep["networks"].items():
        lines.append(f"| {name} | {flops / g:.3f} | {calls} | {calls * flops / g:.3f} |")
    lines += ["", "| call | GFLOP per slice | slices/s | GFLOP/s reached | fraction of matmul rate |", "|---|---:|---:|---:|---:|"]
    for label in ("kcross", "kcross_cached"):
        flops, rate = rep[label], rep["slices_per_s"][label]
        lines.append(f"| {label} | {flops / g:.2f} | {rate:.2f} | {flops * rate / g:.1f} | "
                     f"{flops * rate / rep['matmul_flops_per_s']:.1%} |")
    if rep["lpips_alex"] is not None:
        lines.append(f"\nLPIPS-Alex: {rep['lpips_alex'] / g:.2f} GFLOP per slice.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- validation epoch
EPOCH_SLICES = tuple(range(60, 100, 5))  # 8 axial slices of the BraTS grid per subject


def _epoch_sets() -> tuple[list[tuple[Any, Any]], str]:
    """(real, source) (S,1,256,256) tensors per validation subject, and what they are."""
    import torch

    from kcross_metric.train.data import available_cases, case_slices, load_case
    from kcross_metric.train.splits import VALIDATION_CASES

    sets = []
    cases = available_cases(VALIDATION_CASES, warn=False) if _data_present() else ()
    for case_id in cases:
        case = load_case(case_id)
        target = "t2" if "t2" in case.contrasts else "flair"
        if "t1" not in case.contrasts:
            continue
        images, _ = case_slices(case, [k + case.slice_offset for k in EPOCH_SLICES], SIZE)
        sets.append((torch.from_numpy(images[target])[:, None], torch.from_numpy(images["t1"])[:, None]))
    if sets:
        n = sum(r.shape[0] for r, _ in sets)
        return sets, f"{len(sets)} validation subjects x {len(EPOCH_SLICES)} axial slices = {n} slices (real T2 or FLAIR, source T1)"
    from kcross_metric.data.phantom import make_pair

    for seed in range(20):
        _, real, source, _ = make_pair((16, SIZE, SIZE), seed=seed)
        pick = slice(4, 4 + len(EPOCH_SLICES))
        sets.append((real[0].permute(1, 0, 2, 3)[pick].contiguous(), source[0].permute(1, 0, 2, 3)[pick].contiguous()))
    return sets, f"20 phantom subjects x {len(EPOCH_SLICES)} slices (validation data not found)"


def _data_present() -> bool:
    from kcross_metric._util.shared_data import shared_path

    return shared_path("data") is not None


def _epoch_fake(real: Any, epoch: int, index: int) -> Any:
    """A generator's output at ``epoch``: the real image blurred and noised (deterministic)."""
    import torch

    from kcross_metric.data.distortions import gaussian_blur

    g = torch.Generator().manual_seed(1000 * epoch + index)
    blurred = gaussian_blur(real, 1.5 - 0.3 * epoch)
    return (blurred + (0.03 - 0.005 * epoch) * torch.randn(real.shape, generator=g)).clamp(0.0, 1.0) * (real > 0)


def epoch_worker(cache_mb: float, epochs: int) -> dict[str, Any]:
    import torch

    from kcross_metric import KCross

    sets, what = _epoch_sets()
    metric = KCross(reference_cache_mb=cache_mb) if _bundled_weights() else KCross.untrained(seed=0, reference_cache_mb=cache_mb)
    rows = []
    with torch.inference_mode():
        for epoch in range(epochs):
            fakes = [_epoch_fake(real, epoch, i) for i, (real, _) in enumerate(sets)]
            t0, c0 = time.perf_counter(), time.process_time()
            total = 0.0
            for fake, (real, source) in zip(fakes, sets):
                total += float(metric(fake, real, source).sum())
            rows.append({"epoch": epoch + 1, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                         "mean_score": total / sum(r.shape[0] for r, _ in sets)})
    info = metric.reference_cache_info()
    return {"input": what, "cache_mb": cache_mb, "threads": torch.get_num_threads(), "rows": rows,
            "cache": {"hits": info.hits, "misses": info.misses, "entries": info.entries, "mb": info.bytes / 2**20},
            "peak_rss_mb": _maxrss_mb()}


def epoch_benchmark(threads: int | None, epochs: int, cache_sizes: list[float]) -> list[dict[str, Any]]:
    out = []
    for mb in cache_sizes:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--epoch-worker", str(mb), "--epochs", str(epochs)]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        res = _run_measured(cmd, env=_env(threads))
        if res["returncode"] != 0:
            raise RuntimeError(f"epoch worker failed: {res['stderr'][-2000:]}")
        out.append(json.loads(res["stdout"].strip().splitlines()[-1]))
    return out


def _epoch_markdown(results: list[dict[str, Any]]) -> str:
    base = {r["epoch"]: r["wall_s"] for r in results[0]["rows"]} if results and results[0]["cache_mb"] == 0 else {}
    lines = [
        f"Input: {results[0]['input']}; {results[0]['threads']} thread(s); batches of one subject's slices.",
        "",
        "| reference cache MiB | epoch | wall s | CPU s | vs no cache | mean score | cache hits / misses (chunks) "
        "| cached MiB | peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        for row in res["rows"]:
            ratio = f"{base[row['epoch']] / row['wall_s']:.2f}x" if row["epoch"] in base else "n/a"
            c = res["cache"]
            lines.append(f"| {res['cache_mb']:g} | {row['epoch']} | {row['wall_s']:.1f} | {row['cpu_s']:.1f} | {ratio} | "
                         f"{row['mean_score']:.6f} | {c['hits']} / {c['misses']} | {c['mb']:.0f} | {res['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- volume
def _volume_inputs(folder: Path) -> tuple[list[Path], str]:
    """(fake, real, source) NIfTI paths in ``folder`` and a description of where they came from."""
    import nibabel as nib
    import numpy as np
    from scipy.ndimage import gaussian_filter

    from kcross_metric._util.shared_data import shared_path

    case = shared_path(*VOLUME_CASE)
    if case is not None:
        real = case / f"{case.name}-t2w.nii.gz"
        source = case / f"{case.name}-t1n.nii.gz"
        img = nib.load(str(real))
        data = np.asarray(img.dataobj, dtype=np.float32)
        fake_data = gaussian_filter(data, 1.0)
        fake = folder / "fake_t2w_blur1.nii.gz"
        nib.save(nib.Nifti1Image(fake_data.astype(np.float32), img.affine), str(fake))
        return [fake, real, source], f"BraTS {case.name}: real t2w, source t1n, fake = t2w blurred (sigma 1 voxel)"
    from kcross_metric.data.phantom import make_pair

    # (D,H,W) = (155,240,240): axial slices along the first axis, as kcross_metric.data.io reads them.
    fake_t, real_t, source_t, _ = make_pair((155, 240, 240), seed=0)
    paths = []
    for label, t in (("fake", fake_t), ("real", real_t), ("source", source_t)):
        arr = t[0, 0].numpy().transpose(2, 1, 0)  # to (W,H,D) voxel order with an identity affine
        path = folder / f"{label}.nii.gz"
        nib.save(nib.Nifti1Image(arr, np.eye(4)), str(path))
        paths.append(path)
    return paths, "phantom 240x240x155 (BraTS data not found)"


@contextlib.contextmanager
def competing_load(processes: int) -> Iterator[None]:
    """``processes`` busy-looping Python processes for the duration (a loaded machine, as a user's
    shared machine or a training job beside the metric), stopped afterwards."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        time.sleep(0.5 if busy else 0.0)  # let them reach the CPU
        yield
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()


def volume_benchmark(threads: int | None, slice_batch_sizes: list[int], compete: int = 0) -> list[dict[str, Any]]:
    exe = shutil.which("kcross-score")
    base = [exe] if exe else [sys.executable, "-c", "from kcross_metric.cli.score import main; main()"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (fake, real, source), what = _volume_inputs(folder)
        weights: list[str] = []
        if not _bundled_weights():
            import torch

            from kcross_metric.core.nets.kcross_nets import KCrossNetworks
            from kcross_metric.weights import save_safetensors

            torch.manual_seed(0)
            wpath = folder / "kcross_untrained.safetensors"
            save_safetensors(KCrossNetworks().state_dict(), wpath)
            weights = ["--weights", str(wpath)]
        for sbs in slice_batch_sizes:
            cmd = base + [str(fake), str(real), "--source", str(source), "--json", "--slice-batch-size", str(sbs)]
            with competing_load(compete):
                res = _run_measured(cmd + weights, env=_env(threads))
            if res["returncode"] != 0:
                raise RuntimeError(f"kcross-score failed ({res['returncode']}): {res['stderr'][-2000:]}")
            out = json.loads(res["stdout"])
            rows.append(
                {
                    "input": what,
                    "slice_batch_size": sbs,
                    "threads": threads,
                    "competing_processes": compete,
                    "wall_s": res["wall_s"],
                    "cpu_s": res["cpu_s"],
                    "peak_rss_mb": res["peak_rss_mb"],
                    "slices_scored": out.get("slices_scored"),
                    "kcross": out["kcross"],
                    "weights": "bundled" if not weights else "untrained (tmp file)",
                }
            )
    return rows


def startup_benchmark() -> dict[str, float]:
    exe = shutil.which("kcross-score")
    help_cmd = [exe, "--help"] if exe else [sys.executable, "-c", "from kcross_metric.cli.score import main; main(['--help'])"]
    cmds = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import kcross_metric'": [sys.executable, "-c", "import kcross_metric"],
        "kcross-score --help": help_cmd,
    }
    out = {}
    for label, cmd in cmds.items():
        out[label] = min(_run_measured(cmd)["wall_s"] for _ in range(3))
    return out


# ---------------------------------------------------------------------------------- report
def _machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (
        f"{model}, nproc {os.cpu_count()}, torch {torch.__version__}, "
        f"load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}"
    )


def _throughput_table(results: dict[str, dict[str, Any]], rss: dict[str, float]) -> str:
    ref = {row["batch"]: row["slices_per_s"] for row in results.get(REFERENCE, {}).get("rows", [])}
    lines = [
        "| metric | batch | slices/s (median) | slices/s (best) | CPU ms/slice | vs LPIPS-VGG | peak RSS MB | metric's share MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, res in results.items():
        for row in res["rows"]:
            ratio = f"{row['slices_per_s'] / ref[row['batch']]:.2f}x" if row["batch"] in ref else "n/a"
            extra = res["peak_rss_mb"] - res["rss_before_metric_mb"]
            lines.append(
                f"| {name} | {row['batch']} | {row['slices_per_s']:.2f} | {row['best_slices_per_s']:.2f} | "
                f"{row['cpu_ms_per_slice']:.0f} | {ratio} | {rss[name]:.0f} | {extra:.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="batch sizes 1 and 4, one timed call, no volume")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's default)")
    p.add_argument("--interop-threads", type=int, default=None,
                   help="inter-op threads of the throughput workers (default: torch's default)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    p.add_argument("--metrics", nargs="*", default=list(METRICS), choices=METRICS, help="metrics to time (none: skip)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per batch size (default 3, quick 1)")
    p.add_argument("--min-time", type=float, default=None, help="keep timing until this many seconds (default 5)")
    p.add_argument("--channels-last", action="store_true", help="also time every metric with channels_last weights and inputs")
    p.add_argument("--profile", action="store_true", help="profile K-CROSS (CPU time per network, top operators)")
    p.add_argument("--no-volume", action="store_true", help="skip the full-volume kcross-score run")
    p.add_argument("--volume", action="store_true", help="run the volume benchmark even with --quick")
    p.add_argument("--volume-slice-batch-sizes", type=int, nargs="+", default=[16, 4])
    p.add_argument("--compete", type=int, nargs="+", default=[0], metavar="N",
                   help="busy-looping processes running beside the volume run (one run per value; default 0)")
    p.add_argument("--flops", action="store_true", help="FLOPs per slice of each network, matmul rate, fraction reached")
    p.add_argument("--epoch", action="store_true", help="a validation epoch with the reference cache off, default, large")
    p.add_argument("--epochs", type=int, default=3, help="epochs per --epoch run (default 3; the first fills the cache)")
    p.add_argument("--epoch-cache-mb", type=float, nargs="+", default=[0, 512, 2048], metavar="MB",
                   help="reference cache sizes of the --epoch runs (default 0 512 2048; 0 first: the baseline)")
    p.add_argument("--json", type=Path, default=None, help="also write all results as JSON here")
    p.add_argument("--epoch-worker", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-channels-last", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    batch_sizes = args.batch_sizes or ([1, 4] if args.quick else [1, 4, 16])
    repeats = args.repeats or (1 if args.quick else 3)
    min_time = args.min_time if args.min_time is not None else (0.0 if args.quick else 5.0)

    if args.epoch_worker is not None:
        import torch

        if args.threads is not None:
            torch.set_num_threads(args.threads)
        print(json.dumps(epoch_worker(args.epoch_worker, args.epochs)))
        return 0
    if args.worker is not None:
        import torch

        if args.interop_threads is not None:
            torch.set_num_interop_threads(args.interop_threads)  # before any parallel work
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        res = worker(args.worker, batch_sizes, repeats, min_time, args.worker_channels_last)
        print(json.dumps(res))
        return 0

    print(f"Machine: {_machine()}")
    print(f"Command: python benchmarks/speed.py {' '.join(argv if argv is not None else sys.argv[1:])}\n")
    results: dict[str, dict[str, Any]] = {}
    rss: dict[str, float] = {}
    jobs = [(m, cl) for m in args.metrics for cl in ((False, True) if args.channels_last else (False,))]
    for name, cl in jobs:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--batch-sizes", *map(str, batch_sizes)]
        cmd += ["--repeats", str(repeats), "--min-time", str(min_time)]
        if args.threads is not None:
            cmd += ["--threads", str(args.threads)]
        if args.interop_threads is not None:
            cmd += ["--interop-threads", str(args.interop_threads)]
        if cl:
            cmd.append("--worker-channels-last")
        res = _run_measured(cmd, env=_env(args.threads))
        if res["returncode"] != 0:
            print(f"{name}: failed\n{res['stderr'][-3000:]}", file=sys.stderr)
            continue
        label = name + (" (channels_last)" if cl else "")
        results[label] = json.loads(res["stdout"].strip().splitlines()[-1])
        rss[label] = res["peak_rss_mb"]
        print(f"  measured {label} (threads {results[label]['threads']}, {res['wall_s']:.0f} s)", file=sys.stderr)

    if results:
        threads = next(iter(results.values()))["threads"]
        print(f"## Per-slice throughput ({SIZE}x{SIZE}, {threads} intra-op thread(s))\n")
        print(_throughput_table(results, rss))
    report: dict[str, Any] = {"machine": _machine(), "throughput": results, "peak_rss_mb": rss}

    if args.profile:
        print("\n## Where K-CROSS spends its time\n")
        set_threads = f"torch.set_num_threads({args.threads}); " if args.threads else ""
        code = (
            f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import speed; "
            f"import torch; {set_threads}print(speed.profile_kcross(4))"
        )
        cmd = [sys.executable, "-c", code]
        res = _run_measured(cmd, env=_env(args.threads))
        text = res["stdout"] if res["returncode"] == 0 else res["stderr"][-3000:]
        print(text)
        report["profile"] = text

    if args.flops:
        set_threads = f"torch.set_num_threads({args.threads}); " if args.threads else ""
        code = (f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); import speed; "
                f"import torch; {set_threads}print(json.dumps(speed.flops_report()))")
        res = _run_measured([sys.executable, "-c", code], env=_env(args.threads))
        if res["returncode"] != 0:
            raise RuntimeError(f"FLOPs run failed: {res['stderr'][-2000:]}")
        rep = json.loads(res["stdout"].strip().splitlines()[-1])
        print("\n## FLOPs per slice and the matmul rate\n")
        print(_flops_markdown(rep))
        report["flops"] = rep

    if args.epoch:
        epoch_rows = epoch_benchmark(args.threads, args.epochs, args.epoch_cache_mb)
        print("\n## A validation epoch (same references, new fakes)\n")
        print(_epoch_markdown(epoch_rows))
        report["epoch"] = epoch_rows

    if not args.no_volume and (args.volume or not args.quick):
        rows = [r for n in args.compete for r in volume_benchmark(args.threads, args.volume_slice_batch_sizes, n)]
        print("\n## Full volume with kcross-score (240x240x155, end to end)\n")
        threads_text = args.threads if args.threads is not None else "torch's default"
        print(f"Input: {rows[0]['input']}; weights: {rows[0]['weights']}; threads: {threads_text}\n")
        print("| competing busy processes | --slice-batch-size | wall s | CPU s | peak RSS MB | slices scored |")
        print("|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['competing_processes']} | {r['slice_batch_size']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} "
                  f"| {r['peak_rss_mb']:.0f} | {r['slices_scored']} |")
        report["volume"] = rows

    startup = startup_benchmark()
    print("\n## Start-up (best of 3, wall)\n")
    print("| command | seconds |")
    print("|---|---:|")
    for label, sec in startup.items():
        print(f"| `{label}` | {sec:.2f} |")
    report["startup_s"] = startup
    print(f"\nLoad average at the end: {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    from _paths import name_checkout_shared

    name_checkout_shared()
    sys.exit(main())
