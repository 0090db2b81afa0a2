"""The array-API layer's cost: an epoch of sgd_epoch against a plain NumPy loop.

The goal is within 10% (``softmax-bench overhead`` prints the same on real MNIST).
"""

from __future__ import annotations

from softmax_core.cases import EPOCH_CLASSES, EPOCH_FEATURES, EPOCH_SAMPLES, synthetic_data
from softmax_core.reference import epoch_overhead

from . import common


class TrackEpochOverhead:
    """Percent by which sgd_epoch is slower than the hand-written NumPy epoch (batch 100)."""

    timeout = 300

    def setup(self):
        if common.backend().name != "numpy":
            raise NotImplementedError("the overhead is measured against NumPy on the CPU")
        self.X, self.y = synthetic_data(EPOCH_SAMPLES, EPOCH_FEATURES, EPOCH_CLASSES)

    def track_epoch_overhead(self):
        return 100 * epoch_overhead(self.X, self.y, batch=100, rounds=9).overhead

    track_epoch_overhead.unit = "%"
