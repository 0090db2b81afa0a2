"""One epoch of minibatch SGD on MNIST-shaped synthetic data (60000 x 784, 10 classes).

Parameters: the grid's epoch methods x batch sizes x dtype.  Which of them run: see
:mod:`bench.common`.
"""

from __future__ import annotations

from . import common
from .common import GRID


class Epoch:
    """One SGD epoch (``sgd_epoch``) on the device of ``SOFTMAX_DEVICE``."""

    params = [list(GRID.epoch_methods), list(GRID.batches), [GRID.dtype]]
    param_names = ["method", "batch", "dtype"]
    # B = 1 (full suite only) is 60000 steps: seconds per call, longer on a GPU
    timeout = 300

    def setup(self, method, batch, dtype):
        self.case = common.epoch_case(method, batch, dtype)
        self.fn, self.args = common.prepare(self.case)

    def track_time(self, method, batch, dtype):
        """Seconds per epoch (device time on a GPU): the engine's samples, median and spread."""
        return common.asv_samples(common.measured(self.fn, self.args, self.case.label()))

    track_time.unit = "seconds"
