"""Shared helpers of the asv suite: suite selection, backend, guard, and the measuring engine.

Every time this suite reports comes from :func:`softmax_core.measure.engine.measure`, called as
the sweep calls it for a point, with a shorter sampling cap (:func:`measured`): asv's own
timing loop is never used.  asv runs each benchmark and parameter combination in a fresh
process (forked from a server that has imported this package, see ``launch_method`` in
``asv.conf.json``), so whatever is cached here is cached for one point; the machine probe
that the guard's time predictions rest on is cached on disk instead (:func:`machine_rates`).

Which points run
----------------
Each benchmark's parameters are the whole grid (:data:`softmax_core.runs.cases.DEFAULT_GRID`),
so a result always names its point.  A point is measured when

1. it belongs to the suite chosen by ``SOFTMAX_ASV_SUITE``: ``default`` (unset) holds the
   points the time model predicts under :data:`DEFAULT_MAX_CALL_S` per call at the
   reference machine's rates (:func:`in_default_suite`); ``full`` holds every point;
2. the backend of ``SOFTMAX_DEVICE`` / ``SOFTMAX_BACKEND`` can run here;
3. the sweep's guard lets it run on this machine (memory and predicted time).

Otherwise ``setup`` raises ``NotImplementedError``, which asv records as n/a (not a
failure), in a few milliseconds.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .library import (
    DEFAULT_GRID,
    EPOCH_CLASSES,
    EPOCH_FEATURES,
    POINT_TIME_SHARE,
    Backend,
    BackendError,
    Case,
    Guard,
    TimeModel,
    atomic_write_text,
    check_nvidia_driver,
    cpu_model,
    default_memory_budget,
    engine,  # a module: a bare function here could be taken for a benchmark
    get_backend,
    set_threads,
)

#: The sweep's grid: every parameter list of the suite comes from here.
GRID = DEFAULT_GRID
#: Suites, chosen with ``SOFTMAX_ASV_SUITE`` (tools/asv_device.py puts it in asv's
#: environment name).
SUITE_ENV = "SOFTMAX_ASV_SUITE"
SUITES = ("default", "full")
#: A point is in the default suite when the time model, at its conservative default
#: (6x slower than the roofline) and at the reference machine's rates, predicts at most
#: this many seconds per call: every structured gradient; naive and naive_batched at k = 10
#: (all B) and at k = 100 up to B = 8; epochs from B = 32 on.  Machine-independent: every
#: machine runs the same points.
DEFAULT_MAX_CALL_S = 0.3
#: The rates the default suite is chosen at (a 2-core AMD EPYC VM's probe): fixed, so that
#: every machine runs the same points.
REFERENCE_GEMM_FLOPS_PER_S = 179.6e9
REFERENCE_COPY_BYTES_PER_S = 22.0e9
#: Sampling cap of one point, seconds: a third of the sweep's share of its time budget, so that
#: a commit's asv run ends in minutes.  The engine stops once the median's interval is within
#: ±2%; the cap bounds only what a noisy point may take (the interval's width, not the median).
MAX_TIME_S = GRID.time_budget_s * POINT_TIME_SHARE / 3
#: Fewest samples a point gives asv per commit (over all rounds).  asv tells two commits
#: apart with a Mann-Whitney U test at p < 0.002 once the samples allow it: 6 against 6
#: never reach it (fully separated, p = 0.0022) and are then never "slower"; 7 against 7 can.
ASV_MIN_SAMPLES = 7
#: Calls one asv process makes at least: cold, warm-up, ASV_MIN_SAMPLES samples, the peak
#: pass.  Spelled out, as is :func:`asv_samples_per_round`: asv runs this bench/ against every
#: commit's softmax_core, so the suite may use only what older commits' library has.
ASV_CALLS_PER_POINT = 1 + 1 + ASV_MIN_SAMPLES + 1
#: Where the machine probe is cached (default: the user's cache folder).
CACHE_ENV = "SOFTMAX_ASV_CACHE"
#: BLAS threads of the benchmarks (tools/asv_device.py puts it in asv's environment name).
THREADS_ENV = "SOFTMAX_THREADS"
#: The epoch points' data: synthetic data of MNIST's shape (asv has no MNIST files).
EPOCH_DATA = "synthetic"


# --------------------------------------------------------------------------- which points run


def suite() -> str:
    """``$SOFTMAX_ASV_SUITE``: ``default`` (also when unset) or ``full``; ValueError otherwise."""
    name = (os.environ.get(SUITE_ENV) or "default").strip().lower()
    if name not in SUITES:
        raise ValueError(f"{SUITE_ENV}={name!r} is not a suite: use one of {', '.join(SUITES)}")
    return name


@functools.cache
def _reference_model() -> TimeModel:
    return TimeModel(REFERENCE_GEMM_FLOPS_PER_S, REFERENCE_COPY_BYTES_PER_S, "cpu")


def in_default_suite(case: Case) -> bool:
    """Whether ``case`` is in the default suite (see :data:`DEFAULT_MAX_CALL_S`)."""
    return _reference_model().predict(case) <= DEFAULT_MAX_CALL_S


def gradient_case(method: str, batch: int, features: int, classes: int, dtype: str) -> Case:
    return Case("gradient", method, batch, features, classes, dtype)


def epoch_case(method: str, batch: int, dtype: str) -> Case:
    return Case("epoch", method, batch, EPOCH_FEATURES, EPOCH_CLASSES, dtype, EPOCH_DATA)


def suite_points(kind: str, name: str | None = None) -> list[Case]:
    """The grid's points of ``kind`` that suite ``name`` (default: ``$SOFTMAX_ASV_SUITE``) measures
    before the guard has its say."""
    name = name or suite()
    points = [c for c in GRID.cases() if c.kind == kind]
    if kind == "epoch":  # the grid's epochs may be on MNIST or off; the suite's are synthetic
        points = [epoch_case(m, b, GRID.dtype) for m in GRID.epoch_methods for b in GRID.batches]
    return points if name == "full" else [c for c in points if in_default_suite(c)]


# --------------------------------------------------------------------------- device and guard


def threads() -> int | None:
    """``$SOFTMAX_THREADS``: the BLAS threads of every benchmark (the CLI's ``--threads``), or
    None for the BLAS's own choice.  One thread keeps a benchmark steady on a machine that
    other work shares: there a 2-thread call waits for its descheduled thread."""
    value = (os.environ.get(THREADS_ENV) or "").strip()
    if not value:
        return None
    if not value.isdecimal() or int(value) < 1:
        raise ValueError(f"{THREADS_ENV}={value!r} is not a thread count: use a positive integer")
    cores = os.cpu_count() or 1
    if int(value) > cores:  # as the CLI's --threads: more would time the scheduler, not the math
        raise ValueError(
            f"{THREADS_ENV}={value} is more than the {cores} cores: use at most {cores}"
        )
    return int(value)


@functools.cache
def backend() -> Backend:
    """The backend of ``$SOFTMAX_DEVICE``, after limiting the BLAS to ``$SOFTMAX_THREADS``;
    NotImplementedError (asv: n/a) where it cannot run.

    ``SOFTMAX_DEVICE=gpu`` on a Linux machine without an NVIDIA driver is n/a at once,
    before CuPy is imported (each point is its own process: the import would be paid
    for every point).  A misspelt device or backend name stays a ValueError: asv reports
    it as a failure.
    """
    set_threads(threads())
    gpu = (os.environ.get("SOFTMAX_DEVICE") or "").strip().lower() == "gpu"
    try:
        if gpu:
            check_nvidia_driver()
        return get_backend()
    except BackendError as exc:
        raise NotImplementedError(str(exc)) from exc


def machine_rates(b: Backend) -> dict:
    """:func:`softmax_core.measure.engine.probe_machine` of this machine and backend, probed once.

    The best of three probes is cached as JSON in ``$SOFTMAX_ASV_CACHE`` (default:
    ``$XDG_CACHE_HOME`` or ``~/.cache``) ``/softmax-bench-asv/``, keyed by everything that
    changes what the probe reads (host, backend, processor, BLAS threads, probe version), so
    that every process of a run, and every later run, skips the same points.  A file this
    user does not own is not trusted.  Delete the file to probe again.
    """
    from threadpoolctl import threadpool_info

    # a library without PROBE_VERSION probes as version 1
    ident = [
        platform.node(),
        b.label,
        cpu_model(),
        os.cpu_count(),
        getattr(engine, "PROBE_VERSION", 1),
        sorted(p.get("num_threads", 0) for p in threadpool_info() if p.get("user_api") == "blas"),
    ]
    if b.is_gpu:
        ident.append(b.describe().get("gpu_name"))
    digest = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    root = Path(os.environ.get(CACHE_ENV) or cache) / "softmax-bench-asv"
    path = root / f"probe-{b.label}-{digest}.json"
    try:
        if path.stat().st_uid == os.getuid():
            return json.loads(path.read_text(encoding="utf-8"))["probe"]
    except (OSError, ValueError, KeyError):
        pass
    # the best of three: one probe taken while something else loads the machine would make
    # every later prediction too slow
    probes = [engine.probe_machine(b) for _ in range(3)]
    probe = max(probes, key=lambda p: p["gemm_gflops"])
    probe["copy_gbps"] = max(p["copy_gbps"] for p in probes)
    atomic_write_text(path, json.dumps({"machine": ident, "probe": probe}, indent=2))
    return probe


@functools.cache
def guard() -> Guard:
    """The sweep's guard on this machine: memory budget and the time model at the probed rates."""
    b = backend()
    rates = machine_rates(b)
    model = TimeModel(rates["gemm_gflops"] * 1e9, rates["copy_gbps"] * 1e9, b.device_kind)
    return Guard(default_memory_budget(b), GRID.time_budget_s, model)


def require(case: Case) -> None:
    """Raise NotImplementedError (asv: n/a) unless ``case`` is measured here and now."""
    name = suite()
    if name == "default" and not in_default_suite(case):
        raise NotImplementedError(
            f"{case.label()}: not in the default suite; run it with {SUITE_ENV}=full"
        )
    reason = guard().skip_reason(case, calls=ASV_CALLS_PER_POINT)
    if reason:
        raise NotImplementedError(f"{case.label()}: {reason}")


def prepare(case: Case) -> tuple[Callable, tuple]:
    """``case``'s call and its inputs on the backend, once :func:`require` allows it."""
    require(case)
    return case.prepare(backend())


# --------------------------------------------------------------------------- measuring


def _asv_extra_params() -> dict:
    """The attributes asv hands this benchmark process (``--quick``'s, ``-a name=value``'s).

    asv has no API for a benchmark to see them: they are the ``extra_params`` of
    asv_runner's ``_run`` (the function that runs one benchmark, in a spawned or a forked
    process alike), read from its frame.  Should asv_runner change that, this returns {}
    and the suite measures as plain ``asv run`` does: right, only slower
    (``tests/test_asv.py`` notices).
    """
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_run" and frame.f_globals.get("__name__") == "asv_runner.run":
            return dict(frame.f_locals.get("extra_params") or {})
        frame = frame.f_back
    return {}


def asv_quick() -> bool:
    """Whether asv runs this benchmark with ``--quick`` ("every benchmark once"), which asv
    hands over as the attributes ``repeat=1``, ``number=1``, ``warmup_time=0``."""
    params = _asv_extra_params()
    return (
        params.get("repeat") == 1 and params.get("number") == 1 and params.get("warmup_time") == 0
    )


def asv_rounds() -> int:
    """asv's rounds of this benchmark (``-a rounds=N``; 1 without it, as asv counts a
    ``track_`` benchmark's).  asv runs each round in a fresh process and pools the samples."""
    try:
        rounds = int(_asv_extra_params().get("rounds", 1))
    except (TypeError, ValueError):
        return 1
    return max(1, rounds)


def asv_samples_per_round(rounds: int) -> int:
    """Least samples of one of asv's rounds: :data:`ASV_MIN_SAMPLES` shared out, 2 a round
    at least."""
    return max(2, math.ceil(ASV_MIN_SAMPLES / rounds))


def measured(fn: Callable, args: tuple, label: str = "") -> engine.Measurement:
    """``fn(*args)`` measured by the engine as the sweep measures a point.

    Under ``asv run --quick`` (:func:`asv_quick`): one warm-up call and one sample, a smoke
    test of the point.  Over asv's rounds (``-a rounds=N``, e.g. the interleaved regression
    gate) the point's sampling time is shared out as the sweep's ``--rounds`` shares it: at
    least :data:`~softmax_core.measure.engine.MIN_TIME_S` and at most :data:`MAX_TIME_S` in all,
    and at least :data:`ASV_MIN_SAMPLES` samples in all (2 a round at least).  A full
    measurement that the engine does not call stable (a wide interval, or other processes
    busy meanwhile) is printed: asv keeps a benchmark's output with its result and shows it
    with ``--show-stderr``.
    """
    if asv_quick():
        return engine.measure(
            fn,
            *args,
            backend=backend(),
            min_samples=1,
            max_samples=1,
            max_time_s=0,
            warmup_s=0,
            cold=False,
        )
    rounds = asv_rounds()
    m = engine.measure(
        fn,
        *args,
        backend=backend(),
        min_samples=asv_samples_per_round(rounds),
        max_time_s=MAX_TIME_S / rounds,
        min_time_s=engine.MIN_TIME_S / rounds,
    )
    if not m.stable:
        print(f"{label or 'this point'}: {m}")
    return m


def asv_samples(m: engine.Measurement) -> dict[str, Any]:
    """A measurement as asv stores a timing: its samples (seconds per call) and the calls
    per sample.

    asv takes a benchmark result shaped ``{"samples": [...], "number": n}`` as a timing and
    computes its median, 99% confidence interval and quartiles from the samples, so
    ``asv compare`` and ``continuous`` see the engine's spread; the median is the engine's.
    """
    return {"samples": [float(t) for t in m.times_s], "number": int(m.loops)}


def peak_bytes(fn: Callable, args: tuple) -> float:
    """Bytes ``fn(*args)`` allocates above its inputs, as the sweep measures them.

    NaN (asv: n/a) where the backend has no allocation counter (torch on the CPU).
    """
    peak = backend().peak_bytes(fn, *args)
    return math.nan if peak is None else int(peak)
