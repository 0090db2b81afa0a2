"""What a backend is: an array library on one device, as the harness sees it.

A :class:`Backend` creates arrays on its device, synchronizes, times (:class:`Timer`),
counts a call's peak memory, says how much memory is free, describes itself and brings
its library to a steady state (:meth:`Backend.settle`).  Each library has one small
adapter beside this module (``numpy``, ``array_api_strict``, ``cupy``, ``torch``,
``dask``); :func:`softmax_core.backends.get_backend` picks one.  The math never asks a
backend anything: it derives its namespace from the arrays it is given.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import BackendError

#: Side of the square float32 matmul that brings a BLAS to its steady state (see
#: :meth:`Backend.settle`).
SETTLE_MATMUL_SIZE = 512
_SETTLED: set[str] = set()  # labels of the backends settled in this process


class Backend:
    """An array library on one device.

    Attributes
    ----------
    name : str
        ``numpy``, ``cupy``, ``torch``, ``array_api_strict`` or ``dask`` (the class's).
    device_kind : str
        ``cpu`` or ``gpu``.
    xp : module
        The array-API namespace (``array_api_compat`` wrapper where needed).
    device : object
        What ``xp.asarray(..., device=device)`` takes.
    """

    name = ""

    def __init__(self, device_kind: str, xp: Any, device: Any):
        self.device_kind, self.xp, self.device = device_kind, xp, device

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label})"

    def __eq__(self, other) -> bool:
        return (
            type(other) is type(self)
            and other.label == self.label
            and other.xp is self.xp
            and other.device == self.device
        )

    def __hash__(self) -> int:
        return hash(self.label)

    @property
    def label(self) -> str:
        """Short name for reports, e.g. ``numpy-cpu`` or ``cupy-gpu``."""
        return f"{self.name}-{self.device_kind}"

    @property
    def is_gpu(self) -> bool:
        return self.device_kind == "gpu"

    def synchronize(self) -> None:
        """Block until all queued device work is done (nothing to wait for on the CPU)."""

    def current(self) -> contextlib.AbstractContextManager:
        """A context in which this backend's library computes here: where one process holds
        several Dask clusters, what a value check computes goes to this backend's."""
        return contextlib.nullcontext()

    def complete(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` as a call that does its work before it returns: what is timed.  Eager
        libraries do (their queued device work is waited for by the timer); a lazy one
        (Dask) computes the result it would otherwise only describe."""
        return fn

    def asarray(self, a: Any, dtype: Any = None, *, copy: bool | None = None) -> Any:
        """A NumPy array (or scalar list) on this backend and device.

        ``dtype`` may be a name (``"float32"``) or a dtype of ``xp``.  ``copy=True``
        always makes a new, written (so materialised) buffer: NumPy would
        otherwise hand back the very host array, perhaps lazily mapped zeros.
        """
        if isinstance(dtype, str):
            dtype = getattr(self.xp, dtype)
        return self.xp.asarray(a, dtype=dtype, device=self.device, copy=copy)

    def whole_array(self, a: Any, dtype: Any = None) -> Any:
        """``a`` on this device as one array, for the machine probe, which measures the
        hardware's ceilings: as :meth:`asarray` makes it, where arrays are not cut up."""
        return self.asarray(a, dtype, copy=True)

    def to_numpy(self, a: Any) -> np.ndarray:
        """Copy an array of this backend back to host NumPy."""
        return np.asarray(a)

    def timer(self) -> Timer:
        """A fresh :class:`Timer`: the host clock on the CPU, CUDA events on a GPU."""
        return HostTimer(self.synchronize)

    def peak_bytes(self, fn: Callable[..., Any], *args: Any) -> int | None:
        """Peak bytes ``fn(*args)`` allocates on this device above what was in use before.

        The call's result counts (the call allocated it).  None where this library
        cannot count its allocations (torch on the CPU, CuPy with an allocator
        other than its default memory pool, e.g. ``MemoryAsyncPool``).
        """
        gc.collect()
        return self._peak(fn, args)

    def _peak(self, fn: Callable, args: tuple) -> int | None:
        return None

    def free_memory_bytes(self) -> int:
        """Bytes this device could allocate now (host RAM on the CPU)."""
        return host_available_bytes()

    def describe(self) -> dict:
        """Library version and, on a GPU, the card, its memory and the CUDA versions."""
        info = {"backend": self.name, "device": self.device_kind, "label": self.label}
        if self.name != "numpy":
            info[self.name] = getattr(importlib.import_module(self.name), "__version__", "?")
        return {**info, **self._describe_device()}

    def _describe_device(self) -> dict:
        return {}

    def settle(self) -> None:
        """Bring this library's matmul to its steady state, once per process: one square
        float32 matmul of :data:`SETTLE_MATMUL_SIZE`: a BLAS keeps state across calls that a
        call's own warm-up does not reach (docs/measurement.md, "The measuring loop")."""
        if self.label in _SETTLED:
            return
        a = self.asarray(np.ones((SETTLE_MATMUL_SIZE, SETTLE_MATMUL_SIZE)), "float32", copy=True)
        self.xp.matmul(a, a)
        self.synchronize()
        _SETTLED.add(self.label)


# --------------------------------------------------------------------------- timers


class Timer:
    """Times the calls between :meth:`start` and :meth:`stop`, after all queued work."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> tuple[float, float | None]:
        """``(host seconds, device seconds or None)`` since :meth:`start`, synchronized."""
        raise NotImplementedError


class HostTimer(Timer):
    """``time.perf_counter`` around the calls, synchronizing before and after."""

    def __init__(self, sync: Callable[[], None]):
        self._sync = sync
        self._t0 = 0.0

    def start(self) -> None:
        self._sync()
        self._t0 = time.perf_counter()

    def stop(self) -> tuple[float, None]:
        self._sync()
        return time.perf_counter() - self._t0, None


class EventTimer(Timer):
    """CUDA events recorded on the current stream around the calls, and the host clock.

    The device time is the one that counts on a GPU: the host clock also sees
    launch latency and the final synchronization.  ``make_event`` makes an event
    with ``record()`` and ``synchronize()``; ``elapsed_ms(start, end)`` reads it.
    """

    def __init__(
        self,
        make_event: Callable[[], Any],
        elapsed_ms: Callable[[Any, Any], float],
        sync: Callable[[], None],
    ):
        self._make_event, self._elapsed_ms, self._sync = make_event, elapsed_ms, sync
        self._start = self._end = None
        self._t0 = 0.0

    def start(self) -> None:
        self._sync()  # work queued before start() must not count
        self._start, self._end = self._make_event(), self._make_event()
        self._start.record()
        self._t0 = time.perf_counter()

    def stop(self) -> tuple[float, float]:
        self._end.record()
        self._end.synchronize()
        host = time.perf_counter() - self._t0
        return host, self._elapsed_ms(self._start, self._end) / 1e3


# --------------------------------------------------------------------------- memory


def tracemalloc_peak(fn: Callable, args: tuple) -> int:
    """Peak bytes of ``fn(*args)`` as tracemalloc sees them: NumPy (and array-api-strict
    on it) report their buffers to tracemalloc."""
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


class PeakCounter:
    """Bytes in use and their peak, from allocation and free events."""

    def __init__(self):
        self.current = self.peak = 0

    def malloc(self, nbytes: int) -> None:
        self.current += nbytes
        self.peak = max(self.peak, self.current)

    def free(self, nbytes: int) -> None:
        self.current -= nbytes


#: Error messages name both ways a device is chosen: the command's option and the environment.
GPU_ASKED = "the GPU was asked for (--device gpu, or SOFTMAX_DEVICE=gpu)"
USE_CPU = "use the CPU (--device cpu, or SOFTMAX_DEVICE=cpu)"
#: Files an NVIDIA driver creates on Linux (WSL: /dev/dxg); without any of them there is no
#: CUDA device, whatever is installed.
NVIDIA_DRIVER_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/dxg")


def check_nvidia_driver() -> None:
    """BackendError on a Linux machine without an NVIDIA driver: said before any CUDA library
    is imported, since installing one would only lead to the next error."""
    import sys

    if sys.platform.startswith("linux") and not any(map(os.path.exists, NVIDIA_DRIVER_FILES)):
        raise BackendError(
            f"{GPU_ASKED}, but this machine has no NVIDIA driver (none of "
            f"{', '.join(NVIDIA_DRIVER_FILES)}); fix: run on a machine with an NVIDIA GPU, or "
            f"{USE_CPU}"
        )


def host_available_bytes() -> int:
    """Memory the OS could give this process now (MemAvailable), in bytes."""
    import psutil

    return int(psutil.virtual_memory().available)


def import_library(module: str, hint: str):
    """``module`` imported, or a :class:`BackendError` whose fix is ``hint``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendError(
            f"backend {module!r} was asked for but cannot be imported ({exc}); fix: {hint}"
        ) from exc
