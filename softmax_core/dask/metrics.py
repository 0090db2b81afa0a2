"""What the Dask engine did during a call: each worker's peak memory (:func:`worker_peaks`),
distributed's task stream (:func:`engine_stats`), and the machine's parallelism."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .cluster import DaskSession, ctrl_c_held, materialize, wait_in_flight

# --------------------------------------------------------------------------- memory


def _read_status() -> dict:
    with open("/proc/self/status") as fh:
        return {
            k: int(v) * 1024 for k, v in re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB", fh.read(), re.M)
        }


def _worker_start_peak(dask_worker=None) -> dict:
    """In a worker process: reset the kernel's peak RSS (VmHWM); say whether that worked."""
    import psutil

    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        reset = True
    except OSError:  # not Linux, or not allowed: fall back to the worker's memory monitor
        reset = False
    count = dask_worker.monitor.count if dask_worker is not None else 0
    return {
        "pid": os.getpid(),
        "rss": psutil.Process().memory_info().rss,
        "reset": reset,
        "count": count,
    }


def _worker_read_peak(count: int = 0, reset: bool = True, dask_worker=None) -> dict:
    """In a worker process: peak RSS since :func:`_worker_start_peak`."""
    import psutil

    rss = psutil.Process().memory_info().rss
    if reset:
        return {
            "pid": os.getpid(),
            "peak": _read_status().get("VmHWM", rss),
            "rss": rss,
            "source": "VmHWM",
        }
    samples = dask_worker.monitor.range_query(start=count).get("memory", []) if dask_worker else []
    return {
        "pid": os.getpid(),
        "peak": max([rss, *[s for s in samples if s]]),
        "rss": rss,
        "source": "monitor",
    }


@dataclass(frozen=True)
class WorkerPeaks:
    """Peak resident memory of each worker process during one call, and before it.

    ``shared`` is True when workers are threads of one process (then every
    worker reports that process, the client included).  ``source`` is
    ``VmHWM`` (the kernel's exact peak, reset before the call) or ``monitor``
    (distributed's memory samples, every 0.5 s: a lower bound).
    """

    before: dict
    peak: dict
    source: str
    shared: bool
    client_peak: int

    @property
    def max_above(self) -> int:
        return max(self.peak[w] - self.before[w] for w in self.peak)


def worker_peaks(s: DaskSession, fn: Callable[..., Any], *args: Any) -> tuple[WorkerPeaks, Any]:
    """Run the computed call ``fn(*args)`` once with each worker's peak RSS watched."""
    client = s.client
    wait_in_flight(client)
    start = client.run(_worker_start_peak)
    mine = _worker_start_peak()
    result = materialize(fn(*args), client)
    ends = {
        w: client.run(_worker_read_peak, start[w]["count"], start[w]["reset"], workers=[w])[w]
        for w in start
    }
    me = _worker_read_peak(reset=mine["reset"])
    pids = {v["pid"] for v in start.values()}
    peaks = WorkerPeaks(
        before={w: v["rss"] for w, v in start.items()},
        peak={w: v["peak"] for w, v in ends.items()},
        source="VmHWM" if all(v["reset"] for v in start.values()) else "monitor",
        shared=len(pids) < len(start) or os.getpid() in pids,
        client_peak=me["peak"],
    )
    return peaks, result


# --------------------------------------------------------------------------- engine statistics


def engine_stats(b, fn: Callable[..., Any], *args: Any) -> tuple[dict, Any]:
    """``fn(*args)`` once, computed, with distributed's task stream on: (:func:`task_summary`,
    the result), after the work already in flight has finished."""
    from distributed import get_task_stream

    wait_in_flight(b.client)
    with get_task_stream(b.client) as ts:
        t0 = time.perf_counter()
        result = materialize(fn(*args), b.client)
        wall = time.perf_counter() - t0
    return task_summary(ts.data, wall, cluster_threads(b.session)), result


def cluster_threads(s: DaskSession) -> int:
    return sum(int(w["nthreads"]) for w in s.workers().values())


def task_summary(records: list, wall_s: float, threads: int) -> dict:
    """What the engine did, from task-stream records of one call taking ``wall_s`` on ``threads``.

    ``tasks``; ``task_compute_s`` (Σ of the tasks' compute time); ``task_transfer_s``
    (Σ of inter-worker transfers); ``compute_per_task_s``; ``overhead_per_task_s``
    = (wall · threads − Σ compute) / tasks: the thread time per task not spent
    computing (scheduling, messages, transfers, waiting, idle threads).
    """
    tasks = len(records)
    spent = {"compute": 0.0, "transfer": 0.0}
    for rec in records:
        for ss in rec.get("startstops", ()):
            if ss.get("action") in spent:
                spent[ss["action"]] += ss["stop"] - ss["start"]
    nan = float("nan")
    return {
        "tasks": tasks,
        "task_compute_s": spent["compute"],
        "task_transfer_s": spent["transfer"],
        "wall_s": wall_s,
        "threads": threads,
        "compute_per_task_s": spent["compute"] / tasks if tasks else nan,
        "overhead_per_task_s": max(0.0, wall_s * threads - spent["compute"]) / tasks
        if tasks
        else nan,
    }


def _busy(blocks: int) -> float:
    """Single-threaded work (uniform random numbers) in a fresh process: its seconds."""
    import numpy as np

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(blocks):
        rng.random((1000, 784), dtype=np.float32)
    return time.perf_counter() - t0


def parallelism(processes: int | None = None, blocks: int = 300, repeats: int = 3) -> dict:
    """How much faster ``processes`` busy single-threaded processes run together than one alone.

    ``speedup`` = processes · T(alone) / T(together) (the median of ``repeats``):
    ``processes`` on a machine whose cores are real and idle, less where cores are
    SMT siblings, throttled or busy with other work.  It bounds what w Dask
    workers can gain: parallel efficiency <= speedup / w.
    """
    import multiprocessing as mp

    import psutil

    processes = processes or psutil.cpu_count() or 1
    ctx = mp.get_context("spawn")
    ratios = []
    pool = None
    try:
        with ctrl_c_held() as held:  # its processes are stopped by this one, on Ctrl-C too
            pool = ctx.Pool(processes)
        if held:
            signal.raise_signal(held[0])
        pool.map(_busy, [1] * processes)  # start-up and imports, not timed
        for _ in range(repeats):
            alone = pool.apply(_busy, (blocks,))
            together = max(pool.map(_busy, [blocks] * processes))
            ratios.append(processes * alone / together)
    finally:
        if pool is not None:
            pool.terminate()
    ratios.sort()
    return {
        "processes": processes,
        "speedup": ratios[len(ratios) // 2],
        "speedups": ratios,
        "load_average_1min": psutil.getloadavg()[0],
    }


__all__ = [
    "WorkerPeaks",
    "parallelism",
    "worker_peaks",
    "engine_stats",
    "task_summary",
    "cluster_threads",
]
