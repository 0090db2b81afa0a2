"""The Dask backend: the same softmax regression on a dask.distributed cluster.

``SOFTMAX_BACKEND=dask`` (or ``--backend dask``) runs :mod:`softmax_core.model.softmax`
unchanged on Dask arrays with NumPy chunks: X and y row-chunked, θ one chunk
(in memory).  Dask schedules and moves the data; nothing here does.

=========================  ==================================================
``SOFTMAX_DASK_SCHEDULER``  address of an existing scheduler
                            (``tcp://host:8786``); unset: a LocalCluster
                            sized to the machine (one single-threaded worker
                            process per core, RAM split between them) starts
                            with the command and stops with it
``SOFTMAX_DASK_WORKERS``    workers of that LocalCluster (default: cores)
``SOFTMAX_DASK_CHUNK_ROWS`` rows per chunk of X and y (default 20000)
=========================  ==================================================

**What a call is on a lazy library.**  A Dask function returns a task graph at
once; the work happens when it is computed.  So on Dask a measured *call* is
the result computed: ``computed(grad)(X, y, θ)`` builds the graph, runs it on the
cluster and returns θ's gradient as a NumPy-backed array (one chunk, in the
client's memory), as a NumPy call returns its array.  Time it with
:func:`softmax_core.measure.engine.measure` as any other call::

    b = get_backend("cpu", "dask")
    X, y, theta = b.asarray(X_host, "float32"), b.asarray(y_host), b.asarray(theta_host, "float32")
    measure(computed(functools.partial(grad_structured, check=False)), X, y, theta, backend=b)

Inputs made by :meth:`DaskBackend.asarray` are already in the workers' memory
(scattered chunk by chunk, waited for), so a call times the computation, not
the upload.  The backend's timer waits for any computation still in flight
(a ``persist``) before it starts and stops, so a call that persists instead of
computing is timed to its end too.  An SGD epoch is a call the same way: its
θ, computed, is the next epoch's input (:func:`time_once`).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backends.base import Backend, BackendError
from .chunked import DEFAULT_CHUNK_ROWS, chunk_bounds

DASK_INSTALL_HINT = "pip install 'softmax-bench[dask]'"
ENV_SCHEDULER, ENV_WORKERS, ENV_CHUNK_ROWS = (
    "SOFTMAX_DASK_SCHEDULER",
    "SOFTMAX_DASK_WORKERS",
    "SOFTMAX_DASK_CHUNK_ROWS",
)


# --------------------------------------------------------------------------- cluster lifecycle


@dataclass
class DaskSession:
    """A client and, when softmax-bench started it, its LocalCluster (closed with the session)."""

    client: Any
    cluster: Any = None
    key: tuple = ()

    @property
    def started_here(self) -> bool:
        return self.cluster is not None

    @property
    def address(self) -> str:
        return self.client.scheduler.address

    def workers(self) -> dict:
        """The scheduler's view of each worker: address -> info (threads, memory limit, metrics)."""
        return dict(self.client.scheduler_info(n_workers=-1)["workers"])

    def close(self) -> None:
        """Close the client, then the cluster if it is ours (its scattered data goes with it)."""
        quiet = logging.getLogger("distributed")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)  # "lost scattered data": the point of closing
        try:
            for thing in (self.client, self.cluster):
                if thing is not None:
                    try:
                        thing.close()
                    except Exception:  # closing at exit: a cluster already gone is fine
                        pass
        finally:
            quiet.setLevel(level)
            if _SESSIONS.get(self.key) is self:  # a private session may share the shared one's key
                del _SESSIONS[self.key]


_SESSIONS: dict[tuple, DaskSession] = {}


def _positive_env(name: str) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name}={text!r} must be a positive whole number")
    return value


def start_session(
    scheduler: str | None = None,
    workers: int | None = None,
    *,
    processes: bool = True,
    threads_per_worker: int = 1,
    memory_limit: str | int = "auto",
) -> DaskSession:
    """Connect to ``scheduler``, or start a LocalCluster of ``workers`` (default: one per core).

    The caller closes it (:meth:`DaskSession.close`, or use :func:`session`).
    """
    _import_dask()
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return DaskSession(
                Client(scheduler, timeout="10s", set_as_default=True), key=("scheduler", scheduler)
            )
        except (OSError, TimeoutError, ValueError) as exc:
            raise BackendError(
                f"cannot reach the Dask scheduler at {scheduler!r} ({exc}); fix: start it "
                f"('dask scheduler'), or drop --scheduler / unset {ENV_SCHEDULER} "
                "for a local cluster"
            ) from None
    import psutil

    workers = workers or psutil.cpu_count() or 1
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=threads_per_worker,
        processes=processes,
        memory_limit=memory_limit,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    return DaskSession(
        Client(cluster, set_as_default=True), cluster, key=("local", workers, processes)
    )


