"""Shared helpers of the asv suite: the grid, the backend, the guard, prepared calls.

asv runs every benchmark and parameter combination in a fresh process, so
whatever is cached here is cached for one point; the machine probe that the
guard's time predictions rest on is cached on disk instead (see
:func:`machine_rates`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import platform
import tempfile
from pathlib import Path
from typing import Callable

from softmax_core.backend import Backend, BackendError, cpu_model, get_backend
from softmax_core.cases import DEFAULT_GRID, Case, Guard, default_memory_budget
from softmax_core import measure  # a module: a bare time_call here would count as a benchmark
from softmax_core._io import atomic_write_text
from softmax_core.sweep import CALLS_PER_POINT, MIN_REPEATS, TIMING_BUDGET_S

#: The sweep's grid: every parameter list of the suite comes from here.
GRID = DEFAULT_GRID
#: How many times slower than its roofline (GEMM rate, copy bandwidth) a call
#: is assumed to be.  The sweep's guard learns this factor from the points it
#: has measured; an asv process measures a single point, so it starts from
#: this one.  Measured on a 2-core x86 VM: 1.2 to 11 for gradients of 10 ms or
#: more (naive B=1 k=1000: 4.8; naive_batched B=32 k=100: 11) and 4.4 for the
#: B=1 epoch.  With 6, naive at k=1000 runs at B=1 (~2 s predicted) and is
#: skipped from B=8 on (~15 s a call), as in the sweep.
DEFAULT_SLOWDOWN = 6.0
#: Where the machine probe is cached (default: the system's temporary folder).
CACHE_ENV = "SOFTMAX_ASV_CACHE"


@functools.lru_cache(maxsize=None)
def backend() -> Backend:
    """The backend of ``$SOFTMAX_DEVICE``; NotImplementedError (asv: n/a) where it cannot run.

    A misspelt device or backend name stays a ValueError: asv reports it as a failure.
    """
    try:
        return get_backend()
    except BackendError as exc:
        raise NotImplementedError(str(exc)) from exc


def machine_rates(b: Backend) -> dict:
    """:func:`softmax_core.measure.probe_machine` of this machine and backend, probed once.

    The best of three probes (about 3 s) is cached as JSON in
    ``$SOFTMAX_ASV_CACHE`` (default: the temporary folder)``/softmax-bench-asv/``,
    keyed by host, backend and processor, so that every process of a run, and
    every later run, predicts with the same rates and skips the same points.
    Delete the file to probe again.
    """
    ident = [platform.node(), b.label, cpu_model(), os.cpu_count()]
    if b.is_gpu:
        ident.append(b.describe().get("gpu_name"))
    digest = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]
    root = Path(os.environ.get(CACHE_ENV) or tempfile.gettempdir()) / "softmax-bench-asv"
    path = root / f"probe-{b.label}-{digest}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))["probe"]
    except (OSError, ValueError, KeyError):
        pass
    # the best of three probes: one taken while something else loads the machine
    # would make every later prediction too slow
    probes = [measure.probe_machine(b) for _ in range(3)]
    probe = max(probes, key=lambda p: p["gemm_gflops"])
    probe["copy_gbps"] = max(p["copy_gbps"] for p in probes)
    # atomic: a concurrent reader sees the old file or the new one
    atomic_write_text(path, json.dumps({"machine": ident, "probe": probe}, indent=2))
    return probe


@functools.lru_cache(maxsize=None)
def guard() -> Guard:
    """The sweep's guard, with the probed rates and :data:`DEFAULT_SLOWDOWN` for every method."""
    b = backend()
    rates = machine_rates(b)
    return Guard(default_memory_budget(b), GRID.time_budget_s,
                 gemm_flops_per_s=rates["gemm_gflops"] * 1e9, copy_bytes_per_s=rates["copy_gbps"] * 1e9,
                 default_slowdown=DEFAULT_SLOWDOWN)


def require(case: Case) -> None:
    """Raise NotImplementedError (asv: n/a) if the guard would skip ``case``."""
    reason = guard().skip_reason(case, calls=CALLS_PER_POINT)
    if reason:
        raise NotImplementedError(f"{case.label()}: {reason}")


def prepared(case: Case) -> tuple[Callable, tuple]:
    """``case``'s call and its inputs on the backend, after the guard allowed it."""
    require(case)
    return case.prepare(backend())


def synchronized_call(case: Case) -> Callable[[], None]:
    """A no-argument call of ``case`` that returns once the device has finished it."""
    fn, args = prepared(case)
    sync = backend().synchronize

    def call() -> None:
        fn(*args)
        sync()

    return call


def median_time(fn: Callable, args: tuple) -> float:
    """Median seconds of ``fn(*args)``, measured as the sweep measures a point."""
    return measure.time_call(fn, *args, backend=backend(), warmup=1, min_repeats=MIN_REPEATS,
                             time_budget_s=TIMING_BUDGET_S).median


def peak_bytes(fn: Callable, args: tuple) -> float:
    """Bytes allocated by ``fn(*args)`` above its inputs, as the sweep measures them.

    NaN (asv: n/a) where the backend has no allocation counter (torch on the CPU).
    """
    peak = measure.peak_memory(fn, *args, backend=backend())
    return math.nan if peak is None else peak
