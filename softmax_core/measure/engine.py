"""The measuring loop: how every time softmax-bench prints is taken.

:func:`measure` takes one call through a cold call, warm-up, calibration and samples until the
median's 95% interval converges, inside a measurement session (:mod:`.session`);
:func:`~softmax_core.measure.alternating.measure_side_by_side` runs the same loop for several
calls in alternating rounds.  docs/measurement.md ("The measuring loop") says what each step
does and why, and what a ``stable`` :class:`Measurement` promises.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backends import Backend, get_backend
from ..errors import InputError, InputTypeError, whole
from . import session
from .cpuwatch import OthersCPU
from .stats import (  # noqa: F401  (re-exported: the loop's result and its rules)
    STABLE_REL_CI,
    TARGET_REL_CI,
    Measurement,
    median_ci,
)

#: Least sampling time of a point (see :func:`measure`).
MIN_TIME_S = 0.2


# --------------------------------------------------------------------------- the loop


@dataclass
class Sampler:
    """One call on one backend, taken through cold, warm-up, calibration and samples."""

    fn: Callable[..., Any]
    args: tuple
    backend: Backend
    min_sample_s: float
    loops: int = 1
    times: list = field(default_factory=list)
    host_times: list = field(default_factory=list)
    first_s: float | None = None

    def timed(self, loops: int) -> tuple[float, float]:
        """(seconds that count, host seconds) of ``loops`` calls, per call."""
        timer = self.backend.timer()
        fn, args = self.fn, self.args
        timer.start()
        for _ in range(loops):
            fn(*args)
        host, device = timer.stop()
        counted = device if device is not None else host
        return counted / loops, host / loops

    def cold(self) -> float:
        self.first_s = self.timed(1)[0]
        return self.first_s

    def warm_up(self, warmup_s: float, cap_s: float) -> None:
        """Calls until they stop getting faster and ``warmup_s`` has passed (at most ``cap_s``)."""
        start = time.perf_counter()
        best = self.timed(1)[0]
        while time.perf_counter() - start < cap_s:  # one long call is warm-up enough
            t = self.timed(1)[0]
            spent = time.perf_counter() - start
            settled = t >= 0.9 * best  # not faster than the best call before it
            best = min(best, t)
            if spent >= cap_s or (settled and spent >= warmup_s):
                break
        if best < self.min_sample_s:
            self.loops = _nice_ceil(self.min_sample_s / max(best, 1e-9))

    def sample(self) -> None:
        counted, host = self.timed(self.loops)
        self.times.append(counted)
        self.host_times.append(host)

    def result(self, capped: bool, others: OthersCPU | None = None) -> Measurement:
        host = tuple(self.host_times) if self.backend.is_gpu else None
        share, raw = others.reading() if others is not None else (None, None)
        return Measurement(
            tuple(self.times),
            self.loops,
            self.first_s,
            host,
            capped=capped,
            others_cpu=share,
            others_raw_s=raw,
        )


def _nice_ceil(x: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is >= x."""
    if x <= 1:
        return 1
    exp = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 5, 10):
        if m * exp >= x:
            return int(m * exp)
    return int(10 * exp)


def converged(times: list[float], target: float) -> bool:
    return Measurement(tuple(times)).rel_ci <= target


def check_args(
    fn,
    min_samples,
    max_samples,
    max_time_s,
    target,
    warmup_s,
    min_sample_s,
    min_time_s: float = 0.0,
) -> None:
    if not callable(fn):
        raise InputTypeError(f"fn must be callable, got {type(fn).__name__}")
    whole(min_samples, "min_samples")
    whole(max_samples, "max_samples")
    if max_samples < min_samples:
        raise InputError(f"max_samples ({max_samples}) must be >= min_samples ({min_samples})")
    for name, v in (
        ("max_time_s", max_time_s),
        ("warmup_s", warmup_s),
        ("min_sample_s", min_sample_s),
        ("min_time_s", min_time_s),
    ):
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float, np.floating, np.integer))
            or not (0 <= v < math.inf)
        ):
            raise InputError(f"{name} must be a finite number >= 0, got {v!r}")
    if (
        isinstance(target, bool)
        or not isinstance(target, (int, float, np.floating))
        or not 0 < target < 1
    ):
        raise InputError(f"target must be a fraction between 0 and 1, got {target!r}")


