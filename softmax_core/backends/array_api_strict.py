"""array-api-strict on the CPU: the standard and nothing more, to keep the math portable."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .base import USE_CPU, Backend, import_library, tracemalloc_peak


class ArrayApiStrictBackend(Backend):
    name = "array_api_strict"

    def to_numpy(self, a):
        return np.from_dlpack(a)

    _peak = staticmethod(tracemalloc_peak)


def make(device: str) -> ArrayApiStrictBackend:
    if device == "gpu":
        raise InputError(f"array_api_strict runs on the CPU only; fix: {USE_CPU}")
    xp = import_library("array_api_strict", "pip install array-api-strict")
    return ArrayApiStrictBackend("cpu", xp, xp.Device("CPU_DEVICE"))
