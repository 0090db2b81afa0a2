"""Measurement: time, peak memory and the machine's limits, on any backend.

* :func:`time_call`: warm-up, then repeats until both a minimum count and a time
  budget are met (as ``timeit``'s autorange and ``cupyx.profiler.benchmark``
  do).  On a GPU each repeat is synchronized and also timed with CUDA events,
  since a host timer alone misses or misplaces asynchronous work.
* :func:`peak_memory`: bytes allocated by one call above what was in use
  before it: ``tracemalloc`` on the CPU (NumPy reports its buffers to it), a
  CuPy memory hook counting bytes in use (CuPy has no peak counter), torch's
  own counters on CUDA.  Run it apart from timing: tracing slows calls down.
* :func:`probe_machine`: the GEMM rate and copy bandwidth that a report
  compares each point with.
"""

from __future__ import annotations

import gc
import os
import platform
import subprocess
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .backend import Backend, get_backend


@dataclass(frozen=True)
class TimingResult:
    """Times of the repeats of one call, in seconds.

    ``host_s`` are wall-clock times around each synchronized call;
    ``device_s`` are CUDA-event times of the same repeats (None on the CPU).
    """

    host_s: tuple[float, ...]
    device_s: tuple[float, ...] | None = None

    @property
    def times(self) -> np.ndarray:
        """The times that count: device times on a GPU, host times on the CPU."""
        return np.asarray(self.device_s if self.device_s is not None else self.host_s)

    @property
    def median(self) -> float:
        return float(np.median(self.times))

    @property
    def iqr(self) -> float:
        q1, q3 = np.percentile(self.times, [25, 75])
        return float(q3 - q1)

    @property
    def min(self) -> float:
        return float(np.min(self.times))

    @property
    def repeats(self) -> int:
        return len(self.host_s)

    @property
    def host_median(self) -> float:
        return float(np.median(self.host_s))


def time_call(fn: Callable[..., Any], *args: Any, backend: Backend | None = None,
              warmup: int = 1, min_repeats: int = 5, max_repeats: int = 10_000,
              time_budget_s: float = 0.5) -> TimingResult:
    """Time ``fn(*args)``.

    Parameters
    ----------
    fn, args
        The call to time; its result is discarded.
    backend : Backend, optional
        Where ``fn`` runs (default: :func:`get_backend`); decides synchronization
        and CUDA-event timing.
    warmup : int
        Untimed calls first (compilation, caches, page faults).
    min_repeats, max_repeats : int
        At least ``min_repeats`` timed calls, at most ``max_repeats``.
    time_budget_s : float
        Keep repeating until the timed calls add up to this many seconds
        (or ``max_repeats`` is reached), once ``min_repeats`` are done.

    Returns
    -------
    TimingResult
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    for name, v, least in (("warmup", warmup, 0), ("min_repeats", min_repeats, 1),
                           ("max_repeats", max_repeats, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {v!r}")
    if max_repeats < min_repeats:
        raise ValueError(f"max_repeats ({max_repeats}) must be >= min_repeats ({min_repeats})")
    if not (isinstance(time_budget_s, (int, float)) and time_budget_s >= 0):
        raise ValueError(f"time_budget_s must be a number >= 0, got {time_budget_s!r}")
    backend = backend or get_backend()
    return _time_repeats(fn, args, backend, warmup, min_repeats, max_repeats, time_budget_s)


def _time_repeats(fn, args, backend, warmup, min_repeats, max_repeats, budget) -> TimingResult:
    events = _event_pair_factory(backend)
    sync = backend.synchronize
    for _ in range(warmup):
        fn(*args)
    sync()
    host, device = [], []
    total = 0.0
    while len(host) < min_repeats or (total < budget and len(host) < max_repeats):
        if events is not None:
            start, end = events()
            start.record()
        t0 = time.perf_counter()
        fn(*args)
        if events is not None:
            end.record()
        sync()
        dt = time.perf_counter() - t0
        host.append(dt)
        total += dt
        if events is not None:
            device.append(_elapsed_s(backend, start, end))
    return TimingResult(tuple(host), tuple(device) if events is not None else None)


def _event_pair_factory(backend: Backend):
    if not backend.is_gpu:
        return None
    if backend.name == "cupy":
        import cupy

        return lambda: (cupy.cuda.Event(), cupy.cuda.Event())
    if backend.name == "torch":
        import torch

        return lambda: (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
    return None


def _elapsed_s(backend: Backend, start, end) -> float:
    if backend.name == "cupy":
        import cupy

        return cupy.cuda.get_elapsed_time(start, end) / 1e3
    return start.elapsed_time(end) / 1e3


def peak_memory(fn: Callable[..., Any], *args: Any, backend: Backend | None = None) -> int | None:
    """Peak bytes allocated while ``fn(*args)`` runs, above those in use before.

    The call's result counts (it was allocated by the call).  Returns None where
    the backend has no allocation counter (torch on the CPU).
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    backend = backend or get_backend()
    tracker = _PEAK_TRACKERS.get((backend.name, backend.device_kind))
    if tracker is None:
        return None
    gc.collect()
    return int(tracker(fn, args, backend))