def shared_session(scheduler: str | None = None, workers: int | None = None) -> DaskSession:
    """The process's session for these settings, started on first use and closed at exit."""
    key = ("scheduler", scheduler) if scheduler else ("local", workers or _cores(), True)
    found = _SESSIONS.get(key)
    if found is not None and found.client.status == "running":
        return found
    made = start_session(scheduler, workers)
    made.key = key
    if not _SESSIONS:
        # registered after distributed's own exit hooks, so it runs before them (LIFO)
        atexit.register(close_all)
    _SESSIONS[key] = made
    return made


def _cores() -> int:
    import psutil

    return psutil.cpu_count() or 1


def close_all() -> None:
    """Stop every session this process started (a LocalCluster stops with the command)."""
    for s in list(_SESSIONS.values()):
        s.close()


def _import_dask():
    try:
        import dask.array  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise BackendError(
            f"backend 'dask' was asked for but cannot be imported ({exc}); fix: {DASK_INSTALL_HINT}"
        ) from exc


# --------------------------------------------------------------------------- the backend


@dataclass(frozen=True)
class DaskBackend(Backend):
    """A :class:`Backend` whose arrays are Dask arrays in a cluster's workers."""

    session: Any = field(default=None, repr=False, compare=False)
    chunk_rows: int = DEFAULT_CHUNK_ROWS

    @property
    def client(self):
        return self.session.client

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
        futures: list = [None] * len(pieces)
        for w, addr in enumerate(addresses):  # round-robin: chunk i on worker i mod w
            mine = list(range(w, len(pieces), len(addresses)))
            if mine:
                for i, f in zip(
                    mine, self.client.scatter([pieces[i] for i in mine], workers=[addr], hash=False)
                ):
                    futures[i] = f
        wait(futures)
        meta = np.empty((0,) + host.shape[1:], host.dtype)
        blocks = [
            da.from_delayed(f, shape=p.shape, dtype=host.dtype, meta=meta)
            for f, p in zip(futures, pieces)
        ]
        return blocks[0] if len(blocks) == 1 else da.concatenate(blocks, axis=0)


def dask_backend(
    scheduler: str | None = None,
    workers: int | None = None,
    chunk_rows: int | None = None,
    session_: DaskSession | None = None,
) -> DaskBackend:
    """The Dask backend; arguments left None come from the environment (see the module doc).

    ``session_`` uses a session the caller owns (:func:`session`) instead of the shared one.
    """
    _import_dask()
    import array_api_compat.dask.array as xp

    scheduler = scheduler or os.environ.get(ENV_SCHEDULER, "").strip() or None
    workers = workers or _positive_env(ENV_WORKERS)
    chunk_rows = chunk_rows or _positive_env(ENV_CHUNK_ROWS) or DEFAULT_CHUNK_ROWS
    from .metrics import backend_peak, free_memory

    s = session_ or shared_session(scheduler, workers)
    sync = functools.partial(wait_in_flight, s.client)
    return DaskBackend(
        "dask",
        "cpu",
        xp,
        "cpu",
        sync,
        functools.partial(_to_numpy, client=s.client),
        _peak=functools.partial(backend_peak, s),
        _free_memory=functools.partial(free_memory, s),
        session=s,
        chunk_rows=int(chunk_rows),
    )


class session:
    """``with session(workers=2) as b:`` a :class:`DaskBackend` on a cluster of its own, closed after."""

    def __init__(
        self,
        scheduler: str | None = None,
        workers: int | None = None,
        chunk_rows: int | None = None,
        **cluster_kw,
    ):
        self._args = (scheduler, workers, chunk_rows)
        self._kw = cluster_kw
        self._session: DaskSession | None = None

    def __enter__(self) -> DaskBackend:
        scheduler, workers, chunk_rows = self._args
        self._session = start_session(
            scheduler or os.environ.get(ENV_SCHEDULER, "").strip() or None, workers, **self._kw
        )
        return dask_backend(chunk_rows=chunk_rows, session_=self._session)

    def __exit__(self, *exc) -> None:
        self._session.close()


