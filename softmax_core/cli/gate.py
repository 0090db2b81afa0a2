"""``softmax-bench gate BASE HEAD``: the regression gate (:mod:`softmax_core.gate`).

Exit status 0 (no regression), 1 (a regression, each listed with its ratio and interval) or 2
(the gate could not run, said in one line; also for malformed arguments).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path

from ..backends import BackendError
from ..errors import InputError
from .arguments import EXIT_USAGE, fraction, seconds, thread_count


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``gate`` to the CLI's subparsers."""
    p = sub.add_parser(
        "gate",
        help="did HEAD make the asv benchmarks slower than BASE? (exit 1 if so)",
        description="Measure the asv suite's points on two commits, one worker process each, "
        "in alternating pairs seconds apart, and judge each point and family by the interval "
        "of its HEAD/BASE ratios.  The device, backend, BLAS threads and suite are "
        "SOFTMAX_DEVICE, SOFTMAX_BACKEND, SOFTMAX_THREADS and SOFTMAX_ASV_SUITE, as for asv.  "
        "Exit 0: no regression; 1: a regression; 2: the gate could not run.",
    )
    p.add_argument("base", metavar="BASE", help="the commit to compare against (e.g. main)")
    p.add_argument("head", metavar="HEAD", help="the commit under test (e.g. HEAD)")
    p.add_argument(
        "--threshold",
        type=fraction,
        default=0.05,
        help="the smallest slowdown to catch, as a fraction (default: %(default)s)",
    )
    p.add_argument(
        "--time-budget",
        type=budget,
        default=600.0,
        help=f"seconds the gate may take in all, at least {MIN_BUDGET_S:g} (default: %(default)s)",
    )
    p.add_argument(
        "--bench", metavar="REGEX", help="only the points whose label matches (e.g. 'structured')"
    )
    p.add_argument(
        "--threads",
        type=thread_count,
        help="BLAS threads of the workers: sets SOFTMAX_THREADS (default: as it is)",
    )
    p.add_argument("--repo", type=Path, default=Path("."), help="the project (default: here)")
    p.add_argument(
        "--cache",
        type=folder,
        help="where the commits' trees and the workers' logs are kept "
        "(default: ~/.cache/softmax-bench-gate)",
    )
    return p


#: The shortest time budget: the workers' start alone takes seconds.
MIN_BUDGET_S = 10.0


def budget(text: str) -> float:
    value = seconds(text)
    if value < MIN_BUDGET_S:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_BUDGET_S:g} seconds, got {text}")
    return value


def folder(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder, got an empty string")
    return Path(text)


def _progress():
    """Prints a progress line on stderr; a reader that went away stops the lines, not the gate."""
    on = [True]

    def say(line: str) -> None:
        if on[0]:
            try:
                print(line, file=sys.stderr, flush=True)
            except OSError:
                on[0] = False

    return say


def run(args) -> int:
    from ..gate import GateError, run_gate, summary

    def stop(signum, frame):  # a closed terminal: stop the workers, leave no folder behind
        raise SystemExit(128 + signum)  # (SIGTERM and Ctrl-C stop every command alike)

    previous = {signal.SIGHUP: signal.signal(signal.SIGHUP, stop)}
    threads = os.environ.get("SOFTMAX_THREADS")
    if args.threads:
        os.environ["SOFTMAX_THREADS"] = str(args.threads)
    elif (threads or "").strip():  # checked as --threads is: too many would time the scheduler
        try:
            if not threads.strip().isdecimal():  # as the asv suite reads it: digits only
                raise argparse.ArgumentTypeError("not a whole number of threads")
            thread_count(threads.strip())
        except argparse.ArgumentTypeError as exc:
            print(
                f"softmax-bench gate: error: SOFTMAX_THREADS={threads!r}: {exc}; fix: set it "
                "right, or give --threads",
                file=sys.stderr,
            )
            return EXIT_USAGE
    try:
        result = run_gate(
            args.base,
            args.head,
            repo=args.repo,
            threshold=args.threshold,
            time_budget_s=args.time_budget,
            select=args.bench,
            cache=args.cache,
            progress=_progress(),
        )
    except (GateError, InputError, BackendError, OSError) as exc:
        with contextlib.suppress(OSError):
            print(f"softmax-bench gate: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if threads is None:
            os.environ.pop("SOFTMAX_THREADS", None)
        else:
            os.environ["SOFTMAX_THREADS"] = threads
    try:
        print(summary(result), flush=True)
    except OSError:  # the reader went away: the exit status still tells
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return result.status
