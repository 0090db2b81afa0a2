"""The guard: before a point runs, whether it fits the memory and time budgets, so that
nothing is ever OOM-killed or runs for hours; and how many calls a point makes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..backends import Backend
from ..errors import InputError
from ..measure.timemodel import TimeModel
from ..units import is_finite, si
from .cases import Case

#: Fraction of free memory a point may plan to use (the rest: inputs, fragmentation, the OS).
MEMORY_FRACTION = {"cpu": 0.5, "gpu": 0.8}


#: Samples a point takes at least, over all its rounds.
MIN_SAMPLES = 5
#: Rounds a sweep measures each point in by default (interleaved, minutes apart).
DEFAULT_ROUNDS = 3


def samples_per_round(rounds: int = 1) -> int:
    """Least samples of one round: :data:`MIN_SAMPLES` shared out, at least 2 a round."""
    return max(2, math.ceil(MIN_SAMPLES / rounds))


#: A call this long is warm from its first call on in a later round: no warm-up call there.
LONG_CALL_S = 0.25


def calls_per_point(rounds: int = 1, long: bool = False) -> int:
    """Calls a point makes at least: the cold call; one warm-up call in each round
    (in the first only, for ``long`` calls, see :data:`LONG_CALL_S`); each round's
    samples (each at least one call); the peak-memory pass."""
    warm_ups = 1 if long else rounds
    return 1 + warm_ups + rounds * samples_per_round(rounds) + 1


CALLS_PER_POINT = calls_per_point(1)


@dataclass
class Guard:
    """Decides whether a case may run: memory first, then time.

    Memory: the cost model's peak plus the inputs, against ``memory_budget_bytes``.
    Time: the :class:`~softmax_core.measure.timemodel.TimeModel`'s prediction for one
    call, times the calls a point makes, against ``time_budget_s``.  Every case
    is checked, the first of each method included (the model has a
    conservative default before it has measured anything).
    """

    memory_budget_bytes: int
    time_budget_s: float
    model: TimeModel

    def memory_need(self, case: Case) -> int:
        """Bytes the point holds at once where it runs: the call's own peak, its inputs, and on
        the CPU in this process the host data they were copied from as well (the kept
        synthetic data or MNIST's arrays; on a GPU those are in host memory, not the
        device's); a Dask point's inputs in its workers."""
        copies = 2 if self.model.device_kind == "cpu" and not case.workers else 1
        inputs = case.input_bytes if case.data == "stream" else copies * case.input_bytes
        return int(case.cost.peak_bytes + inputs + case.worker_bytes)

    def skip_reason(
        self, case: Case, calls: int = CALLS_PER_POINT, memory_budget: int | None = None
    ) -> str | None:
        """Why ``case`` must not run (``calls`` times), or None if it fits; ``memory_budget``:
        where the point runs, if not :attr:`memory_budget_bytes` (a Dask cluster's)."""
        budget = self.memory_budget_bytes if memory_budget is None else memory_budget
        need = self.memory_need(case)
        if need > budget:
            return f"needs {si(need, 'B')}, budget {si(budget, 'B')}"
        seconds = self.model.predict(case) * calls
        if seconds > self.time_budget_s:
            shown = f"{seconds:.1f}" if seconds >= 0.1 else f"{seconds:.2g}"
            return f"predicted {shown} s for {calls} calls, time budget {self.time_budget_s:g} s"
        return None


def default_memory_budget(backend: Backend) -> int:
    """A safe share of what the device could allocate now."""
    return int(MEMORY_FRACTION[backend.device_kind] * backend.free_memory_bytes())


def check_memory_budget(budget: float, backend: Backend) -> int:
    """``budget`` as whole bytes, refused when it is not a positive finite number or
    exceeds what the device can allocate now (a point planned past that is OOM-killed)."""
    if (
        isinstance(budget, bool)
        or not isinstance(budget, (int, float, np.integer, np.floating))
        or not is_finite(budget)
        or budget <= 0
    ):
        raise InputError(f"memory budget must be a positive finite number of bytes, got {budget!r}")
    free = backend.free_memory_bytes()
    if budget > free:
        where = "GPU memory" if backend.is_gpu else "RAM"
        raise InputError(
            f"memory budget {si(budget, 'B')} exceeds the {si(free, 'B')} of {where} "
            f"this machine can allocate now; fix: give at most {si(free, 'B')}, or leave "
            f"--memory-budget out for {int(MEMORY_FRACTION[backend.device_kind] * 100)}% of it"
        )
    return int(budget)


__all__ = [
    "Guard",
    "CALLS_PER_POINT",
    "MIN_SAMPLES",
    "DEFAULT_ROUNDS",
    "LONG_CALL_S",
    "MEMORY_FRACTION",
    "calls_per_point",
    "samples_per_round",
    "default_memory_budget",
    "check_memory_budget",
]
