"""Do asv and the sweep measure the same thing?  Side by side, so the host's drift cancels.

    SOFTMAX_THREADS=1 python tools/asv_vs_sweep.py [--pairs 5] [--points 'structured']

asv measures each point in a fresh process (forked per point), the sweep in one long-lived
process; both with the same engine.  Point by point, in alternating order, a fresh process
measures one gradient point of the asv default suite with asv's settings and this long-lived
process (which has measured every point once, as the sweep's has) measures it with the same
settings: the two sides of a pair are seconds apart, so the host's drift, in phases of seconds
to minutes (docs/measurement.md, "Trusting the numbers"), cancels in their ratio fresh /
long-lived.  Each point's median over the pairs is printed with the spread, then a summary
(goal: every point within 10%).  A script that prints numbers, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the repository root holds bench/
    sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402  (asv's settings and its default suite)
from softmax_core.measure.engine import measure  # noqa: E402
from softmax_core.runs.cases import Case  # noqa: E402

#: Longest one fresh process may take (a point takes seconds).
CHILD_TIMEOUT_S = 600


def measure_here(points: list[Case]) -> list[float]:
    out = []
    for case in points:
        fn, args = case.prepare(common.backend())
        out.append(
            measure(
                fn,
                *args,
                backend=common.backend(),
                min_samples=common.ASV_MIN_SAMPLES,
                max_time_s=common.MAX_TIME_S,
            ).median
        )
    return out


def measure_fresh(points: list[Case]) -> list[float]:
    """:func:`measure_here` in a fresh process (this script, with ``--child``)."""
    keys = [[c.kind, c.method, c.batch, c.features, c.classes, c.dtype, c.data] for c in points]
    what = ", ".join(c.label() for c in points)
    try:
        run = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(keys)],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            timeout=CHILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise SystemExit(
            f"asv_vs_sweep: the fresh process measuring {what} ran past {CHILD_TIMEOUT_S} s; "
            "fix: run on a quieter machine, or leave that point out with --points"
        ) from None
    if run.returncode != 0:
        how = (
            f"was killed by signal {-run.returncode}"
            if run.returncode < 0
            else f"exited {run.returncode}"
        )
        raise SystemExit(
            f"asv_vs_sweep: the fresh process measuring {what} {how}:\n"
            f"{run.stderr[-2000:] or '(nothing on stderr)'}"
        )
    return json.loads(run.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=5, help="alternating pairs (default: %(default)s)")
    p.add_argument("--points", default="", help="only points whose label matches this regex")
    p.add_argument(
        "--child", help=argparse.SUPPRESS
    )  # the fresh process: measure these points, print JSON
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure_here([Case(*key) for key in json.loads(args.child)])))
        return 0
    if args.pairs < 1:
        p.error("--pairs must be at least 1")
    try:
        rx = re.compile(args.points)
    except re.error as exc:
        p.error(f"--points is not a regex ({exc})")
    points = [
        c
        for c in common.suite_points("gradient", "default")
        if rx.search(c.label()) and common.guard().skip_reason(c) is None
    ]
    if not points:
        p.error("no point of the default suite matches --points")
    print(
        f"{len(points)} points, {args.pairs} pairs; "
        f"BLAS threads: {common.threads() or 'the BLAS default'}",
        flush=True,
    )
    measure_here(points)  # this process has measured every point once, as the sweep's has
    ratios = []
    for i in range(args.pairs):
        pair = []
        for j, case in enumerate(points):
            if (i + j) % 2:
                here = measure_here([case])[0]
                fresh = measure_fresh([case])[0]
            else:
                fresh = measure_fresh([case])[0]
                here = measure_here([case])[0]
            pair.append(fresh / here)
        ratios.append(np.array(pair))
        print(f"pair {i + 1}: median fresh / long-lived {np.median(ratios[-1]):.3f}", flush=True)
    r = np.array(ratios)  # [pairs, points]
    med = np.median(r, axis=0)
    for case, m, lo, hi in zip(points, med, r.min(axis=0), r.max(axis=0)):
        flag = "" if abs(m - 1) <= 0.10 else "  BEYOND 10%"
        print(f"  {case.label():45s} {m:.3f} (pairs {lo:.2f}-{hi:.2f}){flag}")
    dev = np.abs(med - 1)
    print(
        "fresh process (asv) / long-lived process (sweep), "
        f"median over {args.pairs} alternating pairs: "
        f"geometric mean {np.exp(np.log(med).mean()):.3f}; median |r - 1| {np.median(dev):.1%}, "
        f"95th percentile {np.quantile(dev, 0.95):.1%}, max {dev.max():.1%}; "
        f"{int((dev > 0.10).sum())} of {len(points)} beyond 10% (goal: none)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
