"""NumPy on the CPU (through array-api-compat's namespace)."""

from __future__ import annotations

from ..errors import InputError
from .base import Backend, tracemalloc_peak


class NumpyBackend(Backend):
    name = "numpy"

    _peak = staticmethod(tracemalloc_peak)


def make(device: str) -> NumpyBackend:
    if device == "gpu":
        raise InputError(
            "SOFTMAX_BACKEND=numpy runs on the CPU only: use SOFTMAX_DEVICE=cpu, "
            "or SOFTMAX_BACKEND=cupy/torch for the GPU"
        )
    import array_api_compat.numpy as xp

    return NumpyBackend("cpu", xp, "cpu")
