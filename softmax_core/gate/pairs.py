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

A point or a family that reads SLOWER is a regression only when a fresh pair of workers,
started after the first ones have measured every point, reads it SLOWER on their own pairs
too: each process draws its own memory layout, and a phase of the host that favoured one side
does not last that long.  Until then it is UNSURE.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace

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


def confirm(found: str, fresh: str) -> str:
    """The verdict ``found`` of all pairs, SLOWER only where the fresh workers' own reads
    ``fresh`` SLOWER too (UNSURE until then)."""
    return "UNSURE" if found == "SLOWER" and fresh != "SLOWER" else found


def family(key) -> str:
    """The family of a point's key ``[kind, method, B, n, k, dtype]``."""
    kind, method = key[0], key[1]
    if kind == "epoch":
        return "epoch"
    return "structured gradient" if method == "structured" else "naive gradient"


def quads(ratios: list[float]) -> list[float]:
    """The geometric mean of each two adjacent pairs (A B, then B A)."""
    return [math.sqrt(ratios[i] * ratios[i + 1]) for i in range(0, len(ratios) - 1, 2)]


def estimate(values: list[float]) -> tuple[float, float, float]:
    """(median, low, high) of quads; NaN with fewer than two."""
    if len(values) < 2:
        return math.nan, math.nan, math.nan
    return (statistics.median(values), *median_ci(values, CONFIDENCE))


@dataclass
class Point:
    """One compared point: its pair ratios (HEAD / BASE) in the order taken, by the first
    workers and, when it read SLOWER, by a fresh pair of workers (``confirm``)."""

    key: list
    label: str
    ratios: list[float] = field(default_factory=list)
    confirm: list[float] = field(default_factory=list)

    @property
    def family(self) -> str:
        return family(self.key)

    @property
    def quads(self) -> list[float]:
        return quads(self.ratios) + quads(self.confirm)

    @property
    def pairs(self) -> int:
        return len(self.ratios) + len(self.confirm)

    @property
    def ratio(self) -> float:
        return estimate(self.quads)[0]

    @property
    def interval(self) -> tuple[float, float]:
        return estimate(self.quads)[1:]

    def read(self, threshold: float) -> str:
        """The verdict of all its pairs, before any confirmation."""
        return verdict(*self.interval, threshold)

    def confirmed(self, threshold: float) -> str:
        """The verdict of the fresh workers' pairs alone (UNSURE when there are none)."""
        return verdict(*estimate(quads(self.confirm))[1:], threshold)

    def verdict(self, threshold: float) -> str:
        """All pairs' verdict; SLOWER only when the fresh workers' pairs alone say so too."""
        return confirm(self.read(threshold), self.confirmed(threshold))


@dataclass(frozen=True)
class Family:
    """A family's geometric-mean ratio and interval over its points; ``fresh`` is the same
    over the fresh workers' pairs alone (None where they measured none of it)."""

    name: str
    points: int
    ratio: float
    low: float
    high: float
    fresh: Family | None = None

    def read(self, threshold: float) -> str:
        return verdict(self.low, self.high, threshold)

    def verdict(self, threshold: float) -> str:
        return confirm(self.read(threshold), self.fresh.read(threshold) if self.fresh else "UNSURE")


def _combine(name: str, estimates: list[tuple[float, float, float]]) -> Family | None:
    found = [e for e in estimates if all(map(math.isfinite, e))]
    if not found:
        return None
    centre = statistics.fmean(math.log(m) for m, _, _ in found)
    half = math.sqrt(sum(((math.log(h) - math.log(lo)) / 2) ** 2 for _, lo, h in found))
    half /= len(found)
    return Family(
        name, len(found), math.exp(centre), math.exp(centre - half), math.exp(centre + half)
    )


def families(points: list[Point]) -> list[Family]:
    """Each family's geometric-mean ratio and interval over its measured points."""
    found = []
    for name in FAMILIES:
        members = [p for p in points if p.family == name]
        pooled = _combine(name, [estimate(p.quads) for p in members])
        if pooled is None:
            continue
        fresh = [estimate(quads(p.confirm)) for p in members if p.confirm]
        if len(fresh) < len(members):  # a fresh verdict covers the whole family or none
            fresh = []
        found.append(replace(pooled, fresh=_combine(name, fresh)))
    return found


__all__ = ["CONFIDENCE", "FAMILIES", "Family", "Point", "families", "family", "quads", "verdict"]
