"""Array backends: which array library runs the math, on which device.

The math in :mod:`softmax_core.model.softmax` never asks this module anything: it derives
its namespace from the arrays it is given.  This module is only for the code that
*creates* arrays and *times* them (CLI, sweep, benchmarks): it turns the
environment variables ``SOFTMAX_DEVICE`` and ``SOFTMAX_BACKEND`` into a
:class:`Backend`.

=================  ===========================================================
``SOFTMAX_DEVICE``  ``cpu`` (default) or ``gpu`` (the current CUDA device)
``SOFTMAX_BACKEND`` optional: ``numpy``, ``cupy``, ``torch``,
                    ``array_api_strict`` or ``dask``; default ``numpy`` on
                    ``cpu`` and ``cupy`` on ``gpu``
=================  ===========================================================

``dask`` runs on a dask.distributed cluster (``SOFTMAX_DASK_SCHEDULER``, or a
LocalCluster started with the command): see :mod:`softmax_core.dask.cluster`.
"""

from __future__ import annotations

import gc
import importlib
import os
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..measure.host_memory import retain_freed_memory

DEVICES = ("cpu", "gpu")
BACKENDS = ("numpy", "cupy", "torch", "array_api_strict", "dask")
DEFAULT_BACKEND = {"cpu": "numpy", "gpu": "cupy"}
GPU_INSTALL_HINT = "pip install 'softmax-bench[gpu]' (or the cupy-cudaXX wheel matching your CUDA)"


#: Side of the square float32 matmul that brings a BLAS to its steady state (see :meth:`Backend.settle`).
SETTLE_MATMUL_SIZE = 512
_SETTLED: set[str] = set()  # labels of the backends settled in this process


class BackendError(RuntimeError):
    """The requested backend cannot run here (library or GPU missing)."""