def measure(
    fn: Callable[..., Any],
    *args: Any,
    backend: Backend | None = None,
    target: float = TARGET_REL_CI,
    min_samples: int = 5,
    max_samples: int = 10_000,
    max_time_s: float = 2.0,
    warmup_s: float = 0.05,
    min_sample_s: float = 1e-3,
    cold: bool = True,
    min_time_s: float = MIN_TIME_S,
    warm_up: bool = True,
) -> Measurement:
    """Measure ``fn(*args)``: cold call, warm-up, calibration, samples until converged.

    Parameters
    ----------
    fn, args
        The call; its result is discarded.  Its inputs must already exist on
        the device, written (not lazily mapped), e.g. from ``Case.prepare``.
    backend : Backend, optional
        Where ``fn`` runs (default: :func:`get_backend`): its timer synchronizes
        and, on a GPU, times with CUDA events.
    target : float
        Stop once the 95% CI of the median is within ``±target`` of it.
    min_samples, max_samples : int
        At least ``min_samples`` samples (even past ``max_time_s``), at most
        ``max_samples``.
    max_time_s : float
        Time cap of the sampling: past it, sampling stops once ``min_samples``
        are taken, and the result says ``capped``.
    warmup_s : float
        Least time spent warming up (calls continue until they stop getting
        faster, up to a quarter of ``max_time_s``).
    min_sample_s : float
        Calls shorter than this are looped within one sample.
    min_time_s : float
        Least sampling time (at most ``max_time_s``): the samples span the
        machine's changes of speed, not one moment of it.
    cold : bool
        Time the first call alone as ``first_s`` (default).  False when the
        caller already made it (a later round of the same point).
    warm_up : bool
        Warm up first (default).  False only with ``cold=False``, where the
        caller knows the call is in its steady state from the first call on:
        a later round of a point whose calls take seconds and allocate their
        own memory every time (the naive Jacobian).  Without a warm-up there is
        no calibration either: each sample is one call, right only for calls
        well above ``min_sample_s``.

    Returns
    -------
    Measurement
    """
    check_args(fn, min_samples, max_samples, max_time_s, target, warmup_s, min_sample_s, min_time_s)
    for name, flag in (("cold", cold), ("warm_up", warm_up)):
        if not isinstance(flag, bool):
            raise InputTypeError(f"{name} must be True or False, got {flag!r}")
    if not warm_up and cold:
        raise InputError("warm_up=False needs cold=False: a cold call is never a steady state")
    backend = backend or get_backend()
    warmup_s, min_time_s = (warmup_s if warm_up else None), min(min_time_s, max_time_s)
    with session.ensure(backend):
        s = Sampler(fn, args, backend, min_sample_s)
        return _sample(s, target, min_samples, max_samples, max_time_s, warmup_s, cold, min_time_s)


@contextlib.contextmanager
def gc_off():
    """Garbage collection off inside the ``with`` block, as it was again after it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _sample(
    s: Sampler, target, min_samples, max_samples, max_time_s, warmup_s, cold, min_time_s
) -> Measurement:
    with gc_off():
        if cold:
            s.cold()
        if warmup_s is not None:
            s.warm_up(min(warmup_s, max_time_s), max(max_time_s / 4, warmup_s))
        start = time.perf_counter()
        others = OthersCPU()
        while True:
            s.sample()
            n = len(s.times)
            if n >= max_samples:
                return s.result(not converged(s.times, target), others)
            if n < min_samples:
                continue
            spent = time.perf_counter() - start
            # checking every sample is O(n log n) each: thin the checks out as n grows
            if (
                spent >= min_time_s
                and (n < 64 or n % max(1, n // 16) == 0)
                and converged(s.times, target)
            ):
                return s.result(False, others)
            if spent >= max_time_s:
                return s.result(not converged(s.times, target), others)


def time_once(
    fn: Callable[..., Any], *args: Any, backend: Backend | None = None, **kwargs: Any
) -> tuple[Any, float]:
    """``(fn(*args, **kwargs), seconds)``: one call through the backend's timer, for
    calls that cannot be repeated (an epoch of training, which changes θ).
    Collect the seconds into :meth:`Measurement.from_samples` for their statistics."""
    backend = backend or get_backend()
    with session.ensure(backend):
        timer = backend.timer()
        timer.start()
        result = fn(*args, **kwargs)
        host, device = timer.stop()
    return result, device if device is not None else host


#: What the probe measures.  2: the copy's destination pages are kept by the allocator
#: (:mod:`softmax_core.measure.host_memory`); 1 (results without the key): fresh pages every
#: copy, which a VM whose host reclaims freed pages reads at about half the bandwidth.  Probes
#: of two versions are not compared.
PROBE_VERSION = 2


def probe_machine(
    backend: Backend | None = None,
    *,
    gemm_size: int = 1024,
    copy_bytes: int = 64 * 2**20,
    dtype: str = "float32",
) -> dict:
    """The machine's ceilings: GEMM rate (GFLOP/s) and copy bandwidth (GB/s, read + write).

    A square matmul of ``gemm_size`` and a copy of ``copy_bytes``, each measured
    with :func:`measure` (about a second in all); the fastest sample counts, as
    a ceiling should.
    """
    backend = backend or get_backend()
    xp = backend.xp
    rng = np.random.default_rng(0)
    a = backend.whole_array(rng.standard_normal((gemm_size, gemm_size)), dtype)
    # complete: a lazy library (Dask) would otherwise time the building of a graph
    gemm = measure(backend.complete(lambda: a @ a), backend=backend, max_time_s=0.3)
    n_items = copy_bytes // np.dtype(dtype).itemsize
    v = backend.whole_array(np.ones(n_items), dtype)
    copy = measure(
        backend.complete(lambda: xp.asarray(v, copy=True)), backend=backend, max_time_s=0.3
    )
    return {
        "gemm_gflops": 2 * gemm_size**3 / gemm.min / 1e9,
        "copy_gbps": 2 * copy_bytes / copy.min / 1e9,
        "probe_gemm_size": gemm_size,
        "probe_copy_bytes": copy_bytes,
        "probe_version": PROBE_VERSION,
    }


__all__ = [
    "Measurement",
    "measure",
    "time_once",
    "median_ci",
    "probe_machine",
    "TARGET_REL_CI",
    "STABLE_REL_CI",
]
