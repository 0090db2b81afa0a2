"""CuPy on the current CUDA device: CUDA-event timing, a memory-pool hook for the peak."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InputError
from .base import (
    GPU_ASKED,
    USE_CPU,
    Backend,
    BackendError,
    EventTimer,
    PeakCounter,
    check_nvidia_driver,
    import_library,
)

INSTALL_HINT = (
    "pip install 'softmax-bench[gpu]' (in a clone: pip install -e '.[gpu]'), or the "
    "cupy-cudaXX wheel matching your CUDA"
)


class CupyBackend(Backend):
    name = "cupy"

    def __init__(self, cupy, xp, device):
        super().__init__("gpu", xp, device)
        self._cupy = cupy

    def synchronize(self) -> None:
        self._cupy.cuda.get_current_stream().synchronize()

    def to_numpy(self, a):
        return self._cupy.asnumpy(a)

    def timer(self) -> EventTimer:
        cuda = self._cupy.cuda
        return EventTimer(cuda.Event, cuda.get_elapsed_time, self.synchronize)

    def _peak(self, fn, args):
        return pool_peak(self._cupy, self.synchronize, fn, args)

    def free_memory_bytes(self) -> int:
        free, _ = self._cupy.cuda.runtime.memGetInfo()
        return int(free + self._cupy.get_default_memory_pool().free_bytes())  # cached: reusable

    def _describe_device(self) -> dict:
        runtime = self._cupy.cuda.runtime
        props = runtime.getDeviceProperties(self.device.id)
        free, total = runtime.memGetInfo()
        name = props["name"]
        return {
            "gpu_name": name.decode() if isinstance(name, bytes) else str(name),
            "gpu_memory_total_bytes": int(total),
            "gpu_memory_free_bytes": int(free),
            "cuda_driver_version": runtime.driverGetVersion(),
            "cuda_runtime_version": runtime.runtimeGetVersion(),
        }


def pool_is_hookable(cupy) -> bool:
    """Memory hooks fire in CuPy's default ``MemoryPool`` only, not in ``MemoryAsyncPool``
    or a foreign allocator set with ``cupy.cuda.set_allocator``."""
    pool = getattr(cupy.cuda.get_allocator(), "__self__", None)
    async_pool = getattr(cupy.cuda, "MemoryAsyncPool", ())
    return isinstance(pool, cupy.cuda.MemoryPool) and not isinstance(pool, async_pool)


def pool_peak(cupy, sync: Callable[[], None], fn: Callable, args: tuple) -> int | None:
    """Peak bytes the pool hands out during ``fn(*args)`` above what was in use before, from
    a CuPy memory hook (CuPy has no peak counter); None where hooks see nothing."""
    if not pool_is_hookable(cupy):
        return None

    class _Hook(cupy.cuda.MemoryHook):
        name = "SoftmaxBenchPeak"

        def __init__(self):
            self.counter = PeakCounter()

        def malloc_postprocess(self, **kw):
            self.counter.malloc(kw["mem_size"])

        def free_postprocess(self, **kw):
            self.counter.free(kw["mem_size"])

    sync()
    hook = _Hook()
    with hook:
        result = fn(*args)
        sync()
    del result
    return hook.counter.peak


def make(device: str) -> CupyBackend:
    if device == "cpu":
        raise InputError(
            "cupy runs on the GPU only; fix: use the GPU (--device gpu, or SOFTMAX_DEVICE=gpu), "
            "or numpy (--backend numpy, or SOFTMAX_BACKEND=numpy)"
        )
    check_nvidia_driver()
    cupy = import_library("cupy", INSTALL_HINT)
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        dev = cupy.cuda.Device()
        dev.compute_capability  # noqa: B018 - the first real call into the driver
    except Exception as exc:  # CUDARuntimeError lives in cupy_backends: any driver failure
        raise BackendError(
            f"{GPU_ASKED}, but CuPy finds no usable CUDA device ({exc}); "
            f"fix: run on a machine with an NVIDIA GPU and driver, or {USE_CPU}"
        ) from exc
    if count < 1:
        raise BackendError(f"{GPU_ASKED}, but CuPy sees 0 CUDA devices; fix: {USE_CPU}")
    import array_api_compat.cupy as xp

    return CupyBackend(cupy, xp, dev)
