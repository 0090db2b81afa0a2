"""The result format: a result set's ``results.csv`` and ``environment.json``, defined once.

``results.csv`` holds one row per point; the sweep appends to it (:class:`ResultWriter`),
``--resume`` keeps its valid rows, and the report, ``compare`` and the asv export read it,
all through :func:`read_results` and :func:`row_case`: a row that one of them accepts, all
of them accept.  ``environment.json`` (where the set was measured) is
:mod:`softmax_core.runs.envfile`'s.

Columns (times in seconds, per call; see :mod:`softmax_core.measure.engine`):

=========================  ==================================================
``kind, method, batch,``   the point (:class:`softmax_core.runs.cases.Case`); with
``features, classes,``     ``dtype`` and ``data`` (the epoch's data source,
``dtype, data``            ``synthetic`` or ``mnist``; a gradient's: empty, or
                           ``stream`` for rows made chunk by chunk in the call)
``threads``                the BLAS threads the point ran with (a Dask point: each
                           worker's)
``workers, chunk_rows``    the Dask worker processes it ran on (0: in this process)
                           and the rows per chunk of X (0: X whole)
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

Format history (:data:`FORMAT_VERSION`; ``environment.json`` records it as
``format_version`` from version 2 on):

* **1**: ``results.csv`` without the interval and stability columns (``time_ci_low_s``,
  ``time_ci_high_s``, ``stable``, ...).  Read: its points are drawn without intervals
  and as not stable; ``compare`` and ``--resume`` refuse it (re-run the sweep).
* **2**: no ``threads`` column (the BLAS threads are in environment.json only).  Read: its
  rows' threads are empty; ``compare`` takes them from its environment.json.
* **3**: ``threads``, the BLAS threads of each row's point (the grid's threads axis).  No
  ``workers`` or ``chunk_rows``: read as 0 (in this process, X whole).
* **4**: the columns of :data:`COLUMNS`: ``workers`` and ``chunk_rows``, so that Dask's
  scaling (``softmax-bench scale``, which wrote a ``scaling.csv`` of its own before) is a
  grid of the same sweep in the same file.
"""

from __future__ import annotations

import csv
import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..units import is_finite

#: The version this module writes (see the module's format history).
FORMAT_VERSION = 4
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
    "threads",
    "workers",
    "chunk_rows",
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
#: Columns that hold text.
TEXT_COLUMNS = tuple("run_id timestamp backend device kind method dtype data status reason".split())
#: Columns that hold numbers (empty where a point did not run); ``stable`` is a flag.
NUMERIC_COLUMNS = tuple(c for c in COLUMNS if c not in (*TEXT_COLUMNS, "stable"))
#: What identifies a point: two rows with the same key measured the same thing.
KEY_COLUMNS = tuple(
    "kind method batch features classes dtype data samples threads workers chunk_rows".split()
)


#: Columns a results file must have to be read at all.
REQUIRED = ("kind", "method", "batch", "features", "classes", "status")
#: Columns whose absence makes a set of format 1 (no intervals).
CI_COLUMNS = ("time_ci_low_s", "time_ci_high_s")
#: Name of the results file and of the environment record in a result set's folder.
RESULTS_FILE, ENVIRONMENT_FILE = "results.csv", "environment.json"


class SchemaError(InputError):
    """A results file that is not of this format version, or not a results file at all."""


@dataclass
class ResultFile:
    """What :func:`read_results` found: the rows (dicts of text), the format version, and
    what a reader must be told (a half-written last line left out)."""

    path: Path
    header: list
    rows: list
    version: int
    notes: list = field(default_factory=list)


def _regular_file(path: Path, what: str) -> None:
    """ValueError unless ``path`` is a regular file: a FIFO or a device would block a reader."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{path} does not exist") from None
    if not stat.S_ISREG(mode):
        raise InputError(f"{path} is not a regular file; fix: pass the folder of a {what}")


#: The largest results.csv read: a point's row is under 1 kB, so 64 MiB is some 100,000 points,
#: far past any sweep's grid; reading a file costs about ten times its size in memory.
MAX_RESULTS_BYTES = 64 * 2**20


def _not_too_large(path: Path, limit: int) -> None:
    size = path.stat().st_size
    if size > limit:
        raise InputError(
            f"{path} holds {size / 2**20:.0f} MiB, more than softmax-bench reads "
            f"({limit // 2**20} MiB; a sweep writes under 1 kB a point); fix: pass the folder "
            "of a sweep's results, or split the file"
        )


def read_results(path: str | os.PathLike) -> ResultFile:
    """The rows of a ``results.csv`` of any known format version.

    A half-written last line (a sweep killed while writing) is left out.  Raises
    :class:`SchemaError` for a file without the :data:`REQUIRED` columns or with columns
    this format never had, and ValueError for an unreadable file.
    """
    path = Path(path)
    _regular_file(path, "sweep's results (results.csv)")
    _not_too_large(path, MAX_RESULTS_BYTES)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError) as exc:
        raise InputError(
            f"cannot read {path} ({exc}); fix: re-run the sweep into a new --out folder"
        ) from None
    notes = []
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        notes.append(f"{path}: a half-written last line was left out")
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = list(reader.fieldnames or [])
        if header:
            _check_known(path, header)
        rows = list(reader)
    except csv.Error as exc:  # a damaged file: an unclosed quote, a field past csv's limit
        raise InputError(
            f"{path} is not readable as CSV ({exc}); fix: re-run the sweep into a new --out "
            "folder, or delete the damaged lines"
        ) from None
    version = _version(header)
    return ResultFile(path, header, rows, version, notes)


def _version(header: list) -> int:
    """4 with the workers column, 3 with the threads column, 2 with the interval columns,
    else 1; :func:`check_appendable` asks for this version's exact columns."""
    if "workers" in header:
        return 4
    if "threads" in header:
        return 3
    return 2 if all(c in header for c in CI_COLUMNS) else 1


