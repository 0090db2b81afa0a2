"""Several calls measured side by side, in alternating rounds: a burst of load or a change
of clock speed hits all of them alike, and their ratios are taken within a round."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..backends import Backend, get_backend
from ..errors import InputError, InputTypeError
from . import session
from .cpuwatch import OthersCPU
from .engine import Sampler, check_args, gc_off
from .engine import converged as _converged
from .stats import TARGET_REL_CI, Measurement


@dataclass(frozen=True)
class SideBySide:
    """Calls measured in alternating rounds: each call's :class:`Measurement`, and
    per-round ratios (one call's sample over another's in the same round)."""

    measurements: dict[str, Measurement]

    def ratio(self, a: str, b: str) -> Measurement:
        """a / b, round by round, as a Measurement of ratios: median, CI, spread."""
        ta, tb = self.measurements[a].times_s, self.measurements[b].times_s
        return Measurement.from_samples([x / y for x, y in zip(ta, tb)])


def measure_side_by_side(
    calls: dict[str, tuple[Callable[..., Any], tuple]],
    *,
    backend: Backend | None = None,
    target: float = TARGET_REL_CI,
    min_rounds: int = 21,
    max_rounds: int = 10_000,
    max_time_s: float = 30.0,
    warmup_s: float = 0.05,
    min_sample_s: float = 1e-3,
) -> SideBySide:
    """Measure several calls as :func:`measure` does, one sample of each per round.

    The calls alternate (their order reverses every round), so a burst of load
    or a frequency change hits all of them alike; ratios are taken within a
    round.  Sampling stops when every call's median has converged to
    ``target`` after ``min_rounds``, or at ``max_time_s`` / ``max_rounds``.
    """
    if not calls:
        raise InputError("calls must name at least one call")
    for name, call in calls.items():
        if not (isinstance(call, tuple) and len(call) == 2):
            raise InputTypeError(f"calls[{name!r}] must be a (fn, args) pair")
        check_args(call[0], min_rounds, max_rounds, max_time_s, target, warmup_s, min_sample_s)
    backend = backend or get_backend()
    samplers = {
        name: Sampler(fn, tuple(args), backend, min_sample_s) for name, (fn, args) in calls.items()
    }
    with session.ensure(backend):
        return _side_by_side(samplers, min_rounds, max_rounds, max_time_s, target, warmup_s)


def _side_by_side(samplers, min_rounds, max_rounds, max_time_s, target, warmup_s) -> SideBySide:
    with gc_off():
        for s in samplers.values():
            s.cold()
            s.warm_up(warmup_s, max(max_time_s / 8, warmup_s))
        order = list(samplers.values())
        start = time.perf_counter()
        others = OthersCPU()
        rounds = 0
        while True:
            for s in order if rounds % 2 == 0 else reversed(order):
                s.sample()
            rounds += 1
            converged = all(_converged(s.times, target) for s in order)
            if rounds >= max_rounds or (
                rounds >= min_rounds and (converged or time.perf_counter() - start >= max_time_s)
            ):
                return SideBySide(
                    {name: s.result(not converged, others) for name, s in samplers.items()}
                )


__all__ = ["SideBySide", "measure_side_by_side"]
