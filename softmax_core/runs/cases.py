"""The benchmark cases, defined once for the CLI sweep and the asv suite.

A :class:`Case` is one measurable call (a gradient of one batch, or a whole
SGD epoch) with its sizes; a :class:`Grid` expands into cases; a
:class:`Guard` decides, before a case runs, whether it fits the memory and
time budgets, so that nothing is ever OOM-killed or runs for hours.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import Backend
from ..data import make_synthetic
from ..measure.timemodel import TimeModel
from ..model.cost import METHODS, Cost, epoch_cost, format_bytes, gradient_cost, itemsize
from ..model.softmax import get_gradient, sgd_epoch

KINDS = ("gradient", "epoch")
#: Where a point's inputs come from: gradients always use synthetic data of their shape.
DATA_SOURCES = {"gradient": ("",), "epoch": ("synthetic", "mnist")}
#: MNIST's shape, used for the whole-epoch points.
EPOCH_SAMPLES, EPOCH_FEATURES, EPOCH_CLASSES = 60_000, 784, 10
#: Fraction of free memory a point may plan to use (the rest: inputs, fragmentation, the OS).
MEMORY_FRACTION = {"cpu": 0.5, "gpu": 0.8}


@dataclass(frozen=True)
class Case:
    """One point: ``kind`` (gradient or epoch), ``method``, batch B, n features, k classes,
    and the BLAS threads it runs with (``threads``; None: the pools as they are)."""

    kind: str
    method: str
    batch: int
    features: int
    classes: int
    dtype: str = "float32"
    data: str = ""  # an epoch's data source: synthetic or mnist; empty for a gradient
    samples: int = 0  # examples per call: B for a gradient, m for an epoch
    threads: int | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown case kind {self.kind!r}: use one of {', '.join(KINDS)}")
        get_gradient(self.method)
        itemsize(self.dtype)
        if self.kind == "epoch" and not self.data:
            object.__setattr__(self, "data", "synthetic")
        if self.data not in DATA_SOURCES[self.kind]:
            raise ValueError(
                f"a {self.kind} point's data must be one of "
                f"{', '.join(map(repr, DATA_SOURCES[self.kind]))}, got {self.data!r}"
            )
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise ValueError(f"threads must be a positive whole number, got {self.threads!r}")
        if self.samples == 0:
            object.__setattr__(
                self, "samples", self.batch if self.kind == "gradient" else EPOCH_SAMPLES
            )

    @classmethod
    def from_row(cls, row) -> Case | None:
        """The case of a results row (CSV text or numbers), or None if the row is damaged
        (sizes that are not positive whole numbers, an unknown kind, method or dtype)."""
        try:
            sizes = [float(row[c]) for c in ("batch", "features", "classes")]
            if not all(s.is_integer() and s >= 1 for s in sizes):
                return None
            data = row.get("data")
            data = "" if data is None or data != data else str(data)  # NaN when read by pandas
            threads = row.get("threads")
            if threads is None or threads != threads or str(threads).strip() == "":
                threads = None  # format 2 and older: not recorded
            else:
                threads = float(threads)
                if not threads.is_integer() or threads < 1:
                    return None
                threads = int(threads)
            return cls(
                str(row["kind"]),
                str(row["method"]),
                *(int(s) for s in sizes),
                str(row["dtype"] or "float32"),
                data,
                threads=threads,
            )
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def key(self) -> tuple:
        """Identity of the point, for resuming a sweep."""
        return (
            self.kind,
            self.method,
            self.batch,
            self.features,
            self.classes,
            self.dtype,
            self.data,
            self.threads,
        )

    @property
    def cost(self) -> Cost:
        if self.kind == "gradient":
            return gradient_cost(self.method, self.batch, self.features, self.classes, self.dtype)
        return epoch_cost(
            self.method, self.samples, self.features, self.classes, self.batch, self.dtype
        )

    @property
    def input_bytes(self) -> int:
        """Bytes of X, y and theta, allocated before the measured call."""
        s = itemsize(self.dtype)
        return s * (self.samples * self.features + self.features * self.classes) + 8 * self.samples

    def label(self) -> str:
        data = f" on {self.data}" if self.data else ""
        threads = (
            "" if self.threads is None else f", {self.threads} thread" + "s" * (self.threads > 1)
        )
        return (
            f"{self.kind} {self.method} B={self.batch} n={self.features} "
            f"k={self.classes} {self.dtype}{data}{threads}"
        )

    def prepare(
        self, backend: Backend, data: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[Callable[..., Any], tuple]:
        """Inputs on ``backend`` and the call to measure: ``fn(*args)``.

        ``data`` optionally gives the host (X, y) of an epoch (real MNIST);
        otherwise synthetic data of the case's shape is made.  Every input is a
        fresh, written copy on the device (no lazily mapped zero pages, no
        buffer shared with a cache), and θ holds small random values (seed 0).
        Inputs are checked here once, so the measured call skips the value checks.
        """
        if self.data == "mnist" and data is None:
            raise ValueError(f"{self.label()} needs the MNIST arrays: pass data=(X, y)")
        X, y = (
            data if data is not None else synthetic_data(self.samples, self.features, self.classes)
        )
        Xb = backend.asarray(X, self.dtype, copy=True)
        yb = backend.asarray(y, copy=True)
        theta0 = 0.01 * np.random.default_rng(0).standard_normal((self.features, self.classes))
        theta = backend.asarray(theta0, self.dtype, copy=True)
        grad = get_gradient(self.method)
        grad(Xb[:1, :], yb[:1], theta)  # validate dtypes and shapes once, at the boundary
        if self.kind == "gradient":
            return functools.partial(grad, check=False), (Xb, yb, theta)
        return functools.partial(sgd_epoch, lr=0.1, batch=self.batch, grad=grad, check=False), (
            Xb,
            yb,
            theta,
        )


def threads_text(threads: int) -> str:
    """``1 thread``, ``2 threads``."""
    return f"{threads} thread" + "s" * (threads != 1)


@functools.lru_cache(maxsize=4)
def synthetic_data(m: int, n: int, k: int):
    """Host (X, y) of the given shape, made once per shape (seed 0) and shared."""
    return make_synthetic(m, n, k, seed=0)


@dataclass(frozen=True)
class Grid:
    """The sweep's grid: every method x batch x classes x features gradient point,
    plus whole epochs of the structured gradient on MNIST-shaped data per batch size."""

    methods: tuple[str, ...] = METHODS
    batches: tuple[int, ...] = (1, 8, 32, 96, 256, 1024)
    classes: tuple[int, ...] = (10, 100, 1000)
    features: tuple[int, ...] = (784, 1000)
    dtype: str = "float32"
    epochs_on: str = "synthetic"  # mnist | synthetic | none
    epoch_methods: tuple[str, ...] = ("structured",)
    #: BLAS threads, an axis like the others: each point is measured at each count in turn
    #: (None: the pools as they are)
    threads: tuple[int | None, ...] = (None,)
    #: seconds a point may take: enough for the lecture's naive gradient at n = k = 1000
    #: (its 9 calls), while the costliest naive points are skipped, so that the default
    #: sweep takes minutes on 2 cores
    time_budget_s: float = 25.0

    def __post_init__(self):
        for name in ("methods", "epoch_methods"):
            for m in getattr(self, name):
                get_gradient(m)
        for name in ("batches", "classes", "features"):
            values = getattr(self, name)
            if not values or any(
                isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values
            ):
                raise ValueError(
                    f"{name} must be a non-empty list of positive integers, got {values!r}"
                )
            # a value given twice is one point, measured once
            object.__setattr__(self, name, tuple(dict.fromkeys(int(v) for v in values)))
        for name in ("methods", "epoch_methods"):
            object.__setattr__(self, name, tuple(dict.fromkeys(getattr(self, name))))
        if not self.threads or any(
            t is not None and (isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1)
            for t in self.threads
        ):
            raise ValueError(
                f"threads must be a non-empty list of positive integers, got {self.threads!r}"
            )
        object.__setattr__(
            self,
            "threads",
            tuple(dict.fromkeys(None if t is None else int(t) for t in self.threads)),
        )
        if min(self.classes) < 2:
            raise ValueError(
                f"classes must be >= 2 (softmax over one class is constant), got "
                f"{','.join(map(str, self.classes))}; fix: leave out the classes below 2"
            )
        if self.epochs_on not in ("mnist", "synthetic", "none"):
            raise ValueError(f"epochs_on must be mnist, synthetic or none, got {self.epochs_on!r}")
        if not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be positive, got {self.time_budget_s!r}")
        itemsize(self.dtype)

    def cases(self) -> list[Case]:
        """All points, cheapest first within each method, so that the guard's time
        estimates come from the largest point already measured; a point's thread counts
        follow each other, so they are measured side by side."""
        grads = [
            Case("gradient", m, b, n, k, self.dtype)
            for m in self.methods
            for k in self.classes
            for n in self.features
            for b in self.batches
        ]
        epochs = (
            []
            if self.epochs_on == "none"
            else [
                Case("epoch", m, b, EPOCH_FEATURES, EPOCH_CLASSES, self.dtype, self.epochs_on)
                for m in self.epoch_methods
                for b in self.batches
            ]
        )
        order = {m: i for i, m in enumerate(METHODS)}
        points = sorted(grads, key=lambda c: (order[c.method], c.cost.flops)) + epochs
        return [dataclasses.replace(c, threads=t) for c in points for t in self.threads]


DEFAULT_GRID = Grid()


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

    def predicted_time_s(self, case: Case) -> float:
        """Seconds for one call of ``case``."""
        return self.model.predict(case)

    def skip_reason(self, case: Case, calls: int = CALLS_PER_POINT) -> str | None:
        """Why ``case`` must not run (``calls`` times), or None if it fits."""
        need = case.cost.peak_bytes + case.input_bytes
        if need > self.memory_budget_bytes:
            return f"needs {format_bytes(need)}, budget {format_bytes(self.memory_budget_bytes)}"
        t = self.predicted_time_s(case)
        seconds = t * calls
        if seconds > self.time_budget_s:
            shown = f"{seconds:.1f}" if seconds >= 0.1 else f"{seconds:.2g}"
            return f"predicted {shown} s for {calls} calls, time budget {self.time_budget_s:g} s"
        return None

    def record(self, case: Case, seconds: float) -> None:
        """Learn from a measured call of ``case`` (median seconds)."""
        self.model.record(case, seconds)


def default_memory_budget(backend: Backend) -> int:
    """A safe share of what the device could allocate now."""
    return int(MEMORY_FRACTION[backend.device_kind] * backend.free_memory_bytes())


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except OverflowError:  # an integer past any float
        return False


def check_memory_budget(budget: float, backend: Backend) -> int:
    """``budget`` as whole bytes, refused when it is not a positive finite number or
    exceeds what the device can allocate now (a point planned past that is OOM-killed)."""
    if (
        isinstance(budget, bool)
        or not isinstance(budget, (int, float, np.integer, np.floating))
        or not _finite(budget)
        or budget <= 0
    ):
        raise ValueError(f"memory budget must be a positive finite number of bytes, got {budget!r}")
    free = backend.free_memory_bytes()
    if budget > free:
        where = "GPU memory" if backend.is_gpu else "RAM"
        raise ValueError(
            f"memory budget {format_bytes(budget)} exceeds the {format_bytes(free)} of {where} "
            f"this machine can allocate now; fix: give at most {format_bytes(free)}, or leave "
            f"--memory-budget out for {int(MEMORY_FRACTION[backend.device_kind] * 100)}% of it"
        )
    return int(budget)


__all__ = [
    "Case",
    "Grid",
    "Guard",
    "DEFAULT_GRID",
    "METHODS",
    "KINDS",
    "CALLS_PER_POINT",
    "MIN_SAMPLES",
    "DEFAULT_ROUNDS",
    "LONG_CALL_S",
    "calls_per_point",
    "samples_per_round",
    "default_memory_budget",
    "check_memory_budget",
]
