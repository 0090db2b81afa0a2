"""The benchmark cases, defined once for the CLI sweep, ``scale`` and the asv suite.

A :class:`Case` is one measurable call (a gradient of one batch, or a whole SGD epoch)
with its sizes and where it runs (BLAS threads, Dask workers, chunks); a :class:`Grid`
expands into cases.  Whether a case may run is :mod:`softmax_core.runs.guard`'s call.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import Backend
from ..errors import InputError, is_whole, whole
from ..model.cost import METHODS, Cost, epoch_cost, gradient_cost, itemsize
from ..model.sgd import sgd_epoch
from ..model.softmax import get_gradient
from ..units import is_finite
from .inputs import inputs, streamed, synthetic_data  # noqa: F401 (synthetic_data re-exported)

KINDS = ("gradient", "epoch")
#: Where a point's inputs come from.  A gradient's X is in memory (``""``) or, for a chunked
#: point, ``stream``: made chunk by chunk inside the call, never whole (the larger-than-memory
#: case; the time includes making the rows).  An epoch runs on ``synthetic`` data or ``mnist``.
DATA_SOURCES = {"gradient": ("", "stream"), "epoch": ("synthetic", "mnist")}
#: The longest time budget (and any deadline or timeout a command takes): a week.
MAX_SECONDS = 7 * 24 * 3600.0
#: MNIST's shape, used for the whole-epoch points.
EPOCH_SAMPLES, EPOCH_FEATURES, EPOCH_CLASSES = 60_000, 784, 10
#: The SGD step size of the epoch points.
EPOCH_LR = 0.1


def _whole(value, least: int, name: str) -> int:
    return whole(value, name, least, f"a whole number >= {least}")


@dataclass(frozen=True)
class Case:
    """One point: ``kind`` (gradient or epoch), ``method``, batch B, n features, k classes;
    ``samples`` examples a call (B for a gradient, the epoch's m rows for an epoch); the BLAS
    threads it runs with (``threads``; None: the pools as they are); the Dask worker processes
    it runs on (``workers``; 0: in this process); and ``chunk_rows`` (0: X whole; else X is
    made and held in chunks of that many rows, the same rows for NumPy and Dask, see
    :mod:`softmax_core.dask.chunked`)."""

    kind: str
    method: str
    batch: int
    features: int
    classes: int
    dtype: str = "float32"
    data: str = ""
    samples: int = 0
    threads: int | None = None
    workers: int = 0
    chunk_rows: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InputError(f"unknown case kind {self.kind!r}: use one of {', '.join(KINDS)}")
        get_gradient(self.method)
        itemsize(self.dtype)  # a dtype NumPy knows
        if np.dtype(str(self.dtype).rsplit(".", 1)[-1]).kind != "f":
            raise InputError(f"dtype must be a float type (float32, float64), got {self.dtype!r}")
        for name, least in (("batch", 1), ("features", 1), ("classes", 2), ("samples", 0)):
            _whole(getattr(self, name), least, name)
        if self.kind == "epoch" and not self.data:
            object.__setattr__(self, "data", "synthetic")
        if self.data not in DATA_SOURCES[self.kind]:
            raise InputError(
                f"a {self.kind} point's data must be one of "
                f"{', '.join(map(repr, DATA_SOURCES[self.kind]))}, got {self.data!r}"
            )
        if self.threads is not None:
            _whole(self.threads, 1, "threads")
        _whole(self.workers, 0, "workers")
        _whole(self.chunk_rows, 0, "chunk_rows")
        if self.data == "stream" and self.method != "structured":
            raise InputError(f"only the structured gradient streams its rows, not {self.method}")
        if self.data == "stream" and not self.chunk_rows:
            raise InputError("a stream point is made chunk by chunk: give it chunk_rows")
        if self.kind == "gradient" or self.data == "mnist" or not self.samples:
            default = self.batch if self.kind == "gradient" else EPOCH_SAMPLES
            object.__setattr__(self, "samples", default)

    @classmethod
    def from_row(cls, row) -> Case | None:
        """The case of a results row (CSV text or numbers), or None if the row is damaged
        (sizes that are not whole numbers from 1 to :data:`MAX_COUNT`, an unknown kind, method
        or dtype).
        Columns an older format lacks take their defaults."""
        try:
            sizes = [_number(row[c]) for c in ("batch", "features", "classes")]
            if not all(s is not None and 1 <= s <= MAX_COUNT for s in sizes):
                return None
            data = row.get("data")
            data = "" if data is None or data != data else str(data)  # NaN when read by pandas
            extra = {
                c: _number(row.get(c)) for c in ("samples", "threads", "workers", "chunk_rows")
            }
            if any(v is False for v in extra.values()):
                return None
            return cls(
                str(row["kind"]),
                str(row["method"]),
                *sizes,
                str(row["dtype"] or "float32"),
                data,
                samples=extra["samples"] or 0,
                threads=extra["threads"],
                workers=extra["workers"] or 0,
                chunk_rows=extra["chunk_rows"] or 0,
            )
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def key(self) -> tuple:
        """Identity of the point, for resuming a sweep."""
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    @property
    def family(self) -> str:
        """Points whose time scales alike with their roofline (one fit of the time model):
        ``kind/method``, with ``/stream`` and ``/dask`` where they apply."""
        return "/".join(
            [self.kind, self.method]
            + ["stream"] * (self.data == "stream")
            + ["dask"] * (self.workers > 0)
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
        """Bytes of X, y and theta in this process before the measured call: none of X for a
        stream (made a chunk at a time, counted as two chunks) or for Dask workers."""
        s = itemsize(self.dtype)
        rows = 2 * min(self.chunk_rows, self.samples) if self.data == "stream" else self.samples
        rows = 0 if self.workers else rows
        return s * (rows * self.features + self.features * self.classes) + 8 * rows

    @property
    def worker_bytes(self) -> int:
        """Bytes of X and y held in the Dask workers' memory (none for a stream)."""
        if not self.workers or self.data == "stream":
            return 0
        return self.samples * (itemsize(self.dtype) * self.features + 8)

    def label(self) -> str:
        data = f" on {self.data}" if self.data else ""
        rows = f" m={self.samples}" if self.kind == "epoch" and self.data != "mnist" else ""
        where = ""
        if self.threads is not None:
            where += f", {threads_text(self.threads)}"
        if self.workers:
            where += f", {self.workers} Dask worker" + "s" * (self.workers > 1)
        if self.chunk_rows:
            where += f", chunks of {self.chunk_rows} rows"
        return (
            f"{self.kind} {self.method} B={self.batch} n={self.features} "
            f"k={self.classes} {self.dtype}{data}{rows}{where}"
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
        The call does its work before it returns (:meth:`Backend.complete`).
        """
        if self.data == "mnist" and data is None:
            raise InputError(f"{self.label()} needs the MNIST arrays: pass data=(X, y)")
        theta0 = 0.01 * np.random.default_rng(0).standard_normal((self.features, self.classes))
        theta = backend.asarray(theta0, self.dtype, copy=True)
        grad = get_gradient(self.method)
        if self.data == "stream":
            return streamed(self, backend, theta)
        X, y = inputs(self, backend, data)
        with backend.current():  # dtypes, shapes and values checked once, at the boundary, by
            # the structured gradient of one example: the naive one's would cost a call's time
            get_gradient("structured")(X[:1, :], y[:1], theta)
        if self.kind == "gradient":
            fn = functools.partial(grad, check=False)
        else:
            epoch = getattr(backend, "sgd_epoch", sgd_epoch)
            fn = functools.partial(epoch, lr=EPOCH_LR, batch=self.batch, grad=grad, check=False)
        return backend.complete(fn), (X, y, theta)


def _number(value):
    """A whole number from a cell; None where empty; False where not a whole number."""
    if value is None or value != value or str(value).strip() == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return int(number) if number.is_integer() and number >= 0 else False


def threads_text(threads: int) -> str:
    """``1 thread``, ``2 threads``."""
    return f"{threads} thread" + "s" * (threads != 1)


#: The largest size or count a grid takes: past it a point's cost is no longer a float.
MAX_COUNT = 10**18


@dataclass(frozen=True)
class Grid:
    """The sweep's grid: every method x batch x classes x features gradient point, plus
    whole epochs of the structured gradient per batch size (on MNIST, or synthetic data of
    each of ``epoch_rows`` rows), each at each BLAS thread count.

    For Dask's scaling (``softmax-bench scale``) the grid has three more axes: ``workers``
    (0: in this process, on the sweep's backend, e.g. NumPy as the baseline; w: a cluster of
    w worker processes), ``chunk_rows`` (the chunk sizes of the Dask points; the in-process
    points are chunked by the first, so both hold the same rows) and ``gradient_data`` (the
    gradient over X in memory and/or over rows made chunk by chunk in the call).  An
    in-process point runs at each thread count; a Dask point with its workers' threads.
    """

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
    #: rows of a synthetic epoch; its SGD batches (empty: ``batches``)
    epoch_rows: tuple[int, ...] = (EPOCH_SAMPLES,)
    epoch_batches: tuple[int, ...] = ()
    #: n and k of a synthetic epoch (MNIST's shape by default; MNIST itself always has it)
    epoch_features: int = EPOCH_FEATURES
    epoch_classes: int = EPOCH_CLASSES
    workers: tuple[int, ...] = (0,)
    chunk_rows: tuple[int, ...] = ()
    #: a gradient's data sources (:data:`DATA_SOURCES`): in memory and/or streamed
    gradient_data: tuple[str, ...] = ("",)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type.startswith("tuple") and not isinstance(value, (tuple, list)):
                raise InputError(f"{f.name} must be a list of values, got {value!r}")
        if isinstance(self.time_budget_s, bool) or not isinstance(
            self.time_budget_s, (int, float, np.integer, np.floating)
        ):
            raise InputError(
                f"time_budget_s must be a number of seconds, got {self.time_budget_s!r}"
            )
        for name in ("methods", "epoch_methods"):
            for m in getattr(self, name):
                get_gradient(m)
            object.__setattr__(self, name, tuple(dict.fromkeys(getattr(self, name))))
        for name, least, empty in (
            ("batches", 1, False),
            ("classes", 1, False),
            ("features", 1, False),
            ("epoch_rows", 1, False),
            ("epoch_batches", 1, True),
            ("workers", 0, False),
            ("chunk_rows", 1, True),
        ):
            values = getattr(self, name)
            if (not values and not empty) or not all(
                is_whole(v, least) and v <= MAX_COUNT for v in values
            ):
                raise InputError(
                    f"{name} must be a non-empty list of whole numbers from {least} to 10^18, "
                    f"got {values!r}"
                )
            # a value given twice is one point, measured once
            object.__setattr__(self, name, tuple(dict.fromkeys(int(v) for v in values)))
        if min(self.classes) < 2:
            raise InputError(
                f"classes must be >= 2 (softmax over one class is constant), got "
                f"{','.join(map(str, self.classes))}; fix: leave out the classes below 2"
            )
        if not self.threads or not all(t is None or is_whole(t) for t in self.threads):
            raise InputError(
                f"threads must be a non-empty list of positive integers, got {self.threads!r}"
            )
        object.__setattr__(
            self,
            "threads",
            tuple(dict.fromkeys(None if t is None else int(t) for t in self.threads)),
        )
        if self.epochs_on not in ("mnist", "synthetic", "none"):
            raise InputError(f"epochs_on must be mnist, synthetic or none, got {self.epochs_on!r}")
        bad = [d for d in self.gradient_data if d not in DATA_SOURCES["gradient"]]
        if bad or not self.gradient_data:
            raise InputError(f"gradient_data must be among '', 'stream', got {self.gradient_data}")
        if (max(self.workers) or "stream" in self.gradient_data) and not self.chunk_rows:
            raise InputError("Dask workers and streamed points need chunk_rows")
        if not (is_finite(self.time_budget_s) and 0 < self.time_budget_s <= MAX_SECONDS):
            raise InputError(
                f"time_budget_s must be a positive number of seconds, at most {MAX_SECONDS:g} "
                f"(a week), got {self.time_budget_s!r}"
            )
        itemsize(self.dtype)

    def cases(self) -> list[Case]:
        """All points, cheapest first within each method, so that the guard's time
        estimates come from the largest point already measured; the variants of one point
        (thread counts, workers, chunk sizes) follow each other, so they are measured side
        by side."""
        grads = [
            Case("gradient", m, b, n, k, self.dtype, data, chunk_rows=self._chunk(data))
            for m in self.methods
            for k in self.classes
            for n in self.features
            for b in self.batches
            for data in self.gradient_data
            if not data or m == "structured"  # only the structured gradient streams
        ]
        mnist = self.epochs_on == "mnist"
        epoch_rows = (EPOCH_SAMPLES,) if mnist else self.epoch_rows
        shape = (
            (EPOCH_FEATURES, EPOCH_CLASSES) if mnist else (self.epoch_features, self.epoch_classes)
        )
        epochs = (
            []
            if self.epochs_on == "none"
            else [
                Case("epoch", m, b, *shape, self.dtype, self.epochs_on, rows)
                for m in self.epoch_methods
                for rows in epoch_rows
                for b in self.epoch_batches or self.batches
            ]
        )
        order = {m: i for i, m in enumerate(METHODS)}
        points = sorted(grads, key=lambda c: (order[c.method], c.cost.flops)) + epochs
        return [v for c in points for v in self._variants(c)]

    def _chunk(self, data: str) -> int:
        """Chunk rows of an in-process point: beside Dask chunked like its points (the same
        rows), and a stream always; else 0 (X whole)."""
        return self.chunk_rows[0] if max(self.workers) or data == "stream" else 0

    def _variants(self, case: Case) -> list[Case]:
        """``case`` at each thread count in this process, then on each Dask cluster at each
        chunk size."""
        out = []
        for w in self.workers:
            if w == 0:
                chunk = self._chunk(case.data)
                out += [
                    dataclasses.replace(case, threads=t, chunk_rows=chunk) for t in self.threads
                ]
            else:
                out += [
                    dataclasses.replace(case, threads=1, workers=w, chunk_rows=c)
                    for c in self.chunk_rows
                ]
        return out


DEFAULT_GRID = Grid()


__all__ = ["Case", "Grid", "DEFAULT_GRID", "METHODS", "KINDS", "DATA_SOURCES", "threads_text"]
