"""A measurement session: the process state every measurement is taken in, set on entry and
restored on exit.

It owns three things that change the process beyond one call:

* **BLAS threads**: ``threads`` limits the BLAS and OpenMP pools (threadpoolctl); on exit
  they are what they were.
* **the host allocator's policy**: on the CPU the process keeps what it frees
  (:func:`~softmax_core.measure.host_memory.retain_freed_memory`), so a call that allocates
  gigabytes finds its pages mapped, as a GPU's memory pool does; on exit glibc's defaults
  are back (:func:`~softmax_core.measure.host_memory.restore_default_policy`).
* **settling**: the backend's library is brought to its steady state
  (:meth:`~softmax_core.backends.base.Backend.settle`, once per process).

``measure``, ``measure_side_by_side`` and ``time_once`` run inside the active session, or
open one for their own duration when there is none, so a number is always taken in this
state; the sweep and ``train`` open one around all their work.  Sessions nest (close them
in the reverse order): an inner one for the same backend only changes what it asks for.
"""

from __future__ import annotations

import contextlib

from ..errors import InputError
from . import host_memory

_active: list[MeasurementSession] = []


class MeasurementSession:
    """``with MeasurementSession(backend, threads=1):`` measure in a defined state.

    ``threads``: BLAS threads for the session (None: leave the pools as they are).
    """

    def __init__(self, backend, *, threads: int | None = None):
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise InputError(f"threads must be a positive integer, got {threads!r}")
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