@dataclass(frozen=True)
class Backend:
    """An array library on one device, as the harness sees it.

    Attributes
    ----------
    name : str
        ``numpy``, ``cupy``, ``torch`` or ``array_api_strict``.
    device_kind : str
        ``cpu`` or ``gpu``.
    xp : module
        The array-API namespace (``array_api_compat`` wrapper where needed).
    device : object
        What ``xp.asarray(..., device=device)`` takes.
    """

    name: str
    device_kind: str
    xp: Any = field(repr=False)
    device: Any = field(repr=False)
    _sync: Callable[[], None] = field(repr=False, compare=False)
    _to_numpy: Callable[[Any], np.ndarray] = field(repr=False, compare=False)
    _timer: Callable[[], Timer] = field(repr=False, compare=False, default=None)
    _peak: Callable[[Callable, tuple], int | None] | None = field(
        repr=False, compare=False, default=None
    )
    _free_memory: Callable[[], int] | None = field(repr=False, compare=False, default=None)

    @property
    def label(self) -> str:
        """Short name for reports, e.g. ``numpy-cpu`` or ``cupy-gpu``."""
        return f"{self.name}-{self.device_kind}"

    @property
    def is_gpu(self) -> bool:
        return self.device_kind == "gpu"

    def synchronize(self) -> None:
        """Block until all queued device work is done (no-op on the CPU)."""
        self._sync()

    def asarray(self, a: Any, dtype: Any = None, *, copy: bool | None = None) -> Any:
        """A NumPy array (or scalar list) on this backend and device.

        ``dtype`` may be a name (``"float32"``) or a dtype of ``xp``.  ``copy=True``
        always makes a new, written (so materialised) buffer: NumPy would
        otherwise hand back the very host array, perhaps lazily mapped zeros.
        """
        if isinstance(dtype, str):
            dtype = getattr(self.xp, dtype)
        return self.xp.asarray(a, dtype=dtype, device=self.device, copy=copy)

    def timer(self) -> Timer:
        """A fresh :class:`Timer`: the host clock on the CPU, CUDA events on a GPU."""
        return self._timer() if self._timer is not None else HostTimer(self._sync)

    def peak_bytes(self, fn: Callable[..., Any], *args: Any) -> int | None:
        """Peak bytes ``fn(*args)`` allocates on this device above what was in use before.

        The call's result counts (the call allocated it).  None where this library
        cannot count its allocations (torch on the CPU, CuPy with an allocator
        other than its default memory pool, e.g. ``MemoryAsyncPool``).
        """
        if self._peak is None:
            return None
        gc.collect()
        return self._peak(fn, args)

    def free_memory_bytes(self) -> int:
        """Bytes this device could allocate now (host RAM on the CPU)."""
        return self._free_memory() if self._free_memory is not None else host_available_bytes()

    def to_numpy(self, a: Any) -> np.ndarray:
        """Copy an array of this backend back to host NumPy."""
        return self._to_numpy(a)

    def describe(self) -> dict:
        """Library version and, on a GPU, the card, its memory and the CUDA versions."""
        return _describe(self)

    def settle(self) -> None:
        """Bring this library's matmul to its steady state, once per process: one square
        float32 matmul of :data:`SETTLE_MATMUL_SIZE`.

        Why: OpenBLAS keeps state across calls that a call's own warm-up does not reach.
        On the 2-core reference VM (OpenBLAS 0.3.31, one thread), ``X @ theta`` of
        [1024, 784] @ [784, 100] float32 takes 7.9 ms in a process that has not yet
        multiplied matrices of 384 x 384 or more and 4.2 ms, for the rest of the
        process, once it has (either dtype); repeating the call itself for a second does not
        change it.  The sweep probes the machine (a 1024 x 1024 matmul) before it
        measures, while an asv benchmark process, forked fresh for each point, did not:
        the structured gradient at B = 1024, k = 100 read 20 ms in asv and 10 ms in the
        sweep.  Settling first makes a measurement independent of what ran before it in
        the process.  The measuring loop calls this before a point's first call.

        On the CPU it also makes the C allocator keep what the process frees
        (:func:`softmax_core.measure.host_memory.retain_freed_memory`), so a call that
        allocates gigabytes finds its memory mapped, as a GPU's memory pool does,
        instead of paying the kernel (and the VM's host) for fresh pages at random.
        Dask's math runs in its workers, which this process cannot settle: a no-op there.
        """
        if self.label in _SETTLED or self.name == "dask":
            return
        if not self.is_gpu:
            retain_freed_memory()
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


# --------------------------------------------------------------------------- peak memory


def _peak_tracemalloc(fn: Callable, args: tuple) -> int:
    """NumPy (and array-api-strict on it) report their buffers to tracemalloc."""
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
    """Bytes in use and their peak, from allocation and free events (CuPy has no peak counter)."""

    def __init__(self):
        self.current = self.peak = 0

    def malloc(self, nbytes: int) -> None:
        self.current += nbytes
        self.peak = max(self.peak, self.current)

    def free(self, nbytes: int) -> None:
        self.current -= nbytes


def _cupy_peak_tracker(cupy, sync: Callable[[], None]):
    """A peak tracker through a CuPy memory hook, or None where hooks see nothing."""

    class _Hook(cupy.cuda.MemoryHook):
        name = "SoftmaxBenchPeak"

        def __init__(self):
            self.counter = PeakCounter()

        def malloc_postprocess(self, **kw):
            self.counter.malloc(kw["mem_size"])

        def free_postprocess(self, **kw):
            self.counter.free(kw["mem_size"])

    def peak(fn: Callable, args: tuple) -> int | None:
        if not cupy_pool_is_hookable(cupy):
            return None
        sync()
        hook = _Hook()
        with hook:
            result = fn(*args)
            sync()
        del result
        return hook.counter.peak

    return peak


def cupy_pool_is_hookable(cupy) -> bool:
    """Memory hooks fire in CuPy's default ``MemoryPool`` only, not in ``MemoryAsyncPool``
    or a foreign allocator set with ``cupy.cuda.set_allocator``."""
    pool = getattr(cupy.cuda.get_allocator(), "__self__", None)
    async_pool = getattr(cupy.cuda, "MemoryAsyncPool", ())
    return isinstance(pool, cupy.cuda.MemoryPool) and not isinstance(pool, async_pool)


