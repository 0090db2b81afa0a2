"""``softmax-bench gate BASE HEAD``: the regression gate (:mod:`softmax_core.gate`).

Exit status 0 (no regression), 1 (a regression, each listed with its ratio and interval) or 2
(the gate could not run, said in one line; also for malformed arguments).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from ..backends import BackendError
from ..errors import InputError
from .arguments import EXIT_USAGE, fraction, positive_float


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``gate`` to the CLI's subparsers."""
    p = sub.add_parser(
        "gate",
        help="did HEAD make the asv suite's points slower than BASE? (exit 1 if so)",
        description="Measure the asv suite's points on two commits, one worker process each, "
        "in alternating pairs seconds apart, and judge each point and family by the interval "
        "of its HEAD/BASE ratios.  The device, backend and BLAS threads are SOFTMAX_DEVICE, "
        "SOFTMAX_BACKEND and SOFTMAX_THREADS, as for asv.  Exit 0: no regression; 1: a "
        "regression; 2: the gate could not run.",
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
        type=positive_float,
        default=600.0,
        help="seconds the gate may take in all (default: %(default)s)",
    )
    p.add_argument(
        "--bench", metavar="REGEX", help="only the points whose label matches (e.g. 'structured')"
    )
    p.add_argument("--repo", type=Path, default=Path("."), help="the project (default: here)")
    p.add_argument(
        "--cache",
        type=Path,
        help="where the commits' trees are kept (default: ~/.cache/softmax-bench-gate)",
    )
    return p


def run(args) -> int:
    from ..gate import GateError, run_gate, summary

    def stop(signum, frame):  # a CI job's timeout: stop the workers, leave no folder behind
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        result = run_gate(
            args.base,
            args.head,
            repo=args.repo,
            threshold=args.threshold,
            time_budget_s=args.time_budget,
            select=args.bench,
            cache=args.cache,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except (GateError, InputError, BackendError, OSError) as exc:
        print(f"softmax-bench gate: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(summary(result))
    return result.status
