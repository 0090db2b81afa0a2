"""Load one core in random bursts, for a bounded time: the noise the measuring loop must flag.

    python tools/burst_load.py --seconds 300 [--seed 1]

Busy (a pure-Python spin) and idle spells alternate, each 0.2-2 s long, drawn
at random; the process ends by itself after --seconds.  Used by
tools/check_measurement.py's burst experiment (docs/measurement.md, "Trusting the numbers").
"""

from __future__ import annotations

import argparse
import random
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--seconds", type=float, default=300.0, help="total run time (default: %(default)s)"
    )
    p.add_argument(
        "--seed", type=int, default=1, help="random seed of the spells (default: %(default)s)"
    )
    args = p.parse_args()
    if not 0 < args.seconds <= 3600:
        p.error("--seconds must be in (0, 3600]")
    rng = random.Random(args.seed)
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        busy_until = min(end, time.monotonic() + rng.uniform(0.2, 2.0))
        while time.monotonic() < busy_until:
            pass
        time.sleep(max(0.0, min(end - time.monotonic(), rng.uniform(0.2, 2.0))))


if __name__ == "__main__":
    main()
