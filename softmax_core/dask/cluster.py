"""The Dask cluster: sessions (a client, and a LocalCluster when softmax-bench starts one),
and what a *call* is on a lazy library.

The Dask backend (:mod:`softmax_core.backends.dask`) runs :mod:`softmax_core.model.softmax`
unchanged on Dask arrays with NumPy chunks: X and y row-chunked, θ one chunk (in memory).
Dask schedules and moves the data; nothing here does.

**What a call is on a lazy library.**  A Dask function returns a task graph at
once; the work happens when it is computed.  So on Dask a measured *call* is
the result computed: ``computed(grad)(X, y, θ)`` builds the graph, runs it on the
cluster and returns θ's gradient as a NumPy-backed array (one chunk, in the
client's memory), as a NumPy call returns its array.  Time it with
:func:`softmax_core.measure.engine.measure` as any other call::

    b = get_backend("cpu", "dask")
    X, y, theta = b.asarray(X_host, "float32"), b.asarray(y_host), b.asarray(theta_host, "float32")
    measure(computed(functools.partial(grad_structured, check=False)), X, y, theta, backend=b)

An SGD epoch is a call the same way: its θ, computed, is the next epoch's input
(:mod:`softmax_core.dask.epoch`).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BackendError, InputError, quoted

DASK_INSTALL_HINT = "pip install 'softmax-bench[dask]' (in a clone: pip install -e '.[dask]')"
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


def positive_env(name: str) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"{name}={text!r} must be a positive whole number")
    return value


def scheduler_address(given: str | None = None) -> str | None:
    """``given``, else ``$SOFTMAX_DASK_SCHEDULER``; None (a local cluster) where neither is set."""
    return given or os.environ.get(ENV_SCHEDULER, "").strip() or None


def start_session(
    scheduler: str | None = None, workers: int | None = None, *, processes: bool = True
) -> DaskSession:
    """Connect to ``scheduler``, or start a LocalCluster of ``workers`` single-threaded workers
    (default: one per core).

    The caller closes it (:meth:`DaskSession.close`, or use
    :func:`softmax_core.backends.dask.session`).
    """
    import_dask()
    from distributed import Client, LocalCluster

    if scheduler:
        return DaskSession(_connect(Client, scheduler), key=("scheduler", scheduler))
    cores = _cores()
    workers = workers or cores
    if workers > cores:
        raise InputError(
            f"a local cluster of {workers} workers is more than this machine's {cores} cores "
            f"(each worker is a process of one thread); fix: {ENV_WORKERS} at most {cores}, or "
            f"{ENV_SCHEDULER} for a cluster of more machines"
        )
    made = cluster = None
    try:
        with ctrl_c_held() as held:
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=processes,
                memory_limit="auto",
                dashboard_address=":0",
                silence_logs=logging.ERROR,
            )
            made = DaskSession(
                Client(cluster, set_as_default=True), cluster, key=("local", workers, processes)
            )
        if held:
            signal.raise_signal(held[0])  # the signal held, taken as the command takes it
    except BaseException:
        if made is not None:
            made.close()
        elif cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()
        raise
    return made


@contextlib.contextmanager
def ctrl_c_held():
    """Hold a Ctrl-C (or SIGTERM) that lands while child processes start (a LocalCluster's
    workers, a pool), and keep those children deaf to Ctrl-C; yields the signals held.

    A terminal's Ctrl-C goes to its whole process group: each worker would end in a traceback
    of its own, and a cluster cut short half-way cannot be closed (distributed's exit hook
    fails on its workers still starting).  So SIGINT is blocked in this thread meanwhile:
    the threads started meanwhile inherit the block, and so do the processes they start (a
    signal mask outlives exec); they are stopped by this process, which alone takes Ctrl-C.
    The caller takes a held signal once what it started can be closed
    (``signal.raise_signal(held[0])``).  A second signal is not held: the start that does not
    end is stopped as the command stops.  Only for the signals that run a Python handler, in
    the main thread; children are kept deaf on POSIX only (``pthread_sigmask``).
    """
    held: list[int] = []
    taken = [s for s in (signal.SIGINT, signal.SIGTERM) if callable(signal.getsignal(s))]
    if threading.current_thread() is not threading.main_thread() or not taken:
        yield held
        return
    previous: dict = {}

    def hold(signum, frame):
        held.append(signum)
        if len(held) > 1:
            for each, handler in previous.items():
                signal.signal(each, handler)
            previous[signum](signum, frame)

    # children of an ignored SIGINT ignore it too; a SIGTERM is held, not blocked: the
    # children stop on theirs
    block = signal.SIGINT in taken and hasattr(signal, "pthread_sigmask")
    if block:  # started first: starting it unblocks SIGINT in the thread that starts it
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
    previous.update({s: signal.signal(s, hold) for s in taken})
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if block else None
    try:
        yield held
    finally:
        if block:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # one pending is held now
        for signum, handler in previous.items():
            if signal.getsignal(signum) is hold:
                signal.signal(signum, handler)


#: Seconds a scheduler has to accept the connection and answer the client's handshake.
CONNECT_DEADLINE_S = 15.0


def _connect(Client, scheduler: str):
    """A Client of ``scheduler``, or BackendError within :data:`CONNECT_DEADLINE_S`: a server
    that accepts and never answers, or answers with something else, is no scheduler."""
    found: dict = {}

    def connect():
        try:
            found["client"] = Client(scheduler, timeout="10s", set_as_default=True)
        except BaseException as exc:  # anything it raises is the reason it is no scheduler
            found["error"] = exc

    thread = threading.Thread(target=connect, daemon=True, name="dask-connect")
    thread.start()
    thread.join(CONNECT_DEADLINE_S)
    if "client" in found:
        return found["client"]
    why = (
        f"{type(found['error']).__name__}: {str(found['error'])[:200]}"
        if "error" in found
        else f"no answer within {CONNECT_DEADLINE_S:g} s"
    )
    raise BackendError(
        f"cannot reach the Dask scheduler at {quoted(scheduler, 60)} ({why}); fix: start it "
        f"('dask scheduler'), or drop --scheduler / unset {ENV_SCHEDULER} for a local cluster"
    )


def shared_session(scheduler: str | None = None, workers: int | None = None) -> DaskSession:
    """The process's session for these settings, started on first use and closed at exit."""
    key = ("scheduler", scheduler) if scheduler else ("local", workers or _cores(), True)
    found = _SESSIONS.get(key)
    if found is not None and found.client.status == "running":
        return found
    made = start_session(scheduler, workers)
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


def open_sessions() -> dict:
    """The shared sessions open now (for :func:`close_sessions_since`)."""
    return dict(_SESSIONS)


def close_sessions_since(before: dict) -> None:
    """Stop the shared sessions started since ``before`` (of :func:`open_sessions`): a command's
    own clusters, not those its caller had open."""
    for key, s in list(_SESSIONS.items()):
        if before.get(key) is not s:
            s.close()


def import_dask():
    try:
        import dask.array  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise BackendError(
            f"backend 'dask' was asked for but cannot be imported ({exc}); fix: {DASK_INSTALL_HINT}"
        ) from exc


def wait_in_flight(client) -> None:
    """Block until every computation this client holds (persisted collections) has finished."""
    for state in list(client.futures.values()):
        if not state.done():
            client.sync(state.wait)


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
    """``fn`` made a call that returns computed results (on ``client``): what :func:`measure`
    times on Dask."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        return materialize(fn(*args, **kwargs), client)

    return call


__all__ = [
    "DaskSession",
    "start_session",
    "scheduler_address",
    "shared_session",
    "close_all",
    "close_sessions_since",
    "open_sessions",
    "computed",
    "ctrl_c_held",
    "materialize",
    "wait_in_flight",
    "DASK_INSTALL_HINT",
]
