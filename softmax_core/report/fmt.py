"""The report's cells: :func:`~softmax_core.units.si` (the one SI formatter), plain numbers,
ratios, intervals and stability marks; plot axes use ``si`` through :func:`axis_formatter`.
"""

from __future__ import annotations

import sys

from matplotlib.ticker import FuncFormatter

from ..errors import said
from ..units import NA, is_finite, prefix_of, si


def number(value, spec: str = ".3g") -> str:
    """``format(value, spec)``, or :data:`NA`."""
    return format(float(value), spec) if is_finite(value) else NA


def times(value) -> str:
    """A ratio: ``1,234x``, ``12x``, ``1.5x``, ``0.42x``."""
    if not is_finite(value):
        return NA
    v = float(value)
    return f"{v:,.0f}x" if v >= 10 else f"{v:#.2g}x"


def with_interval(value, low, high, unit: str = "s") -> str:
    """``33.0 µs (32.8–33.4)``: the value and its interval in the value's unit; just the value
    where there is no interval."""
    text = si(value, unit)
    if text == NA or not (is_finite(low) and is_finite(high)):
        return text
    scale, _ = prefix_of(value, unit)
    mantissa = text.split()[0]
    d = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return f"{text} ({float(low) / scale:.{d}f}–{float(high) / scale:.{d}f})"


def row_time(row) -> str:
    """A result row's median time with its 95% interval (:func:`with_interval`)."""
    return with_interval(row["time_median_s"], row["time_ci_low_s"], row["time_ci_high_s"])


def stability_cell(stability: str) -> str:
    """How a table flags a point: ``yes``, ``**no** ⚠`` or ``?`` (not recorded)."""
    return {"stable": "yes", "unstable": "**no** ⚠"}.get(stability, "?")


def one_line(text, limit: int | None = None) -> str:
    """Text as one table cell or list item: newlines become spaces, ``|`` is escaped."""
    return said(text or "", limit or sys.maxsize).replace("|", "\\|")


def axis_formatter(unit: str) -> FuncFormatter:
    """A matplotlib tick formatter writing ticks with :func:`si` (2 significant digits)."""
    return FuncFormatter(lambda v, _pos: si(v, unit, 2) if v > 0 else "0")


__all__ = [
    "NA",
    "si",
    "number",
    "times",
    "with_interval",
    "row_time",
    "stability_cell",
    "one_line",
    "axis_formatter",
    "is_finite",
]
