"""One gradient of the mean loss over a batch: structured, naive, naive_batched.

Parameters: method x batch B x classes k of the grid; the feature count n is
fixed per class, one class per n of the grid (``TimeGradientN784``,
``TimeGradientN1000``, ...), so that each class's table is B x k.
"""

from __future__ import annotations

from softmax_core.cases import Case

from . import common
from .common import GRID


class _Gradient:
    """One gradient at n = ``features``, over the grid's methods, batches and classes."""

    params = [list(GRID.methods), list(GRID.batches), list(GRID.classes)]
    param_names = ["method", "batch", "classes"]
    features = GRID.features[0]
    # naive at k=1000, B=1 takes seconds per call; asv stops a process after this.
    timeout = 120

    def case(self, method: str, batch: int, classes: int) -> Case:
        return Case("gradient", method, batch, self.features, classes, GRID.dtype)


class _TimeGradient(_Gradient):
    """Seconds per gradient (synchronized on a GPU)."""

    # Per round (2 rounds, each its own process): samples until 4 s have passed,
    # at most 10; a call slower than that is timed once per round.
    repeat = [1, 10, 4.0]  # min samples, max samples, seconds
    min_run_count = 1

    def setup(self, method, batch, classes):
        self.call = common.synchronized_call(self.case(method, batch, classes))

    def time_gradient(self, method, batch, classes):
        self.call()


class _TrackGradientMemory(_Gradient):
    """Peak bytes one gradient allocates above its inputs (tracemalloc on the CPU, a
    CuPy memory hook on the GPU), to compare with the cost model's ``peak_bytes``."""

    def setup(self, method, batch, classes):
        self.fn, self.args = common.prepared(self.case(method, batch, classes))

    def track_peak_bytes(self, method, batch, classes):
        return common.peak_bytes(self.fn, self.args)

    track_peak_bytes.unit = "bytes"


class _PeakMemGradient(_Gradient):
    """The process's peak resident memory after one gradient: interpreter, inputs and
    the call's temporaries.  Host memory only, so n/a on a GPU (see track_peak_bytes)."""

    def setup(self, method, batch, classes):
        if common.backend().is_gpu:
            raise NotImplementedError("peakmem_ measures host RSS, not GPU memory; "
                                      "see TrackGradientMemory*.track_peak_bytes")
        self.fn, self.args = common.prepared(self.case(method, batch, classes))

    def peakmem_gradient(self, method, batch, classes):
        self.fn(*self.args)


class _TrackTimeRatio(_Gradient):
    """How many times slower than the structured gradient a Jacobian method is."""

    params = [[m for m in GRID.methods if m != "structured"], list(GRID.batches), list(GRID.classes)]

    def setup(self, method, batch, classes):
        self.slow = common.prepared(self.case(method, batch, classes))
        self.fast = common.prepared(self.case("structured", batch, classes))

    def track_time_ratio(self, method, batch, classes):
        return common.median_time(*self.slow) / common.median_time(*self.fast)

    track_time_ratio.unit = "ratio"


def _per_features(*bases):
    """One subclass of each base per n of the grid: ``_TimeGradient`` -> ``TimeGradientN784``."""
    classes = {}
    for base in bases:
        for n in GRID.features:
            name = f"{base.__name__.lstrip('_')}N{n}"
            classes[name] = type(name, (base,), {"features": n, "__doc__": f"{base.__doc__} n = {n}."})
    return classes


globals().update(_per_features(_TimeGradient, _TrackGradientMemory, _PeakMemGradient, _TrackTimeRatio))
