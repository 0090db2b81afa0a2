"""One point of a sweep: its row, and one round of its measurement.

A point's first round takes its cold call on fresh pages and its warm-up; each later round
samples again and pools with the rounds before; the row, with the cost model's and the time
model's predictions beside the measured numbers, is made after its last round.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import sys
import threading
import time
from collections.abc import Callable

from ..backends import Backend
from ..measure.engine import MIN_TIME_S, Measurement
from ..measure.environment import load_average
from ..measure.host_memory import make_room, release_retained_memory
from ..measure.session import thread_limit
from .cases import Case
from .guard import LONG_CALL_S, Guard, samples_per_round

#: A point's sampling stops after this share of the time budget (when it has
#: its minimum samples); the guard keeps the minimum within the budget.
POINT_TIME_SHARE = 0.1


def point_row(case: Case, predicted_s: float) -> dict:
    """The point's columns and its predictions; ``predicted_s`` is the time model's
    prediction made before the point's first round ran (never after it learnt from it)."""
    cost = case.cost
    return {
        "kind": case.kind,
        "method": case.method,
        "batch": case.batch,
        "features": case.features,
        "classes": case.classes,
        "dtype": case.dtype,
        "data": case.data,
        "threads": case.threads,
        "workers": case.workers,
        "chunk_rows": case.chunk_rows,
        "samples": case.samples,
        "predicted_bytes": int(cost.peak_bytes),
        "predicted_lecture_bytes": int(cost.lecture_bytes),
        "predicted_flops": int(cost.flops),
        "predicted_traffic_bytes": int(cost.traffic_bytes),
        "predicted_time_s": predicted_s,
    }


def skipped_row(case: Case, predicted_s: float, reason: str) -> dict:
    return {**point_row(case, predicted_s), "status": "skipped", "reason": reason}


#: Seconds after which a block past its deadline is stopped again, as long as it runs.
STOP_AGAIN_S = 0.5
#: Seconds a stop waits while the garbage collector runs its callbacks.
GC_WAIT_S = 0.01


class Overrun(Exception):
    """A point ran past its time budget and was stopped."""


@contextlib.contextmanager
def deadline(seconds: float):
    """Raise :class:`Overrun` in this (the main) thread once ``seconds`` have passed, and
    every :data:`STOP_AGAIN_S` after that until the block ends.

    A Python-level loop (the naive gradient's over its examples, an epoch's over its steps)
    stops within one of its operations; one long library call ends first.  The stop waits
    while the garbage collector runs its callbacks (distributed keeps state across them), and
    one that Python drops where it runs another callback (a weak reference's) is not printed:
    the next comes :data:`STOP_AGAIN_S` later.  Elsewhere than in the main thread nothing is
    bounded (signals reach only it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    armed = [True]

    def stop(signum, frame):
        if not armed[0]:
            return  # the block has ended
        if _in_gc_callback(frame):
            signal.setitimer(signal.ITIMER_REAL, GC_WAIT_S)
            return
        signal.setitimer(signal.ITIMER_REAL, STOP_AGAIN_S)
        raise Overrun("stopped at its time budget")

    hook = sys.unraisablehook

    def unraisable(info):
        if not isinstance(info.exc_value, Overrun):
            hook(info)

    previous = signal.signal(signal.SIGALRM, stop)
    sys.unraisablehook = unraisable
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        try:  # a stop pending as the block ends may land here, before the first line: then
            armed[0] = False  # the inner block still disarms (the next is STOP_AGAIN_S away)
        finally:
            armed[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            sys.unraisablehook = hook


def _in_gc_callback(frame) -> bool:
    """Whether ``frame`` runs in one of the garbage collector's callbacks."""
    codes = {getattr(getattr(cb, "__func__", cb), "__code__", None) for cb in gc.callbacks}
    while frame is not None and codes:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