def _torch_cuda_peak(torch):
    def peak(fn: Callable, args: tuple) -> int:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        result = fn(*args)
        torch.cuda.synchronize()
        value = torch.cuda.max_memory_allocated() - base
        del result
        return int(value)

    return peak


def host_available_bytes() -> int:
    """Memory the OS could give this process now (MemAvailable), in bytes."""
    import psutil

    return int(psutil.virtual_memory().available)


def get_backend(device: str | None = None, backend: str | None = None) -> Backend:
    """Return the backend chosen by arguments or, where None, the environment.

    Parameters
    ----------
    device : {"cpu", "gpu"}, optional
        Defaults to ``$SOFTMAX_DEVICE`` or ``cpu``.
    backend : {"numpy", "cupy", "torch", "array_api_strict"}, optional
        Defaults to ``$SOFTMAX_BACKEND`` or the device's default library.

    Raises
    ------
    ValueError
        An unknown device or backend name, or a combination that cannot exist
        (``numpy`` on ``gpu``).
    BackendError
        The library is not installed, or no usable CUDA device is present.
    """
    device = (device or os.environ.get("SOFTMAX_DEVICE") or "cpu").strip().lower()
    if device not in DEVICES:
        raise ValueError(
            f"SOFTMAX_DEVICE={device!r} is not a device: use one of {', '.join(DEVICES)}"
        )
    backend = (
        (backend or os.environ.get("SOFTMAX_BACKEND") or DEFAULT_BACKEND[device]).strip().lower()
    )
    backend = backend.replace("-", "_")
    if backend not in BACKENDS:
        raise ValueError(
            f"SOFTMAX_BACKEND={backend!r} is not a backend: use one of {', '.join(BACKENDS)}"
        )
    return _FACTORIES[backend](device)


