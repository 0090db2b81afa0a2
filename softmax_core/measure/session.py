"""A measurement session: the process state every measurement is taken in (BLAS threads, the
host allocator's policy, the backend settled), set on entry and restored on exit; see
docs/measurement.md, "The measuring loop".  ``measure``, ``measure_side_by_side`` and
``time_once`` open one for their own duration when none is active.  Sessions nest (close them
in the reverse order): an inner one for the same backend only changes what it asks for.
"""

from __future__ import annotations

import contextlib

from ..errors import whole
from . import host_memory

_active: list[MeasurementSession] = []


class MeasurementSession:
    """``with MeasurementSession(backend, threads=1):`` measure in a defined state.

    ``threads``: BLAS threads for the session (None: leave the pools as they are).
    """

    def __init__(self, backend, *, threads: int | None = None):
        if threads is not None:
            threads = whole(threads, "threads", rule="a positive integer")
        self.backend, self.threads = backend, threads
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> MeasurementSession:
        if self._stack is not None:
            raise RuntimeError("this measurement session is open already: open a new one")
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(thread_limit(self.threads))
            if not self.backend.is_gpu and self.backend.name != "dask":
                if host_memory.retain_freed_memory(owner=self):
                    stack.callback(host_memory.restore_default_policy, owner=self)
            self.backend.settle()
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        _active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        if self not in _active:
            return
        _active.remove(self)
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()


def blas_threads() -> int | None:
    """The threads of this process's BLAS and OpenMP pools now (the largest pool's), or None
    where none is loaded."""
    from threadpoolctl import threadpool_info

    counts = [pool["num_threads"] for pool in threadpool_info()]
    return max(counts) if counts else None


def thread_limit(threads: int | None) -> contextlib.AbstractContextManager:
    """The BLAS and OpenMP pools limited to ``threads`` inside the ``with`` block, restored
    after it (None: left as they are)."""
    if threads is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def active(backend=None) -> MeasurementSession | None:
    """The innermost open session (for ``backend``, when given), or None."""
    for s in reversed(_active):
        if backend is None or s.backend.label == backend.label:
            return s
    return None


def ensure(backend) -> contextlib.AbstractContextManager:
    """The active session for ``backend`` if there is one (left open), else a new one
    that closes at the end of the ``with`` block."""
    found = active(backend)
    return contextlib.nullcontext(found) if found else MeasurementSession(backend)


__all__ = ["MeasurementSession", "active", "blas_threads", "ensure", "thread_limit"]