def _stopped(exc: BaseException) -> Overrun | None:
    """The :class:`Overrun` behind ``exc``: itself, or the one a library's ``except
    Exception`` turned into another error (``inspect`` makes it a TypeError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, Overrun):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def measure_point(
    case: Case,
    backend: Backend,
    guard: Guard,
    data,
    pooled: dict,
    rounds: int,
    last_round: bool,
    predicted_s: float,
    measure: Callable[..., Measurement],
    spent: dict,
) -> dict | None:
    """One round of ``case``; its row after the last round (None before), or an error row.

    Each round samples for at least ``MIN_TIME_S / rounds`` and at most
    ``POINT_TIME_SHARE`` of the time budget over ``rounds``; the cold call is
    the first round's, on fresh pages, and so is the only warm-up of a call that
    takes :data:`LONG_CALL_S` or more (unless its kept memory had to be handed
    back, see :func:`~softmax_core.measure.host_memory.make_room`).  Whatever the time model
    predicted, the point's rounds together stop at the time budget (:func:`deadline`;
    ``spent`` holds each point's seconds so far): its row is then ``skipped`` and says so."""
    row = point_row(case, predicted_s)
    load_before = load_average()
    first_round = case.key not in pooled
    # a later round hands the memory kept from earlier points back only if the heap could
    # outgrow the budget (host_memory), and then warms up again
    here = not backend.is_gpu and not case.workers  # this process's heap holds the inputs
    refaults = (
        not first_round and here and make_room(guard.memory_need(case), guard.memory_budget_bytes)
    )
    long = not first_round and pooled[case.key].median >= LONG_CALL_S and not refaults
    left = guard.time_budget_s - spent.get(case.key, 0.0)
    start = time.monotonic()
    try:
        with thread_limit(case.threads), deadline(left):  # the deadline ends first
            fn, args = case.prepare(backend, data)
            if first_round and here:
                # the cold call takes fresh pages: what prepare's check call and earlier points
                # left kept goes back first
                release_retained_memory()
            m = measure(
                fn,
                *args,
                backend=backend,
                min_samples=samples_per_round(rounds),
                max_time_s=guard.time_budget_s * POINT_TIME_SHARE / rounds,
                min_time_s=MIN_TIME_S / rounds,
                cold=first_round,
                warm_up=not long,
            )
            peak = backend.peak_bytes(fn, *args) if last_round else None
            del fn, args
    except Exception as exc:  # one failing point (even out of memory) must not end the sweep
        pooled[case.key] = None
        stopped = _stopped(exc)
        if stopped is None:
            return {
                **row,
                "status": "error",
                "reason": f"{type(exc).__name__}: {exc}".replace("\n", " "),
            }
        # not measured for the budget's sake, as a point the guard skips
        took = time.monotonic() - start
        guard.model.record(case, took)  # a call takes at least this long
        total = spent.get(case.key, 0.0) + took  # over all its rounds so far
        why = (
            f"{stopped}: {total:.3g} s of its {guard.time_budget_s:g} s over its rounds (the "
            f"time model predicted {predicted_s:.3g} s a call)"
        )
        return skipped_row(case, predicted_s, why)
    finally:
        spent[case.key] = spent.get(case.key, 0.0) + time.monotonic() - start
    if not first_round:
        m = pooled[case.key].pooled(m)
    pooled[case.key] = m
    if first_round:
        guard.model.record(case, m.median)
    if not last_round:
        return None
    t = m.median
    cost = case.cost
    return {
        **row,
        **m.row(),
        "status": "ok",
        "reason": "",
        "peak_bytes": peak,
        "samples_per_s": case.samples / t,
        "gflops": cost.flops / t / 1e9,
        "gbytes_per_s": cost.traffic_bytes / t / 1e9,
        "load_before": load_before,
        "load_after": load_average(),
    }


__all__ = ["POINT_TIME_SHARE", "Overrun", "deadline", "point_row", "skipped_row", "measure_point"]