def _import(module: str, hint: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendError(
            f"backend {module!r} was asked for but cannot be imported ({exc}); fix: {hint}"
        ) from exc


def _numpy(device: str) -> Backend:
    if device == "gpu":
        raise ValueError(
            "SOFTMAX_BACKEND=numpy runs on the CPU only: use SOFTMAX_DEVICE=cpu, "
            "or SOFTMAX_BACKEND=cupy/torch for the GPU"
        )
    import array_api_compat.numpy as xp

    return Backend("numpy", "cpu", xp, "cpu", _noop, np.asarray, _peak=_peak_tracemalloc)


def _array_api_strict(device: str) -> Backend:
    if device == "gpu":
        raise ValueError("array_api_strict runs on the CPU only: use SOFTMAX_DEVICE=cpu")
    xp = _import("array_api_strict", "pip install array-api-strict")
    return Backend(
        "array_api_strict",
        "cpu",
        xp,
        xp.Device("CPU_DEVICE"),
        _noop,
        _from_dlpack,
        _peak=_peak_tracemalloc,
    )


def _cupy(device: str) -> Backend:
    if device == "cpu":
        raise ValueError(
            "cupy runs on the GPU only: use SOFTMAX_DEVICE=gpu, or SOFTMAX_BACKEND=numpy"
        )
    cupy = _import("cupy", GPU_INSTALL_HINT)
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        dev = cupy.cuda.Device()
        dev.compute_capability  # noqa: B018 - first real call into the driver
    except Exception as exc:  # CUDARuntimeError lives in cupy_backends; catch any driver failure
        raise BackendError(
            f"SOFTMAX_DEVICE=gpu was asked for but CuPy finds no usable CUDA device ({exc}); "
            "fix: run on a machine with an NVIDIA GPU and driver, or use SOFTMAX_DEVICE=cpu"
        ) from exc
    if count < 1:
        raise BackendError(
            "SOFTMAX_DEVICE=gpu was asked for but CuPy sees 0 CUDA devices; fix: use SOFTMAX_DEVICE=cpu"
        )
    import array_api_compat.cupy as xp

    def sync() -> None:
        cupy.cuda.get_current_stream().synchronize()

    def free_memory() -> int:
        free, _ = cupy.cuda.runtime.memGetInfo()
        return int(free + cupy.get_default_memory_pool().free_bytes())  # cached blocks are reusable

    return Backend(
        "cupy",
        "gpu",
        xp,
        dev,
        sync,
        cupy.asnumpy,
        _timer=lambda: EventTimer(cupy.cuda.Event, cupy.cuda.get_elapsed_time, sync),
        _peak=_cupy_peak_tracker(cupy, sync),
        _free_memory=free_memory,
    )


def _torch(device: str) -> Backend:
    torch = _import("torch", "pip install 'softmax-bench[torch]'")
    import array_api_compat.torch as xp

    if device == "gpu":
        if not torch.cuda.is_available():
            raise BackendError(
                "SOFTMAX_BACKEND=torch with SOFTMAX_DEVICE=gpu was asked for but torch sees no CUDA "
                "device; fix: install a CUDA build of torch on a GPU machine, or use SOFTMAX_DEVICE=cpu"
            )
        dev = torch.device("cuda", torch.cuda.current_device())

        def free_memory() -> int:
            free, _ = torch.cuda.mem_get_info()
            return int(free + torch.cuda.memory_reserved() - torch.cuda.memory_allocated())

        return Backend(
            "torch",
            "gpu",
            xp,
            dev,
            torch.cuda.synchronize,
            lambda a: a.detach().cpu().numpy(),
            _timer=lambda: EventTimer(
                lambda: torch.cuda.Event(enable_timing=True),
                lambda a, b: a.elapsed_time(b),
                torch.cuda.synchronize,
            ),
            _peak=_torch_cuda_peak(torch),
            _free_memory=free_memory,
        )
    return Backend("torch", "cpu", xp, torch.device("cpu"), _noop, lambda a: a.detach().numpy())


def _dask(device: str) -> Backend:
    if device == "gpu":
        raise ValueError(
            "dask runs on the CPU here (NumPy chunks on its workers): use SOFTMAX_DEVICE=cpu"
        )
    _import("dask.array", "pip install 'softmax-bench[dask]'")
    _import("distributed", "pip install 'softmax-bench[dask]'")
    from ..dask.cluster import dask_backend  # the cluster, its timer, peak and free-memory hooks

    return dask_backend()


def _noop() -> None:
    pass


def _from_dlpack(a: Any) -> np.ndarray:
    return np.from_dlpack(a)


_FACTORIES = {
    "numpy": _numpy,
    "cupy": _cupy,
    "torch": _torch,
    "array_api_strict": _array_api_strict,
    "dask": _dask,
}


def _describe(b: Backend) -> dict:
    info = {"backend": b.name, "device": b.device_kind, "label": b.label}
    if b.name != "numpy":
        mod = importlib.import_module(b.name)
        info[b.name] = getattr(mod, "__version__", "?")
    if b.name == "cupy":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(b.device.id)
        free, total = cupy.cuda.runtime.memGetInfo()
        name = props["name"]
        info.update(
            gpu_name=name.decode() if isinstance(name, bytes) else str(name),
            gpu_memory_total_bytes=int(total),
            gpu_memory_free_bytes=int(free),
            cuda_driver_version=cupy.cuda.runtime.driverGetVersion(),
            cuda_runtime_version=cupy.cuda.runtime.runtimeGetVersion(),
        )
    elif b.name == "dask":
        from ..dask.metrics import describe

        info.update(describe(b))
    elif b.name == "torch" and b.is_gpu:
        import torch

        free, total = torch.cuda.mem_get_info()
        info.update(
            gpu_name=torch.cuda.get_device_name(),
            gpu_memory_total_bytes=int(total),
            gpu_memory_free_bytes=int(free),
            cuda_runtime_version=torch.version.cuda,
        )
    return info