def _peak_tracemalloc(fn, args, backend) -> int:
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        result = fn(*args)
        _, peak = tracemalloc.get_traced_memory()
        del result
        return max(0, peak - base)
    finally:
        if started:
            tracemalloc.stop()


def _peak_cupy(fn, args, backend) -> int:
    import cupy

    class _PeakHook(cupy.cuda.MemoryHook):
        name = "SoftmaxBenchPeak"

        def __init__(self):
            self.current = self.peak = 0

        def malloc_postprocess(self, **kw):
            self.current += kw["mem_size"]
            self.peak = max(self.peak, self.current)

        def free_postprocess(self, **kw):
            self.current -= kw["mem_size"]

    backend.synchronize()
    hook = _PeakHook()
    with hook:
        result = fn(*args)
        backend.synchronize()
    del result
    return hook.peak


def _peak_torch_cuda(fn, args, backend) -> int:
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    result = fn(*args)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del result
    return peak


_PEAK_TRACKERS = {
    ("numpy", "cpu"): _peak_tracemalloc,
    ("array_api_strict", "cpu"): _peak_tracemalloc,
    ("cupy", "gpu"): _peak_cupy,
    ("torch", "gpu"): _peak_torch_cuda,
}


def probe_machine(backend: Backend | None = None, *, gemm_size: int = 1024,
                  copy_bytes: int = 64 * 2**20, dtype: str = "float32") -> dict:
    """Measure the machine's GEMM rate (GFLOP/s) and copy bandwidth (GB/s).

    A square float32 matmul of ``gemm_size`` and a copy of ``copy_bytes``,
    each timed with :func:`time_call`; about a second in all.
    """
    backend = backend or get_backend()
    xp = backend.xp
    rng = np.random.default_rng(0)
    a = backend.asarray(rng.standard_normal((gemm_size, gemm_size)), dtype)
    gemm = time_call(lambda: a @ a, backend=backend, min_repeats=3, time_budget_s=0.3)
    n_items = copy_bytes // np.dtype(dtype).itemsize
    v = backend.asarray(np.ones(n_items), dtype)
    copy = time_call(lambda: xp.asarray(v, copy=True), backend=backend, min_repeats=3, time_budget_s=0.3)
    return {
        "gemm_gflops": 2 * gemm_size**3 / gemm.min / 1e9,
        "copy_gbps": 2 * copy_bytes / copy.min / 1e9,  # read + write
        "probe_gemm_size": gemm_size,
        "probe_copy_bytes": copy_bytes,
    }


def available_memory_bytes() -> int:
    """Memory the OS could give this process now (MemAvailable), in bytes."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def free_device_memory_bytes(backend: Backend) -> int:
    """Free memory of the device that ``backend`` allocates on."""
    if not backend.is_gpu:
        return available_memory_bytes()
    if backend.name == "cupy":
        import cupy

        pool = cupy.get_default_memory_pool()
        free, _ = cupy.cuda.runtime.memGetInfo()
        return int(free + pool.free_bytes())  # the pool's cached blocks are reusable
    import torch

    free, _ = torch.cuda.mem_get_info()
    return int(free + torch.cuda.memory_reserved() - torch.cuda.memory_allocated())


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The commit of the working tree holding ``path`` (default: this package)."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def machine_description() -> dict:
    """Host facts for environment.json and ``info``: OS, CPU, memory, commit."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        total = None
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "platform": platform.platform(),
        "memory_total_bytes": total,
        "memory_available_bytes": available_memory_bytes(),
        # a busy machine slows BLAS threads badly: the load says how quiet it was
        "load_average_1_5_15min": load,
        "git_commit": git_commit(),
    }
