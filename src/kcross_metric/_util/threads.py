"""How many intra-op threads to give torch on this machine, now.

Measured on a 2-core machine (docs/benchmarks.md, issue 19): a full volume takes 7.2 s with two
threads and 11.4 s with one when the machine is idle, but 23.0 s with two and 11.4 s with one while
one other process keeps a core busy: torch's intra-op threads wait for each other at every operator
once one of them shares its core. So the right number is the number of cores that are free, not the
number that exist. :func:`recommended_threads` samples the machine's CPU use for a fraction of a
second and answers that. Library code never calls ``torch.set_num_threads`` itself (a process-wide
setting that belongs to the caller's training loop); the command-line tools do, by default.
"""

from __future__ import annotations

import math
import os
import time

__all__ = ["available_cores", "busy_cores", "recommended_threads"]

#: How long :func:`busy_cores` watches the machine, seconds.
SAMPLE_SECONDS = 0.25


def _affinity() -> set[int] | None:
    """The CPUs this process may run on, where the OS tells it."""
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it, else ``os.cpu_count``)."""
    allowed = _affinity()
    return max(1, len(allowed) if allowed is not None else (os.cpu_count() or 1))


def _cpu_times(stat_file: str) -> dict[str, tuple[float, float]] | None:
    """(busy, total) jiffies per line of /proc/stat: ``"cpu"`` (the machine) and ``"cpuN"``."""
    try:
        with open(stat_file, encoding="ascii") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    out: dict[str, tuple[float, float]] = {}
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or not (name == "cpu" or name[3:].isdigit()):
            continue
        values = [float(v) for v in rest.split()]
        if len(values) < 4:
            continue
        # user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user
        total = sum(values[:8])
        idle = values[3] + (values[4] if len(values) > 4 else 0.0)
        out[name] = (total - idle, total)
    return out if "cpu" in out else None


def busy_cores(sample_seconds: float = SAMPLE_SECONDS, stat_file: str = "/proc/stat") -> float | None:
    """Cores' worth of CPU time spent busy over ``sample_seconds`` on the CPUs this process may run on
    (this process sleeps meanwhile, so it is other work), or ``None`` where ``/proc/stat`` cannot be
    read; on such systems the 1-minute load average is used."""
    first = _cpu_times(stat_file)
    if first is None:
        if hasattr(os, "getloadavg"):
            try:
                return float(os.getloadavg()[0])
            except OSError:
                return None
        return None
    time.sleep(sample_seconds)
    second = _cpu_times(stat_file)
    if second is None:
        return None
    allowed = _affinity()
    names = [n for n in second if n != "cpu" and n in first and (allowed is None or int(n[3:]) in allowed)]
    if not names:  # no per-CPU lines: the machine's share, scaled to the cores available here
        names, scale = ["cpu"], float(available_cores())
    else:
        scale = 1.0
    busy = 0.0
    for n in names:
        d_busy, d_total = second[n][0] - first[n][0], second[n][1] - first[n][1]
        if d_total > 0:
            busy += max(0.0, d_busy / d_total)
    return busy * scale


def recommended_threads(busy: float | None = None, cores: int | None = None) -> int:
    """Intra-op threads for a CPU job started now: the cores left free by other work, at least 1.

    ``busy`` (cores' worth of other work) and ``cores`` (available to this process) are measured
    when not given. A half-busy core counts as free (``round``): one more thread costs little where
    the other job leaves it room, and a single thread is the answer only when a core is taken.

    Example:
        >>> recommended_threads(busy=0.05, cores=2)
        2
        >>> recommended_threads(busy=1.0, cores=2)
        1
        >>> recommended_threads(busy=7.5, cores=4)
        1
    """
    cores = available_cores() if cores is None else int(cores)
    if busy is None:
        busy = busy_cores()
    if busy is None or not math.isfinite(busy):
        return cores
    free = cores - busy
    return int(min(cores, max(1, math.floor(free + 0.5))))