def _check_known(path: Path, header: list) -> None:
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    if missing or unknown:
        what = "; ".join(
            p
            for p in (
                missing and f"no column {', '.join(missing)}",
                unknown and f"unknown column {', '.join(unknown)}",
            )
            if p
        )
        raise SchemaError(
            f"{path} is not a softmax-bench results file ({what}); fix: pass a "
            "folder written by `softmax-bench sweep`"
        )


def check_appendable(path: str | os.PathLike) -> None:
    """Raise :class:`SchemaError` unless ``path`` is empty or of this format version: rows are
    only ever appended to a file of the same columns."""
    found = read_results(path)
    if found.header and found.header != list(COLUMNS):
        missing = [c for c in COLUMNS if c not in found.header]
        what = f"missing {', '.join(missing)}" if missing else "columns in another order"
        raise SchemaError(
            f"{path} is of an older result format ({what}); this softmax-bench writes format "
            f"{FORMAT_VERSION}; fix: write a new run into another --out folder (older result "
            "sets are read by `softmax-bench report`, never appended to)"
        )


class ResultWriter:
    """Appends rows to a ``results.csv`` of this format: the header when the file is new,
    then each row flushed and fsynced as it is written, so a kill loses no written row."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fh = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._fh, fieldnames=COLUMNS, lineterminator="\n")
        if self._fh.tell() == 0:
            self._writer.writeheader()
            self._sync()

    def write(self, row: dict) -> None:
        self._writer.writerow(row)
        self._sync()

    def _sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def row_case(row: dict):
    """The :class:`~softmax_core.runs.cases.Case` of a valid row, or None if the row is damaged.

    Valid: the point's sizes, kind, method, dtype and data source parse, the status is known,
    and an ``ok`` row's times are consistent (:func:`times_consistent`).
    """
    from .cases import Case  # cases imports the engine; keep this module import-light

    case = Case.from_row(row)
    if case is None or row.get("status") not in STATUSES:
        return None
    if row["status"] == "ok" and not times_consistent(row):
        return None
    return case


#: Times outside these are no measurement of a call: a clock reads nanoseconds at best, and
#: no point's time budget comes near a million seconds (eleven days).
LEAST_TIME_S, MOST_TIME_S = 1e-9, 1e6
#: A peak of memory past an exabyte is no machine's.
MOST_BYTES = 1e18


def times_consistent(row: dict) -> bool:
    """Whether an ``ok`` row's numbers can be a measurement: a median time from
    :data:`LEAST_TIME_S` to :data:`MOST_TIME_S`; the interval, where recorded, finite, positive
    and around the median; the fastest sample not above the median; at least one sample; a
    peak of memory, where recorded, a number of bytes from 0 to :data:`MOST_BYTES`."""

    def value(column):
        cell = row.get(column)
        if cell is None or (isinstance(cell, str) and not cell.strip()) or cell != cell:
            return None  # not recorded (an older format, or pandas' NaN)
        return float(cell) if is_finite(cell) else False

    median = value("time_median_s")
    if not median or not LEAST_TIME_S <= median <= MOST_TIME_S:
        return False
    low, high, fastest = (value(c) for c in ("time_ci_low_s", "time_ci_high_s", "time_min_s"))
    if False in (low, high, fastest):
        return False
    if (low is None) != (high is None) or (low is not None and not 0 < low <= median <= high):
        return False
    if fastest is not None and not 0 < fastest <= median:
        return False
    repeats, peak = value("repeats"), value("peak_bytes")
    if peak is False or (peak is not None and not 0 <= peak <= MOST_BYTES):
        return False
    return repeats is not False and (repeats is None or repeats >= 1)


def parse_stable(value) -> bool:
    """``stable`` as written (``True``/``False``) or read back by pandas (bool, NaN)."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value) if value == value else False


__all__ = [
    "FORMAT_VERSION",
    "COLUMNS",
    "NUMERIC_COLUMNS",
    "TEXT_COLUMNS",
    "KEY_COLUMNS",
    "REQUIRED",
    "CI_COLUMNS",
    "STATUSES",
    "ResultFile",
    "ResultWriter",
    "SchemaError",
    "check_appendable",
    "read_results",
    "row_case",
    "times_consistent",
    "parse_stable",
]
