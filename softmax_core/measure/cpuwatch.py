"""What other processes do meanwhile: the share of all cores' time they used while a point was
sampled, which flags a measurement taken on a busy machine."""

from __future__ import annotations

import time

from .stats import others_share


class OthersCPU:
    """The share of all cores' time that other processes used between start and :meth:`reading`.

    The kernel's system-wide busy time (``psutil.cpu_times``, steal included)
    less this process's own CPU time (all its threads, BLAS included) and its children's.  Both
    counters tick every 10 ms and are read at different moments, so two ticks
    per core are forgiven (over a 30 ms window one stray tick would otherwise
    read as 15% of a 2-core machine); the share is floored at 0.
    """

    #: ticks per core of the kernel's counters forgiven as reading error
    SLACK_TICKS = 2
    TICK_S = 0.01

    def __init__(self):
        import psutil

        self._psutil = psutil
        self._me = psutil.Process()
        self._cores = psutil.cpu_count() or 1
        self._start = self._read()

    def _read(self) -> tuple[float, float, float]:
        t = self._psutil.cpu_times()
        busy = (
            sum(t)
            - t.idle
            - getattr(t, "iowait", 0.0)
            - getattr(t, "guest", 0.0)
            - getattr(t, "guest_nice", 0.0)
        )  # guest time is already counted in user
        return time.perf_counter(), busy, self._own_seconds()

    def _own_seconds(self) -> float:
        """CPU seconds of this process and of the processes it started (a LocalCluster's
        workers compute its calls: they are not *other* processes)."""
        t = self._me.cpu_times()
        total = t.user + t.system
        for child in self._me.children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except self._psutil.Error:  # a process that just ended
                pass
        return total

    def reading(self) -> tuple[float, tuple[float, float, float]]:
        """(share, (others' CPU seconds, all cores' seconds, seconds forgiven)) since start.

        The raw seconds let rounds of one point be added up before the slack is
        taken once (:meth:`Measurement.pooled`): a slack taken per short round
        would swallow real load."""
        (w0, b0, m0), (w1, b1, m1) = self._start, self._read()
        raw = (
            (b1 - b0) - (m1 - m0),
            max(w1 - w0, 1e-9) * self._cores,
            self.SLACK_TICKS * self.TICK_S * self._cores,
        )
        return others_share(raw), raw


__all__ = ["OthersCPU"]
