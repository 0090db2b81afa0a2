"""A sweep's folder: one sweep at a time (its lock), and what ``--resume`` keeps of it."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import os
import sys
from pathlib import Path

from ..errors import InputError
from .cases import Case, threads_text
from .resultformat import COLUMNS, read_results, row_case


@contextlib.contextmanager
def folder_lock(out: Path):
    """Hold ``out/.lock`` exclusively; a second sweep on the same folder is refused."""
    path = out / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise InputError(
                f"{out} is in use by another sweep (pid {holder}); fix: wait for it to "
                "finish, or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
        os.ftruncate(fd, 0)  # no process holds it now
    finally:
        os.close(fd)  # closing releases the flock; the empty file stays, harmless


def rows_to_keep(results: Path, log=None) -> tuple[list[tuple[Case, dict]], list[tuple[int, str]]]:
    """(case, row) of each valid row, and (line, why) of each damaged one.  A last line
    without its newline is kept (the newline added) when it is a whole valid row, and
    otherwise, half-written by a killed sweep, cut off in place and reported."""
    if not results.exists():
        return [], []
    with open(results, "rb+") as fh:
        data = fh.read()
        if data and not data.endswith(b"\n"):
            if b"\n" not in data and b"\r" in data:  # one "line": cutting it would lose all
                raise InputError(
                    f"{results} has no line end this format writes (\\n), only carriage "
                    "returns; fix: convert its line ends to \\n (e.g. `dos2unix`), then resume, "
                    "or choose another --out"
                )
            last = data[data.rfind(b"\n") + 1 :].decode("utf-8", errors="replace")
            try:
                fields = next(csv.reader([last]), [])
            except csv.Error:  # a carriage return inside it, or a quote cut short
                fields = []
            whole = len(fields) == len(COLUMNS) and row_case(dict(zip(COLUMNS, fields))) is not None
            if whole:
                fh.write(b"\n")
            else:
                fh.truncate(data.rfind(b"\n") + 1)
                print(
                    f"{results}: a half-written last line was dropped ({len(last)} characters); "
                    "its point is measured again",
                    file=log or sys.stderr,
                )
    line = _unclosed_quote(results.read_bytes())
    if line:
        raise InputError(
            f"{results}:{line}: a quote opened there is never closed, so the rest of the file, "
            f"and any row appended, reads as part of that line; fix: delete line {line} (or "
            "close its quote), then resume, or choose another --out"
        )
    kept, damaged = [], []
    for line, row in enumerate(read_results(results).rows, start=2):
        case = row_case(row)
        if case is None:
            damaged.append(
                (
                    line,
                    f"status {row.get('status')!r}, point "
                    f"{row.get('kind')} {row.get('method')} B={row.get('batch')}",
                )
            )
        else:
            kept.append((case, row))
    return kept, damaged


def _unclosed_quote(data: bytes) -> int:
    """The line whose quoted field runs to the end of a CSV file's ``data``; 0 where every
    quoted field is closed (csv's own reading: a quote inside an unquoted field is text)."""
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace")), strict=True)
    last = 0
    try:
        for _ in reader:
            last = reader.line_num
    except csv.Error as exc:
        return last + 1 if "unexpected end of data" in str(exc) else 0
    return 0


def check_same_run(results: Path, rounds: int, dtype: str, threads: tuple, where) -> None:
    """InputError naming the first difference unless every valid row of ``results`` was made
    as this run would make it.  Every measured row pooled from ``rounds`` rounds (a folder
    whose points had different sampling would compare unlike with unlike); then every row on
    the backend and device ``where(case)`` names for its point (None: no backend here for it,
    e.g. another count of Dask workers), in ``dtype``, at one of ``threads`` (unless that is
    ``(None,)``, the counts of the rows kept).  Runs whose settings differ are never mixed in
    one folder.  Reads only: a refused resume leaves the folder as it was."""
    rows = [(line, row, row_case(row)) for line, row in enumerate(read_results(results).rows, 2)]
    found: set[int] = set()
    for line, row, case in rows:
        if row.get("status") != "ok" or case is None:
            continue  # damaged rows are measured again anyway
        value = (row.get("rounds") or "").strip()
        if not value.isdigit() or int(value) < 1:
            raise InputError(
                f"{results}:{line}: rounds is {row.get('rounds')!r}, not a whole number; fix: "
                "delete that row to measure its point again, or choose another --out"
            )
        found.add(int(value))
    other = sorted(found - {rounds})
    if other:
        raise InputError(
            f"{results} holds points measured with --rounds {', '.join(map(str, other))}, "
            f"not {rounds}; fix: resume with --rounds {other[0]}, or choose another --out"
        )
    for line, row, case in rows:
        if case is None:
            continue
        expected = where(case)
        got = f"{row.get('backend')}-{row.get('device')}"
        if expected is None or (row.get("backend") and got != expected):
            on = f" on {case.workers} Dask workers" if case.workers else ""
            raise InputError(
                f"{results}:{line}: a point measured with {got}{on}, not "
                f"{expected or 'a backend of this run'}; fix: resume with the same "
                "SOFTMAX_BACKEND, SOFTMAX_DEVICE and workers, or choose another --out"
            )
        if case.dtype != dtype:
            raise InputError(
                f"{results}:{line}: a point in {case.dtype}, not {dtype}; fix: resume with "
                f"--dtype {case.dtype}, or choose another --out"
            )
        if threads != (None,) and case.threads is not None and case.threads not in threads:
            counts = sorted({c.threads for _, _, c in rows if c and c.threads} | set(threads))
            raise InputError(
                f"{results}:{line}: a point at {threads_text(case.threads)} (BLAS), not "
                f"{','.join(map(str, threads))}; fix: resume with --threads "
                f"{','.join(map(str, counts))} (or without --threads), or choose another --out"
            )


__all__ = ["folder_lock", "rows_to_keep", "check_same_run"]
