"""The array-API layer's cost: an epoch of ``sgd_epoch`` against the tuned plain NumPy loop.

The goal is within 5% (``softmax-bench sidebyside`` measures the same on real MNIST).
"""

from __future__ import annotations

import math

from . import common
from .library import EPOCH_CLASSES, EPOCH_FEATURES, EPOCH_SAMPLES, epoch_overhead, synthetic_data

#: Batch size of the overhead check (the README's MNIST training).
BATCH = 100
#: At least this many alternating rounds, more until the medians converge, at most MAX_TIME_S.
ROUNDS = 7
MAX_TIME_S = 5.0


class EpochOverhead:
    """sgd_epoch's time over the tuned NumPy loop's, per alternating round (1.05: 5% slower)."""

    # three epochs a round; on a machine that others load, an epoch can take ten times longer
    timeout = 300

    def setup(self):
        if common.backend().name != "numpy":
            raise NotImplementedError("the overhead is measured against NumPy on the CPU")
        self.X, self.y = synthetic_data(EPOCH_SAMPLES, EPOCH_FEATURES, EPOCH_CLASSES)

    def track_ratio(self):
        """The per-round ratios: asv shows their median and spread (4 decimals: asv prints a
        unit it does not know as the bare number)."""
        quick, asv_rounds = common.asv_quick(), common.asv_rounds()
        # over asv's rounds (-a rounds=N) each shares out the alternating rounds and the time,
        # as track_time's points do; still at least ASV_MIN_SAMPLES ratios in all
        rounds = 1 if quick else math.ceil(max(ROUNDS, common.ASV_MIN_SAMPLES) / asv_rounds)
        result = epoch_overhead(
            self.X,
            self.y,
            batch=BATCH,
            rounds=rounds,
            max_time_s=0 if quick else MAX_TIME_S / asv_rounds,
        )
        ratio = result.ratio("numpy")
        return {"samples": [round(r, 4) for r in ratio.times_s], "number": 1}

    track_ratio.unit = "ratio"