def wait_in_flight(client) -> None:
    """Block until every computation this client holds (persisted collections) has finished."""
    for state in list(client.futures.values()):
        if not state.done():
            client.sync(state.wait)


def _to_numpy(a: Any, client: Any = None) -> np.ndarray:
    import dask

    return np.asarray(a.compute(scheduler=client) if dask.is_dask_collection(a) else a)


# --------------------------------------------------------------------------- calls


def materialize(result: Any, client: Any = None) -> Any:
    """Compute the Dask arrays in ``result`` (an array, or a tuple/list of them) in one pass.

    Arrays come back as one-chunk Dask arrays around the computed NumPy arrays
    (in this process's memory), so they can enter the next call; 0-d results
    come back as Python floats.  Anything else is returned as it is.  ``client``:
    the cluster to compute on (default: the current client; name it where one
    process holds several, as ``softmax-bench scale`` does).
    """
    import dask
    import dask.array as da

    many = isinstance(result, (tuple, list))
    items = list(result) if many else [result]
    lazy = [i for i, v in enumerate(items) if dask.is_dask_collection(v)]
    if lazy:
        values = dask.compute(*[items[i] for i in lazy], scheduler=client)
        for i, v in zip(lazy, values):
            v = np.asarray(v)
            items[i] = float(v) if v.ndim == 0 else da.from_array(v, chunks=v.shape)
    return type(result)(items) if many else items[0]


def computed(fn: Callable[..., Any], client: Any = None) -> Callable[..., Any]:
    """``fn`` made a call that returns computed results (on ``client``): what :func:`measure` times on Dask."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        return materialize(fn(*args, **kwargs), client)

    return call


#: Steps of an SGD epoch built into one Dask graph before θ is computed (:func:`sgd_epoch`).
SEGMENT_STEPS = 8


def sgd_epoch(
    X,
    y,
    theta,
    lr: float,
    batch: int,
    grad=None,
    *,
    seed: int | None = None,
    check: bool = True,
    segment_steps: int = SEGMENT_STEPS,
    client: Any = None,
):
    """:func:`softmax_core.model.softmax.sgd_epoch`, computed ``segment_steps`` batches at a time.

    The same epoch, the same steps, the same math: each segment is the model's
    ``sgd_epoch`` on rows ``s0:s1`` with ``s0`` a multiple of ``batch``, i.e. on
    exactly the epoch's batches from ``s0`` on, and its θ, computed, starts the
    next (on ``client``, see :func:`materialize`).  With ``seed``, the model's own
    permutation is applied first.  Why:
    each op on a lazy Dask array copies the graph's layer dependencies, so one
    graph for a whole small-batch epoch costs O(steps²) to build (MNIST at
    batch 100: 600 steps, minutes); in segments it is linear.  Returns θ computed.
    """
    from array_api_compat import array_namespace

    from ..model import softmax as model

    grad = grad or model.grad_structured
    xp = array_namespace(X, y, theta)
    X, y = model._epoch_order(xp, X, y, seed)  # the permutation model.sgd_epoch would apply
    rows = int(batch) * max(1, int(segment_steps))
    for s0 in range(0, X.shape[0], rows):
        theta = materialize(
            model.sgd_epoch(
                X[s0 : s0 + rows], y[s0 : s0 + rows], theta, lr, batch, grad, check=check
            ),
            client,
        )
    return theta


def time_once(fn: Callable[..., Any], *args: Any, backend: Backend | None = None, **kwargs: Any):
    """:func:`softmax_core.measure.engine.time_once` of the computed call (the result in memory).

    An epoch (``fn`` is the model's ``sgd_epoch``) runs as :func:`sgd_epoch` here:
    the same epoch, computed in segments.  For ``train(..., timer=...)`` on Dask.
    """
    from ..measure.engine import time_once as _time_once
    from ..model import softmax as model

    client = getattr(backend, "client", None)
    if fn is model.sgd_epoch:
        fn = functools.partial(sgd_epoch, client=client)
    return _time_once(computed(fn, client), *args, backend=backend, **kwargs)


__all__ = [
    "DaskBackend",
    "DaskSession",
    "dask_backend",
    "session",
    "start_session",
    "shared_session",
    "close_all",
    "computed",
    "materialize",
    "sgd_epoch",
    "time_once",
    "wait_in_flight",
    "SEGMENT_STEPS",
    "DASK_INSTALL_HINT",
]
