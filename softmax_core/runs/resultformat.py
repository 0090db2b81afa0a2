"""The results file of a sweep: its columns and the one definition of a valid row.

``results.csv`` holds one row per point; the sweep appends to it, ``--resume``
keeps its valid rows, and the report and ``compare`` read it.  All of them go
through this module, so a row that one of them accepts, all of them accept.

Columns (times in seconds, per call; see :mod:`softmax_core.measure.engine`):

=========================  ==================================================
``kind, method, batch,``   the point (:class:`softmax_core.runs.cases.Case`); with
``features, classes,``     ``dtype`` and ``data`` (the epoch's data source,
``dtype, data``            ``synthetic`` or ``mnist``; empty for a gradient)
``status, reason``         ``ok``, ``skipped`` (and why) or ``error`` (and what)
``time_median_s``          median of the samples
``time_ci_low_s/high_s``   95% confidence interval of the median
``time_min_s, time_iqr_s`` fastest sample; interquartile range
``time_first_s``           the first, cold call (compilation, first touch)
``repeats, loops``         samples taken; calls per sample
``rounds``                 rounds the samples were pooled from (``--rounds``)
``stable``                 ``True`` when the CI half-width is <= 5% of the median
                           and other processes used <= 10% of the CPUs meanwhile
``load_before/after``      the 1-minute load average around the point
``others_cpu``             share of all cores' time other processes used while
                           the point was sampled
``predicted_*``            the cost model and the time model, before measuring
=========================  ==================================================
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

COLUMNS = (
    "run_id",
    "timestamp",
    "backend",
    "device",
    "kind",
    "method",
    "batch",
    "features",
    "classes",
    "dtype",
    "data",
    "status",
    "reason",
    "time_median_s",
    "time_ci_low_s",
    "time_ci_high_s",
    "time_min_s",
    "time_iqr_s",
    "time_first_s",
    "repeats",
    "loops",
    "rounds",
    "stable",
    "host_time_median_s",
    "peak_bytes",
    "predicted_bytes",
    "predicted_lecture_bytes",
    "predicted_flops",
    "predicted_traffic_bytes",
    "predicted_time_s",
    "samples",
    "samples_per_s",
    "gflops",
    "gbytes_per_s",
    "load_before",
    "load_after",
    "others_cpu",
)
STATUSES = ("ok", "skipped", "error")
#: Columns that hold numbers (empty where a point did not run).
NUMERIC_COLUMNS = tuple(
    c
    for c in COLUMNS
    if c
    not in (
        "run_id",
        "timestamp",
        "backend",
        "device",
        "kind",
        "method",
        "dtype",
        "data",
        "status",
        "reason",
        "stable",
    )
)
#: What identifies a point: two rows with the same key measured the same thing.
KEY_COLUMNS = ("kind", "method", "batch", "features", "classes", "dtype", "data")


class SchemaError(ValueError):
    """A results file whose header is not this version's columns."""


def read_header(path: str | os.PathLike) -> list[str] | None:
    """The header of ``path`` as a list of names, or None for an empty file."""
    with open(path, encoding="utf-8", newline="") as fh:
        first = fh.readline()
    if not first.strip():
        return None
    return next(csv.reader([first]))


def check_header(path: str | os.PathLike) -> None:
    """Raise :class:`SchemaError` unless ``path``'s header is exactly :data:`COLUMNS`."""
    header = read_header(path)
    if header is None or header == list(COLUMNS):
        return
    missing = [c for c in COLUMNS if c not in header]
    extra = [c for c in header if c not in COLUMNS]
    what = "; ".join(
        part
        for part in (
            missing and f"missing {', '.join(missing)}",
            extra and f"unknown {', '.join(extra)}",
            not missing and not extra and "columns in another order",
        )
        if part
    )
    raise SchemaError(
        f"{path} is not a results file of this softmax-bench version ({what}); "
        "fix: write a new run into another --out folder (results files of other "
        "versions are read by `softmax-bench report`, never appended to)"
    )


def read_rows(path: str | os.PathLike) -> list[dict]:
    """Rows of a results.csv as dicts of text, ignoring a half-written last line."""
    text = Path(path).read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text)))


def is_number(value) -> bool:
    """True for a finite number or text that parses as one."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def row_case(row: dict):
    """The :class:`~softmax_core.runs.cases.Case` of a valid row, or None if the row is damaged.

    Valid: the point's sizes, kind, method, dtype and data source parse, the
    status is known, and an ``ok`` row has a positive median time.
    """
    from .cases import Case  # cases imports the engine; keep this module import-light

    case = Case.from_row(row)
    if case is None or row.get("status") not in STATUSES:
        return None
    if row["status"] == "ok" and not (
        is_number(row.get("time_median_s")) and float(row["time_median_s"]) > 0
    ):
        return None
    return case


def parse_stable(value) -> bool:
    """``stable`` as written (``True``/``False``) or read back by pandas (bool, NaN)."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value) if value == value else False


__all__ = [
    "COLUMNS",
    "NUMERIC_COLUMNS",
    "KEY_COLUMNS",
    "STATUSES",
    "SchemaError",
    "check_header",
    "read_header",
    "read_rows",
    "row_case",
    "is_number",
    "parse_stable",
]
