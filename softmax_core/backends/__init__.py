"""Array backends: which array library runs the math, on which device (``SOFTMAX_DEVICE``,
``SOFTMAX_BACKEND``: see :func:`get_backend`; Dask's variables: docs/dask.md).

One adapter module per library (:mod:`.numpy`, :mod:`.array_api_strict`, :mod:`.cupy`,
:mod:`.torch`, :mod:`.dask`), each with a :class:`~.base.Backend` subclass and a
``make(device)``; :func:`get_backend` is the one registry.
"""

from __future__ import annotations

import importlib
import os

from ..errors import InputError
from .base import Backend, BackendError, EventTimer, PeakCounter, host_available_bytes

DEVICES = ("cpu", "gpu")
BACKENDS = ("numpy", "cupy", "torch", "array_api_strict", "dask")
DEFAULT_BACKEND = {"cpu": "numpy", "gpu": "cupy"}


def get_backend(device: str | None = None, backend: str | None = None) -> Backend:
    """Return the backend chosen by arguments or, where None, the environment.

    Parameters
    ----------
    device : {"cpu", "gpu"}, optional
        Defaults to ``$SOFTMAX_DEVICE`` or ``cpu``.
    backend : {"numpy", "cupy", "torch", "array_api_strict", "dask"}, optional
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
        raise InputError(
            f"SOFTMAX_DEVICE={device!r} is not a device: use one of {', '.join(DEVICES)}"
        )
    name = (backend or os.environ.get("SOFTMAX_BACKEND") or DEFAULT_BACKEND[device]).strip()
    name = name.lower().replace("-", "_")
    if name not in BACKENDS:
        raise InputError(
            f"SOFTMAX_BACKEND={name!r} is not a backend: use one of {', '.join(BACKENDS)}"
        )
    return importlib.import_module(f"{__name__}.{name}").make(device)


__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "DEVICES",
    "Backend",
    "BackendError",
    "EventTimer",
    "PeakCounter",
    "get_backend",
    "host_available_bytes",
]
