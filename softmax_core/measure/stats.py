"""Statistics of a measurement: the confidence interval of a median, and the result object.

:class:`Measurement` is what the measuring loop (:mod:`softmax_core.measure.engine`)
returns and what every results row, report and comparison is made from.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

import numpy as np

from ..units import si

#: Convergence target: the CI half-width over the median.
TARGET_REL_CI = 0.02
#: A point is ``stable`` when its CI half-width is within this fraction of its median...
STABLE_REL_CI = 0.05
#: ... and other processes used at most this share of all cores while it was sampled.
MAX_OTHERS_CPU = 0.10
CONFIDENCE = 0.95
#: Fewer samples than this are never ``stable``: [min, max] of 4 covers the median only 87.5%
#: of the time.
MIN_STABLE_SAMPLES = 5
#: Samples are also summarised as this many chronological blocks (their medians),
#: once there are at least two samples a block; fewer samples are each a block.
BLOCKS = 10


def median_ci(times, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Distribution-free confidence interval of the median: two order statistics.

    With n samples, the number below the true median is Binomial(n, 1/2); the
    interval [x_(l), x_(n+1-l)] covers the median with probability
    1 - 2 P(K < l).  ``l`` is the largest rank that keeps that >= ``confidence``.
    Below 6 samples no interval reaches 95%; then [min, max] is returned (its
    coverage is 1 - 2^(1-n): 94% for 5 samples).  NaN for fewer than 2 samples.
    """
    x = np.sort(np.asarray(times, dtype=float))
    n = x.size
    if n < 2:
        return math.nan, math.nan
    rank = _lower_rank(n, confidence)
    return float(x[rank - 1]), float(x[n - rank])


def others_share(raw: tuple[float, float, float]) -> float:
    """Other processes' share of all cores from (their CPU seconds, all cores' seconds,
    seconds forgiven as the counters' resolution), floored at 0."""
    others_s, capacity_s, slack_s = raw
    return max(0.0, (others_s - slack_s) / capacity_s) if capacity_s > 0 else 0.0


def block_medians(times) -> tuple[float, ...]:
    """The medians of :data:`BLOCKS` consecutive runs of ``times`` (in the order taken).

    Samples taken back to back are not independent: a machine shared with other
    virtual machines runs at one speed for a fraction of a second, then at
    another.  The samples of one such stretch agree with each
    other and give a tight interval around a speed the machine held only
    briefly.  Blocks that disagree reveal it; see :attr:`Measurement.ci`.
    """
    x = np.asarray(times, dtype=float)
    if x.size < 2 * BLOCKS:
        return tuple(float(v) for v in x)
    edges = np.linspace(0, x.size, BLOCKS + 1).astype(int)
    return tuple(float(np.median(x[a:b])) for a, b in zip(edges[:-1], edges[1:]))


def _lower_rank(n: int, confidence: float) -> int:
    """The 1-based rank of the lower end of the median's distribution-free interval: the
    binomial CI of the median, as asv_runner.statistics computes it (asv is a test
    dependency only, so the core keeps these lines)."""
    alpha = (1 - confidence) / 2
    if n > 1000:  # normal approximation to the binomial
        z = statistics.NormalDist().inv_cdf(1 - alpha)
        return max(1, int(math.floor(n / 2 - z * math.sqrt(n) / 2)))
    cdf, rank = 0.0, 0
    for j in range(n + 1):  # P(K <= j) for K ~ Binomial(n, 1/2)
        cdf += math.comb(n, j) / 2.0**n
        if cdf > alpha:
            break
        rank = j + 1
    return max(1, rank)


