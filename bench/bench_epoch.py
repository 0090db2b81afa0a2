"""One epoch of minibatch SGD on MNIST-shaped synthetic data (60000 x 784, 10 classes).

Parameters: the grid's epoch methods x batch sizes.
"""

from __future__ import annotations

from softmax_core.cases import EPOCH_CLASSES, EPOCH_FEATURES, Case

from . import common
from .common import GRID


class _Epoch:
    params = [list(GRID.epoch_methods), list(GRID.batches)]
    param_names = ["method", "batch"]
    # B=1 is 60000 steps: seconds on a CPU, longer on a GPU (kernel launches).
    timeout = 300

    def case(self, method: str, batch: int) -> Case:
        return Case("epoch", method, batch, EPOCH_FEATURES, EPOCH_CLASSES, GRID.dtype)


class TimeEpoch(_Epoch):
    """Seconds per epoch (synchronized on a GPU)."""

    repeat = [1, 10, 4.0]  # min samples, max samples, seconds
    min_run_count = 1

    def setup(self, method, batch):
        self.call = common.synchronized_call(self.case(method, batch))

    def time_epoch(self, method, batch):
        self.call()


class TrackEpochThroughput(_Epoch):
    """Training examples per second over one epoch."""

    def setup(self, method, batch):
        case = self.case(method, batch)
        self.samples = case.samples
        self.fn, self.args = common.prepared(case)

    def track_samples_per_s(self, method, batch):
        return self.samples / common.median_time(self.fn, self.args)

    track_samples_per_s.unit = "samples/s"
