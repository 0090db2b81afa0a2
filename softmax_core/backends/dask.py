"""Dask on a dask.distributed cluster: the same math on row-chunked arrays in its workers.

=========================  ==================================================
``SOFTMAX_DASK_SCHEDULER``  address of an existing scheduler
                            (``tcp://host:8786``); unset: a LocalCluster
                            sized to the machine (one single-threaded worker
                            process per core, RAM split between them) starts
                            with the command and stops with it
``SOFTMAX_DASK_WORKERS``    workers of that LocalCluster (default: cores)
``SOFTMAX_DASK_CHUNK_ROWS`` rows per chunk of X and y (default 20000)
=========================  ==================================================

Inputs made by :meth:`DaskBackend.asarray` are in the workers' memory (scattered chunk by
chunk, waited for), so a call times the computation, not the upload.  The backend's timer
waits for any computation still in flight (a ``persist``) before it starts and stops.  What
a *call* is on a lazy library, and the cluster's life: :mod:`softmax_core.dask.cluster`.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..dask.chunked import DEFAULT_CHUNK_ROWS, chunk_bounds
from ..dask.cluster import (
    ENV_CHUNK_ROWS,
    ENV_WORKERS,
    DaskSession,
    computed,
    import_dask,
    positive_env,
    scheduler_address,
    shared_session,
    start_session,
    wait_in_flight,
)
from ..dask.metrics import cluster_threads, worker_peaks
from ..errors import InputError
from .base import USE_CPU, Backend, host_available_bytes

#: Seconds ``asarray`` waits for a worker where the scheduler has none.
WORKER_WAIT_S = 30.0


class DaskBackend(Backend):
    """A :class:`Backend` whose arrays are Dask arrays in a cluster's workers."""

    name = "dask"

    def __init__(self, xp, session: DaskSession, chunk_rows: int = DEFAULT_CHUNK_ROWS):
        super().__init__("cpu", xp, "cpu")
        self.session, self.chunk_rows = session, int(chunk_rows)

    @property
    def client(self):
        return self.session.client

    def synchronize(self) -> None:
        wait_in_flight(self.client)

    def current(self):
        return self.client.as_current()

    def complete(self, fn):
        """``fn`` computed on this backend's cluster (:func:`~softmax_core.dask.cluster.computed`):
        a Dask call returns a graph until something computes it."""
        return computed(fn, self.client)

    def sgd_epoch(self, X, y, theta, lr, batch, grad=None, *, seed=None, check=True):
        """The model's epoch computed a few steps at a time on this cluster
        (:func:`softmax_core.dask.epoch.sgd_epoch`: one graph of a whole epoch is quadratic)."""
        from ..dask.epoch import sgd_epoch

        return sgd_epoch(X, y, theta, lr, batch, grad, seed=seed, check=check, client=self.client)

    @property
    def workers(self) -> int:
        """Worker processes of the cluster."""
        return len(self.session.workers())

    def to_numpy(self, a: Any) -> np.ndarray:
        import dask

        return np.asarray(a.compute(scheduler=self.client) if dask.is_dask_collection(a) else a)

    def settle(self) -> None:
        """Dask's math runs in its workers, which this process cannot settle."""

    def _peak(self, fn, args) -> int:
        """The largest rise of one worker's peak RSS during the computed call."""
        peaks, result = worker_peaks(self.session, fn, *args)
        del result
        return int(max(0, peaks.max_above))

    def free_memory_bytes(self) -> int:
        """Σ (memory limit − process memory) over the workers, at most the host's available
        memory for a local cluster; the host's available memory where workers have no limit."""
        workers = self.session.workers().values()
        limits = [int(w.get("memory_limit") or 0) for w in workers]
        if not limits or min(limits) <= 0:
            return host_available_bytes()
        free = sum(
            max(0, lim - int(w["metrics"].get("memory", 0))) for lim, w in zip(limits, workers)
        )
        return min(free, host_available_bytes()) if self.session.started_here else free

    def _describe_device(self) -> dict:
        import distributed

        s = self.session
        workers = s.workers().values()
        return {
            "distributed": distributed.__version__,
            "scheduler": s.address,
            "cluster": "LocalCluster started by softmax-bench" if s.started_here else "existing",
            "workers": len(workers),
            "threads": cluster_threads(s),
            "worker_memory_limit_bytes": sorted(int(w.get("memory_limit") or 0) for w in workers),
            "chunk_rows": self.chunk_rows,
        }

    def whole_array(self, a: Any, dtype: Any = None) -> Any:
        """In one chunk: chunks of a few rows would make the probe's GEMM a graph of millions of
        tasks, measuring the scheduler instead of a worker's ceilings."""
        whole = copy.copy(self)
        whole.chunk_rows = max(len(a), 1)
        return whole.asarray(a, dtype)

    def asarray(self, a: Any, dtype: Any = None, *, copy: bool | None = None) -> Any:
        """A Dask array in the workers' memory, row-chunked by :attr:`chunk_rows`.

        Host data is scattered to the workers chunk by chunk (round-robin), and
        waited for: it is there, written, before any timed call.  A Dask array
        is cast (lazily) where ``dtype`` asks; ``copy`` is moot (Dask arrays are
        never written in place).
        """
        import dask.array as da
        from distributed import wait

        np_dtype = None if dtype is None else np.dtype(dtype)
        if isinstance(a, da.Array):
            return a if np_dtype is None or a.dtype == np_dtype else a.astype(np_dtype)
        host = np.array(a, dtype=np_dtype, copy=True)
        if host.ndim == 0 or host.shape[0] == 0:
            return da.from_array(host)
        bounds = chunk_bounds(host.shape[0], self.chunk_rows)
        pieces = [host[s:e] for s, e in bounds]
        addresses = sorted(self.session.workers())
        if not addresses:  # a scheduler between workers (one gone, the next not yet joined)
            with contextlib.suppress(TimeoutError):  # said below
                self.client.wait_for_workers(1, timeout=WORKER_WAIT_S)
            addresses = sorted(self.session.workers())
        if not addresses:
            raise InputError(
                f"the Dask scheduler at {self.session.address} has had no workers for "
                f"{WORKER_WAIT_S:g} s; fix: start workers for it, or unset SOFTMAX_DASK_SCHEDULER "
                "for a local cluster"
            )
        futures: list = [None] * len(pieces)
        for w, addr in enumerate(addresses):  # round-robin: chunk i on worker i mod w
            mine = list(range(w, len(pieces), len(addresses)))
            if mine:
                scattered = self.client.scatter(
                    [pieces[i] for i in mine], workers=[addr], hash=False
                )
                for i, f in zip(mine, scattered):
                    futures[i] = f
        wait(futures)
        meta = np.empty((0,) + host.shape[1:], host.dtype)
        blocks = [
            da.from_delayed(f, shape=p.shape, dtype=host.dtype, meta=meta)
            for f, p in zip(futures, pieces)
        ]
        return blocks[0] if len(blocks) == 1 else da.concatenate(blocks, axis=0)


