"""The command line's argument types: each a function from text to a value, raising a
one-line error that names the problem and what is accepted."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import NoReturn

from ..backends import BACKENDS, DEVICES
from ..errors import quoted

EXIT_ERROR = 1
EXIT_USAGE = 2
DEFAULT_SWEEP_ROOT = Path("out/sweep")
#: What a run's one line says of its folder when a signal stops it (``...: interrupted; ...``).
COMPLETE = "the results are complete: `softmax-bench report {}` draws the report"
PROGRESS_HELP = (
    "progress on stderr: a bar (--progress) or none (--no-progress) (default: a bar on a "
    "terminal, else a line every 15 s)"
)


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, naming the problem and where help is."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _fail(message: str) -> NoReturn:
    raise argparse.ArgumentTypeError(message)


def _whole(text: str, least: int, rule: str) -> int:
    from ..runs.cases import MAX_COUNT  # past it, a size's cost is no longer a float

    digits = text.strip().lstrip("+").replace("_", "")
    if digits.isdigit() and len(digits) > 30:  # past int()'s own limit on digits, too
        _fail(f"must be at most 10^18, got {quoted(text)}")
    try:
        value = int(text)
    except ValueError:
        _fail(f"expected a whole number, got {quoted(text)}")
    if value < least:
        _fail(f"must be {rule}, got {quoted(text)}")
    if value > MAX_COUNT:
        _fail(f"must be at most 10^18, got {quoted(text)}")
    return value


def positive_int(text: str) -> int:
    return _whole(text, 1, "a positive whole number")


def nonnegative_int(text: str) -> int:
    return _whole(text, 0, "a whole number >= 0")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        _fail(f"expected a number, got {quoted(text)}")
    if not value > 0 or value == float("inf"):
        _fail(f"must be a positive finite number, got {quoted(text)}")
    return value


def seconds(text: str) -> float:
    """A time budget, deadline or timeout in seconds: positive, at most a week."""
    from ..runs.cases import MAX_SECONDS

    value = positive_float(text)
    if value > MAX_SECONDS:
        _fail(f"at most {MAX_SECONDS:g} seconds (a week), got {quoted(text)}")
    return value


def class_count(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        _fail(f"expected at least 2 classes (softmax over one class is constant), got {value}")
    return value


def thread_count(text: str) -> int:
    value, cores = positive_int(text), os.cpu_count() or 1
    if value > cores:
        _fail(
            f"{value} threads on {cores} cores would time the scheduler, not the math; "
            f"use at most {cores}"
        )
    return value


def rounds(text: str) -> int:
    from ..runs.sweep import MAX_ROUNDS

    value = positive_int(text)
    if value > MAX_ROUNDS:
        _fail(f"at most {MAX_ROUNDS} rounds, got {value}")
    return value


def fraction(text: str) -> float:
    value = positive_float(text)
    if value >= 1:
        _fail(f"must be a fraction between 0 and 1, got {quoted(text)}")
    return value


def list_of(parse):
    """A comma-separated list, each item read by ``parse``."""

    def parse_list(text: str) -> list:
        return [parse(part) for part in comma_list(text)]

    return parse_list


int_list = list_of(positive_int)
class_counts = list_of(class_count)
thread_counts = list_of(thread_count)


def name_list(choices):
    def parse(text: str) -> list[str]:
        names = comma_list(text)
        bad = [n for n in names if n not in choices]
        if bad:
            _fail(f"unknown {quoted(', '.join(bad))}: choose from {', '.join(choices)}")
        return names

    return parse


def comma_list(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",")]
    if not any(parts):
        _fail("expected a comma-separated list, got nothing")
    if not all(parts):
        _fail(f"an empty item in {text!r}: write e.g. 1,2")
    return parts


def bytes_size(text: str) -> int:
    """``12e9``, ``12GB``, ``512MiB`` -> bytes."""
    units = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12}
    units |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
    t = text.strip().lower()
    number = t.rstrip("kmgtib")
    unit = t[len(number) :]
    try:
        value = float(number) * units[unit]
    except (ValueError, KeyError):
        _fail(f"expected a size such as 8e9, 8GB or 8GiB, got {quoted(text)}")
    if not math.isfinite(value) or value < 1:
        _fail(f"must be a finite size of at least 1 byte, such as 8GB, got {quoted(text)}")
    return int(value)


def add_backend_args(p: argparse.ArgumentParser, threads_axis: bool = False) -> None:
    p.add_argument("--device", choices=DEVICES, help="cpu or gpu (default: $SOFTMAX_DEVICE or cpu)")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        help="array library (default: $SOFTMAX_BACKEND, else numpy on cpu, cupy on gpu)",
    )
    if threads_axis:
        p.add_argument(
            "--threads",
            dest="thread_axis",  # an axis of the grid, not a limit on the command
            metavar="THREADS",
            type=thread_counts,
            help="BLAS threads, an axis of the grid: e.g. 1,2 measures each point at 1 and at 2 "
            "threads, side by side, each at most the cores (default: the BLAS's own choice, "
            "usually one per core; with --resume, the run's own); recorded in every row",
        )
        return
    p.add_argument(
        "--threads",
        type=thread_count,
        help="BLAS threads of this process, at most the cores (default: the BLAS's own choice, "
        "usually one per core)",
    )


def begun(out: Path) -> bool:
    """Whether a run began in ``out`` and recorded its grid: what --resume goes on from."""
    return any((out / name).exists() for name in ("results.csv", "environment.json"))


def nothing_measured(resume: bool) -> str:
    """What a run's one line says when a signal stops it before its folder holds a result."""
    return "nothing new was measured" if resume else "nothing was measured yet"


def stopped_in(out: Path, resume: bool) -> str:
    """What a run's one line says of ``out`` when a signal stops it while it measures: the
    rows kept, and whether --resume goes on there."""
    from ..runs.resultformat import read_results

    if not begun(out):
        return nothing_measured(resume)
    try:
        rows = len(read_results(out / "results.csv").rows)
    except (OSError, ValueError):  # not written yet, or damaged: --resume says which
        rows = 0
    kept = f"the rows of {rows} finished point{'s' if rows > 1 else ''} are kept" if rows else ""
    return f"{kept or nothing_measured(resume)}: add --resume to go on"
