"""The time model: a point's seconds per call, predicted before it runs.

    t = a + b · roofline + c · dispatches,
    roofline = max(FLOPs / GEMM rate, traffic / copy bandwidth)

with one fitted (a, b) per family of points and ``c`` fixed (:data:`DISPATCH_S`); see
docs/measurement.md, "The time model and the guard".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import InputError
from ..model.cost import roofline_seconds

#: Slowdown over the roofline assumed before a family is measured.
DEFAULT_SLOWDOWN = 6.0
#: Seconds one array operation issued from Python costs at least: the interpreter and the
#: library's dispatch on the CPU, a kernel launch on a GPU.
DISPATCH_S = {"cpu": 1e-6, "gpu": 5e-6}
#: Fixed cost per call assumed before a family is measured, seconds.
DEFAULT_OVERHEAD_S = {"cpu": 2e-5, "gpu": 5e-5}


@dataclass
class TimeModel:
    """Fitted t = a + b·roofline per family; see the module's docstring."""

    gemm_flops_per_s: float
    copy_bytes_per_s: float
    device_kind: str = "cpu"
    default_slowdown: float = DEFAULT_SLOWDOWN
    _points: dict = field(default_factory=dict)  # family -> [(roofline, seconds)]

    def __post_init__(self):
        for name in ("gemm_flops_per_s", "copy_bytes_per_s", "default_slowdown"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise InputError(f"{name} must be a positive finite number, got {v!r}")

    def roofline_s(self, case) -> float:
        """Seconds at the machine's ceilings (FLOP rate or bandwidth, whichever binds)."""
        c = case.cost
        return float(
            roofline_seconds(c.flops, c.traffic_bytes, self.gemm_flops_per_s, self.copy_bytes_per_s)
        )

    def params(self, family: str) -> tuple[float, float]:
        """(a seconds, b) for a family of points: fitted, or the defaults."""
        pts = self._points.get(family, [])
        a0 = DEFAULT_OVERHEAD_S.get(self.device_kind, 2e-5)
        if not pts:
            return a0, self.default_slowdown
        if len(pts) == 1:
            r, t = pts[0]
            a = min(a0, t / 2)
            return a, (t - a) / r
        return _fit_relative(pts)

    def dispatch_s(self, case) -> float:
        """Seconds ``case``'s array operations cost at least, whatever their size."""
        return DISPATCH_S.get(self.device_kind, DISPATCH_S["cpu"]) * case.cost.dispatches

    def predict(self, case) -> float:
        """Predicted seconds for one call of ``case``."""
        a, b = self.params(case.family)
        r = self.roofline_s(case)
        pts = self._points.get(case.family, [])
        if pts:
            r_max, t_max = max(pts)
            if r > r_max:  # extrapolating: no faster than the largest point measured
                b = max(b, (t_max - a) / r_max)
        return a + b * r + self.dispatch_s(case)

    def record(self, case, seconds: float) -> None:
        """Learn from a measured median of ``case``."""
        if not (isinstance(seconds, (int, float)) and 0 < seconds < 1e6):  # a call's seconds
            return
        # (a, b) fit what the array operations' least cost leaves
        left = max(float(seconds) - self.dispatch_s(case), 0.05 * float(seconds))
        self._points.setdefault(case.family, []).append((self.roofline_s(case), left))

    def to_dict(self) -> dict:
        """The fitted parameters, for environment.json and the report."""
        return {
            "formula": "t = a + b * max(flops / gemm_rate, traffic / copy_bandwidth)"
            " + dispatch_s * dispatches",
            "dispatch_s": DISPATCH_S.get(self.device_kind, DISPATCH_S["cpu"]),
            "gemm_flops_per_s": self.gemm_flops_per_s,
            "copy_bytes_per_s": self.copy_bytes_per_s,
            "default": dict(zip(("a_s", "b"), self.params(""))),  # of a family not yet measured
            "fitted": {
                f: {"a_s": a, "b": b, "points": len(self._points[f])}
                for f in sorted(self._points)
                for a, b in [self.params(f)]
            },
        }


def _fit_relative(pts: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares of (a + b r - t) / t over the points, with a, b >= 0."""
    w = [1 / t**2 for _, t in pts]
    sw = sum(w)
    swr = sum(wi * r for wi, (r, _) in zip(w, pts))
    swt = sum(wi * t for wi, (_, t) in zip(w, pts))
    swrr = sum(wi * r * r for wi, (r, _) in zip(w, pts))
    swrt = sum(wi * r * t for wi, (r, t) in zip(w, pts))
    det = sw * swrr - swr * swr
    if det > 0:
        a = (swrr * swt - swr * swrt) / det
        b = (sw * swrt - swr * swt) / det
        if a >= 0 and b >= 0:
            return a, b
    # a boundary: the best fit with a = 0, or with b = 0, whichever is closer
    b_only = swrt / swrr
    a_only = swt / sw
    err_b = sum(wi * (b_only * r - t) ** 2 for wi, (r, t) in zip(w, pts))
    err_a = sum(wi * (a_only - t) ** 2 for wi, (_, t) in zip(w, pts))
    return (0.0, b_only) if err_b <= err_a else (a_only, 0.0)


__all__ = ["TimeModel", "DEFAULT_SLOWDOWN"]