def dask_backend(chunk_rows: int | None = None, session_: DaskSession | None = None) -> DaskBackend:
    """The Dask backend; what is left None comes from the environment (see the module doc).

    ``session_`` uses a session the caller owns (:func:`session`) instead of the shared one.
    """
    import_dask()
    import array_api_compat.dask.array as xp

    workers = positive_env(ENV_WORKERS)
    chunk_rows = chunk_rows or positive_env(ENV_CHUNK_ROWS) or DEFAULT_CHUNK_ROWS
    return DaskBackend(xp, session_ or shared_session(scheduler_address(), workers), chunk_rows)


def make(device: str) -> DaskBackend:
    if device == "gpu":
        raise InputError(f"dask runs on the CPU here (NumPy chunks on its workers); fix: {USE_CPU}")
    return dask_backend()


@contextlib.contextmanager
def session(
    scheduler: str | None = None,
    workers: int | None = None,
    chunk_rows: int | None = None,
    *,
    processes: bool = True,
) -> Iterator[DaskBackend]:
    """``with session(workers=2) as b:`` a :class:`DaskBackend` on a cluster of its own,
    closed after."""
    own = start_session(scheduler_address(scheduler), workers, processes=processes)
    try:
        yield dask_backend(chunk_rows, own)
    finally:
        own.close()
