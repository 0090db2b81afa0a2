"""Array backends: which array library runs the math, on which device.

The math in :mod:`softmax_core.model` never asks this module anything: it derives
its namespace from the arrays it is given.  This module is only for the code that
*creates* arrays and *times* them (CLI, sweep, benchmarks): it turns the
environment variables ``SOFTMAX_DEVICE`` and ``SOFTMAX_BACKEND`` into a
:class:`Backend`.

=================  ===========================================================
``SOFTMAX_DEVICE``  ``cpu`` (default) or ``gpu`` (the current CUDA device)
``SOFTMAX_BACKEND`` optional: ``numpy``, ``cupy``, ``torch`` or
                    ``array_api_strict``; default ``numpy`` on ``cpu`` and
                    ``cupy`` on ``gpu``
=================  ===========================================================
"""

from __future__ import annotations

import importlib
import os
import platform
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

DEVICES = ("cpu", "gpu")
BACKENDS = ("numpy", "cupy", "torch", "array_api_strict")
DEFAULT_BACKEND = {"cpu": "numpy", "gpu": "cupy"}
GPU_INSTALL_HINT = "pip install 'softmax-bench[gpu]' (or the cupy-cudaXX wheel matching your CUDA)"


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

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """Copy a NumPy array (or scalar list) to this backend and device.

        ``dtype`` may be a name (``"float32"``) or a dtype of ``xp``.
        """
        if isinstance(dtype, str):
            dtype = getattr(self.xp, dtype)
        return self.xp.asarray(a, dtype=dtype, device=self.device)

    def to_numpy(self, a: Any) -> np.ndarray:
        """Copy an array of this backend back to host NumPy."""
        return self._to_numpy(a)

    def describe(self) -> dict:
        """Versions, BLAS or GPU facts of this backend, for ``info`` and reports."""
        return _describe(self)


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
    backend = (backend or os.environ.get("SOFTMAX_BACKEND") or DEFAULT_BACKEND[device]).strip().lower()
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
        raise BackendError(f"backend {module!r} was asked for but cannot be imported ({exc}); fix: {hint}") from exc


def _numpy(device: str) -> Backend:
    if device == "gpu":
        raise ValueError(
            "SOFTMAX_BACKEND=numpy runs on the CPU only: use SOFTMAX_DEVICE=cpu, "
            "or SOFTMAX_BACKEND=cupy/torch for the GPU"
        )
    import array_api_compat.numpy as xp

    return Backend("numpy", "cpu", xp, "cpu", _noop, np.asarray)


def _array_api_strict(device: str) -> Backend:
    if device == "gpu":
        raise ValueError("array_api_strict runs on the CPU only: use SOFTMAX_DEVICE=cpu")
    xp = _import("array_api_strict", "pip install array-api-strict")
    return Backend("array_api_strict", "cpu", xp, xp.Device("CPU_DEVICE"), _noop, _from_dlpack)


def _cupy(device: str) -> Backend:
    if device == "cpu":
        raise ValueError("cupy runs on the GPU only: use SOFTMAX_DEVICE=gpu, or SOFTMAX_BACKEND=numpy")
    cupy = _import("cupy", GPU_INSTALL_HINT)
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        dev = cupy.cuda.Device()
        dev.compute_capability  # first real call into the driver
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

    return Backend("cupy", "gpu", xp, dev, sync, cupy.asnumpy)


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
        return Backend("torch", "gpu", xp, dev, torch.cuda.synchronize,
                       lambda a: a.detach().cpu().numpy())
    return Backend("torch", "cpu", xp, torch.device("cpu"), _noop, lambda a: a.detach().numpy())


def _noop() -> None:
    pass


def _from_dlpack(a: Any) -> np.ndarray:
    return np.from_dlpack(a)


_FACTORIES = {"numpy": _numpy, "cupy": _cupy, "torch": _torch, "array_api_strict": _array_api_strict}


def blas_name() -> str:
    """The BLAS NumPy was built with (and its version), as NumPy reports it."""
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy: no dict mode
        return "unknown"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _describe(b: Backend) -> dict:
    import array_api_compat

    info = {
        "backend": b.name,
        "device": b.device_kind,
        "label": b.label,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "array_api_compat": array_api_compat.__version__,
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "blas": blas_name(),
    }
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