@dataclass(frozen=True)
class Measurement:
    """Seconds per call of one measured call, with the statistics every report prints.

    ``times_s`` holds one entry per sample: the sample's time divided by
    ``loops``.  ``host_times_s`` is the host clock's view where the device's
    clock counts (a GPU), else None.  ``first_s`` is the cold first call.
    """

    times_s: tuple[float, ...]
    loops: int = 1
    first_s: float | None = None
    host_times_s: tuple[float, ...] | None = None
    rounds: int = 1
    #: sampling stopped at its time cap or sample cap before the CI reached its target
    capped: bool = False
    confidence: float = CONFIDENCE
    #: share of all cores' time used by other processes while sampling (None: not watched)
    others_cpu: float | None = None
    #: (other processes' CPU seconds, all cores' seconds, seconds forgiven) behind ``others_cpu``
    others_raw_s: tuple[float, float, float] | None = None
    #: medians of chronological blocks of samples (None: made from ``times_s``);
    #: a pooled measurement keeps each round's blocks
    blocks_s: tuple[float, ...] | None = None

    @classmethod
    def from_samples(cls, times_s, **kw) -> Measurement:
        """A measurement from times taken elsewhere (e.g. the epochs of ``train``)."""
        return cls(tuple(float(t) for t in times_s), **kw)

    @property
    def repeats(self) -> int:
        return len(self.times_s)

    @property
    def median(self) -> float:
        return float(np.median(self.times_s)) if self.times_s else math.nan

    @property
    def blocks(self) -> tuple[float, ...]:
        return self.blocks_s if self.blocks_s is not None else block_medians(self.times_s)

    @property
    def ci(self) -> tuple[float, float]:
        """95% CI of the median: the order-statistic interval of the samples, widened
        to that of the block medians, so a speed that drifted while sampling (or
        between rounds) widens the interval instead of hiding in it."""
        lo, hi = median_ci(self.times_s, self.confidence)
        blo, bhi = median_ci(self.blocks, self.confidence)
        if math.isnan(lo) or math.isnan(blo):
            return lo, hi
        return min(lo, blo), max(hi, bhi)

    @property
    def rel_ci(self) -> float:
        """The CI's larger half-width over the median (inf when there is no CI)."""
        lo, hi = self.ci
        med = self.median
        if not (med > 0) or math.isnan(lo):
            return math.inf
        return max(med - lo, hi - med) / med

    @property
    def contended(self) -> bool:
        """Other processes used more than :data:`MAX_OTHERS_CPU` of the machine meanwhile."""
        return self.others_cpu is not None and self.others_cpu > MAX_OTHERS_CPU

    @property
    def stable(self) -> bool:
        """Interval within ±5% of the median, from at least :data:`MIN_STABLE_SAMPLES`
        samples (fewer give no 95% interval), and the machine not busy meanwhile."""
        return (
            self.repeats >= MIN_STABLE_SAMPLES
            and self.rel_ci <= STABLE_REL_CI
            and not self.contended
        )

    @property
    def min(self) -> float:
        return float(np.min(self.times_s)) if self.times_s else math.nan

    @property
    def iqr(self) -> float:
        if not self.times_s:
            return math.nan
        q1, q3 = np.percentile(self.times_s, [25, 75])
        return float(q3 - q1)

    @property
    def host_median(self) -> float:
        return float(np.median(self.host_times_s)) if self.host_times_s else self.median

    def pooled(self, other: Measurement) -> Measurement:
        """The samples of both, as one measurement (rounds of the same point)."""
        host = None
        if self.host_times_s is not None and other.host_times_s is not None:
            host = self.host_times_s + other.host_times_s
        others = [m.others_cpu for m in (self, other) if m.others_cpu is not None]
        raw = None
        if self.others_raw_s is not None and other.others_raw_s is not None:
            # add the rounds' seconds, then forgive the counters' resolution once
            raw = (
                self.others_raw_s[0] + other.others_raw_s[0],
                self.others_raw_s[1] + other.others_raw_s[1],
                max(self.others_raw_s[2], other.others_raw_s[2]),
            )
        return replace(
            self,
            times_s=self.times_s + other.times_s,
            host_times_s=host,
            loops=max(self.loops, other.loops),
            rounds=self.rounds + other.rounds,
            first_s=self.first_s if self.first_s is not None else other.first_s,
            capped=self.capped and other.capped,
            others_cpu=others_share(raw) if raw else sum(others) / len(others) if others else None,
            others_raw_s=raw,
            blocks_s=self.blocks + other.blocks,
        )

    def row(self) -> dict:
        """The time columns of a results row (see :mod:`softmax_core.runs.resultformat`)."""
        lo, hi = self.ci
        return {
            "time_median_s": self.median,
            "time_ci_low_s": lo,
            "time_ci_high_s": hi,
            "time_min_s": self.min,
            "time_iqr_s": self.iqr,
            "time_first_s": self.first_s,
            "repeats": self.repeats,
            "loops": self.loops,
            "rounds": self.rounds,
            "stable": self.stable,
            "host_time_median_s": self.host_median,
            "others_cpu": self.others_cpu,
        }

    def __str__(self) -> str:
        lo, hi = self.ci
        flag = "" if self.stable else " UNSTABLE"
        if self.contended:
            flag += f" (other processes used {self.others_cpu:.0%} of the CPUs)"
        return (
            f"{si(self.median, 's')} [95% CI {si(lo, 's')}, {si(hi, 's')}] "
            f"n={self.repeats}x{self.loops}{flag}"
        )


__all__ = [
    "Measurement",
    "median_ci",
    "block_medians",
    "others_share",
    "BLOCKS",
    "TARGET_REL_CI",
    "STABLE_REL_CI",
    "MAX_OTHERS_CPU",
    "MIN_STABLE_SAMPLES",
    "CONFIDENCE",
]
