"""The gate's statistic: ratios within adjacent pairs, their median's interval, the verdicts.

Each pair is one sample of BASE and one of HEAD taken back to back (their order alternates,
A B B A ...), so a drift of the host's speed hits both sides of a pair alike and cancels in
its ratio HEAD / BASE.  The second sample of a pair follows the other worker, the first its
own (caches hold its data), so two adjacent pairs, one of each order, are taken together: the
geometric mean of their ratios (a quad, A B B A) cancels that order effect and a linear drift.
A point's estimate is the median of its quads, with the distribution-free interval of a median
(:func:`softmax_core.measure.stats.median_ci`) at :data:`CONFIDENCE`.  A family's (structured
gradient, naive gradient, epoch) is the geometric mean of its points' medians; its interval
combines theirs in log space, each point's half-width read as :data:`CONFIDENCE`'s multiple of
a standard error.

The verdict with threshold t (the smallest slowdown the gate must catch):

* ``SLOWER``: the whole interval lies above 1 + t/2: surely slower, by more than half the
  threshold; so a slowdown of t is caught once the interval is narrower than ±t/2, and a change
  below t/2 is never called a regression while the interval covers it;
* ``FASTER``: the whole interval lies below 1 / (1 + t/2);
* ``SAME``: the whole interval lies within [1 / (1 + t), 1 + t], and neither of the above;
* ``UNSURE``: anything else (the interval is too wide to tell): measured further.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from ..measure.stats import median_ci

#: Confidence of every interval: 99%, as a gate tests dozens of points at once.
CONFIDENCE = 0.99
#: Pairs a point gets in the gate's first pass: 12 quads, whose 99% interval of the median
#: is their 2nd smallest to 2nd largest.
FIRST_PAIRS = 24
#: The most pairs a point gets, over all passes.
MAX_PAIRS = 96
VERDICTS = ("SAME", "FASTER", "SLOWER", "UNSURE")
FAMILIES = ("structured gradient", "naive gradient", "epoch")


def verdict(low: float, high: float, threshold: float) -> str:
    """The verdict of an interval [low, high] of HEAD / BASE (see the module's text)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "UNSURE"
    if low > 1 + threshold / 2:
        return "SLOWER"
    if high < 1 / (1 + threshold / 2):
        return "FASTER"
    if 1 / (1 + threshold) <= low and high <= 1 + threshold:
        return "SAME"
    return "UNSURE"


def family(key) -> str:
    """The family of a point's key ``[kind, method, B, n, k, dtype]``."""
    kind, method = key[0], key[1]
    if kind == "epoch":
        return "epoch"
    return "structured gradient" if method == "structured" else "naive gradient"


@dataclass
class Point:
    """One compared point: its pair ratios (HEAD / BASE) in the order taken."""

    key: list
    label: str
    ratios: list[float] = field(default_factory=list)
    #: how many pairs the point had when its pooled pairs first read SLOWER (None: they do not)
    flagged_at: int | None = None

    @property
    def family(self) -> str:
        return family(self.key)

    @property
    def quads(self) -> list[float]:
        """The geometric mean of each two adjacent pairs (A B, then B A)."""
        r = self.ratios
        return [math.sqrt(r[i] * r[i + 1]) for i in range(0, len(r) - 1, 2)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.quads) if len(self.ratios) > 1 else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        quads = self.quads
        return median_ci(quads, CONFIDENCE) if len(quads) > 1 else (math.nan, math.nan)

    def settle(self, threshold: float) -> None:
        """After a pass: remember when the pairs first read SLOWER, forget it once they do not."""
        if verdict(*self.interval, threshold) != "SLOWER":
            self.flagged_at = None
        elif self.flagged_at is None:
            self.flagged_at = len(self.ratios)

    def verdict(self, threshold: float) -> str:
        """The pooled pairs' verdict.  A regression counts only once confirmed: the pairs read
        SLOWER when first flagged and still do with twice as many pairs, the newer half taken
        later (a phase of the host that favoured one side does not last); until then UNSURE."""
        found = verdict(*self.interval, threshold)
        if found == "SLOWER" and (
            self.flagged_at is None or len(self.ratios) < 2 * self.flagged_at
        ):
            return "UNSURE"
        return found


@dataclass(frozen=True)
class Family:
    name: str
    points: int
    ratio: float
    low: float
    high: float

    def verdict(self, threshold: float) -> str:
        return verdict(self.low, self.high, threshold)


def families(points: list[Point]) -> list[Family]:
    """Each family's geometric-mean ratio and interval over its measured points."""
    found = []
    for name in FAMILIES:
        members = [p for p in points if p.family == name and len(p.quads) > 1]
        if not members:
            continue
        logs = [math.log(p.ratio) for p in members]
        halves = [(math.log(p.interval[1]) - math.log(p.interval[0])) / 2 for p in members]
        centre = statistics.fmean(logs)
        half = math.sqrt(sum(h * h for h in halves)) / len(members)
        found.append(
            Family(
                name,
                len(members),
                math.exp(centre),
                math.exp(centre - half),
                math.exp(centre + half),
            )
        )
    return found


__all__ = ["CONFIDENCE", "FAMILIES", "Family", "Point", "families", "family", "verdict"]
