"""Array backends: which array library runs the math, on which device."""

from .base import (
    BACKENDS,
    DEFAULT_BACKEND,
    DEVICES,
    Backend,
    BackendError,
    get_backend,
    host_available_bytes,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "DEVICES",
    "Backend",
    "BackendError",
    "get_backend",
    "host_available_bytes",
]
