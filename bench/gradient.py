"""One gradient of the mean loss over a batch: structured, naive, naive_batched.

Parameters: the grid's method x batch B x features n x classes k x dtype, so that every
result names its whole point.  Which of them run: see :mod:`bench.common`.
"""

from __future__ import annotations

from . import common
from .common import GRID


class Gradient:
    """One gradient call on the device of ``SOFTMAX_DEVICE``."""

    params = [
        list(GRID.methods),
        list(GRID.batches),
        list(GRID.features),
        list(GRID.classes),
        [GRID.dtype],
    ]
    param_names = ["method", "batch", "features", "classes", "dtype"]
    # the engine stops sampling after 2 s; the slowest point of the full suite that the
    # guard lets through (20 s predicted for 8 calls) still ends well within this
    timeout = 180

    def setup(self, method, batch, features, classes, dtype):
        self.case = common.gradient_case(method, batch, features, classes, dtype)
        self.fn, self.args = common.prepare(self.case)

    def track_time(self, method, batch, features, classes, dtype):
        """Seconds per call (device time on a GPU): the engine's samples, median and spread."""
        return common.asv_samples(common.measured(self.fn, self.args, self.case.label()))

    track_time.unit = "seconds"

    def track_peak_bytes(self, method, batch, features, classes, dtype):
        """Peak bytes one call allocates above its inputs (tracemalloc on the CPU, a CuPy
        memory hook on the GPU), to hold against the cost model's ``peak_bytes``."""
        return common.peak_bytes(self.fn, self.args)

    track_peak_bytes.unit = "bytes"
