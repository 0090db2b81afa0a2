"""One SI formatter for every number softmax-bench writes: bytes, seconds, FLOPs, rates.

``si(4e9, "B")`` -> ``4.00 GB``, ``si(3.3e-5, "s")`` -> ``33.0 µs``,
``si(1.2e9, "FLOP/s")`` -> ``1.20 GFLOP/s``.  Decimal prefixes throughout
(1 GB = 10⁹ bytes, as the lecture writes memory).
"""

from __future__ import annotations

import math

#: Empty cell: no value (a point not run, a quantity not measured).
NA = "—"
_PREFIXES = (
    (1e12, "T"),
    (1e9, "G"),
    (1e6, "M"),
    (1e3, "k"),
    (1.0, ""),
    (1e-3, "m"),
    (1e-6, "µ"),
    (1e-9, "n"),
)


def is_finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer past any float
        return False


def prefix_of(value: float, unit: str = "", digits: int = 3) -> tuple[float, str]:
    """The (scale, prefix) :func:`si` writes ``value`` with: ``prefix_of(3.3e-5, "s")`` is
    ``(1e-06, "µ")``."""
    v = abs(float(f"{float(value):.{digits - 1}e}"))
    return next(
        (
            (sc, p)
            for sc, p in _PREFIXES
            if not (unit == "s" and sc > 1)  # no "ks"
            and (v >= sc or (sc == 1.0 and unit != "s"))
        ),
        _PREFIXES[-1],
    )


def si(value, unit: str = "", digits: int = 3) -> str:
    """``value`` with an SI prefix and ``digits`` significant digits; :data:`NA` if not a number.

    Prefixes below 1 are used for seconds only (``33.0 µs``); a count of bytes
    or FLOPs under 1 is written as is; from a million of the largest prefix on, ``1.00e+300 B``.
    """
    if not is_finite(value):
        return NA
    v = float(f"{float(value):.{digits - 1}e}")  # rounded first, so 999.96 k becomes 1.00 M
    if v == 0:
        return f"0 {unit}".strip()
    scale, prefix = prefix_of(v, unit, digits)
    mantissa = v / scale
    if abs(mantissa) >= 1e6:  # far past the largest prefix: no line of digits
        return f"{v:.{digits - 1}e} {unit}".strip()
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(mantissa)))))
    return f"{mantissa:.{decimals}f} {prefix}{unit}".strip()


__all__ = ["NA", "is_finite", "prefix_of", "si"]
