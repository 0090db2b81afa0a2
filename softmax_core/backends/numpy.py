"""NumPy on the CPU (through array-api-compat's namespace)."""

from __future__ import annotations

from ..errors import InputError
from .base import USE_CPU, Backend, tracemalloc_peak


class NumpyBackend(Backend):
    name = "numpy"

    _peak = staticmethod(tracemalloc_peak)


def make(device: str) -> NumpyBackend:
    if device == "gpu":
        raise InputError(
            f"numpy runs on the CPU only; fix: {USE_CPU}, or cupy or torch for the GPU "
            "(--backend, or SOFTMAX_BACKEND)"
        )
    import array_api_compat.numpy as xp

    return NumpyBackend("cpu", xp, "cpu")
