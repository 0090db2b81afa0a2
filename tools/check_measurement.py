"""Does the measuring loop agree with itself?  The numbers behind docs/measurement.md's
"Trusting the numbers".

    python tools/check_measurement.py QUIET_A QUIET_B [--burst BURST]
        [--asv ASV_RESULTS_DIR [--asv-env PART]]

QUIET_A and QUIET_B are two default sweeps run back to back on a quiet
machine; BURST (optional) a third, run while ``tools/burst_load.py`` loaded one
core in random bursts.  Prints:

1. ``compare`` of the two quiet runs: median and 95th percentile of |B/A - 1|
   over the points stable in both (goals: <= 3% and <= 10%);
2. ``naive`` against ``naive_batched`` at B = 1, k = 1000 (the same single
   Jacobian, built two ways): ratio of medians with its interval (goal: within 15%);
3. structured time against k at fixed (B, n), among stable points: every step
   that decreases beyond the two points' intervals (goal: none);
4. with --burst: every point stable in QUIET_A whose median moved more than 10%
   from it, and whether the sweep marked it not stable (goal: all of them marked);
5. with --asv: each point measured by both the sweep (QUIET_A) and asv, the
   ratio of medians (goal: within 10%).

A script that prints numbers, not a test: it reads results, it measures nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from softmax_core.report.compare import compare, load_ok_points, ratio_interval


def quiet_pair(a: Path, b: Path) -> None:
    _, s = compare(a, b)
    if not s["stable_both"]:
        sys.exit(
            f"1. two quiet runs: {s['points']} points, none stable in both: nothing to judge; "
            "fix: measure on a quieter machine (or with --threads 1), "
            "see docs/measurement.md, 'Trusting the numbers'"
        )
    print(
        f"1. two quiet runs: {s['points']} points, {s['stable_both']} stable in both; "
        f"median |B/A - 1| = {s['median_abs_change']:.1%} (goal <= 3%), "
        f"95th percentile = {s['p95_abs_change']:.1%} (goal <= 10%); "
        f"verdicts SAME {s['SAME']}, FASTER {s['FASTER']}, SLOWER {s['SLOWER']}, "
        f"UNSURE {s['UNSURE']}"
    )


def naive_twins(folder: Path) -> None:
    d = load_ok_points(folder).reset_index()
    print(f"2. naive vs naive_batched at B = 1, k = 1000 (one Jacobian, two ways), in {folder}:")
    for n in sorted(d.features.unique()):
        pick = d[(d.kind == "gradient") & (d.batch == 1) & (d.classes == 1000) & (d.features == n)]
        rows = {r["method"]: r for _, r in pick.iterrows()}
        if not {"naive", "naive_batched"} <= set(rows):
            print(f"   n = {n}: not both measured")
            continue
        a, b = rows["naive"], rows["naive_batched"]
        ratio = b.time_median_s / a.time_median_s
        lo, hi = ratio_interval(a, b)
        print(
            f"   n = {n}: naive {a.time_median_s:.3f} s "
            f"[{a.time_ci_low_s:.3f}, {a.time_ci_high_s:.3f}], "
            f"naive_batched {b.time_median_s:.3f} s "
            f"[{b.time_ci_low_s:.3f}, {b.time_ci_high_s:.3f}]: "
            f"ratio {ratio:.3f} [{lo:.2f}, {hi:.2f}] "
            f"({'within' if abs(ratio - 1) <= 0.15 else 'OUTSIDE'} 15%"
            f"{'' if a.stable and b.stable else '; not both stable'})"
        )


def structured_monotone(folder: Path) -> None:
    d = load_ok_points(folder).reset_index()
    s = d[(d.kind == "gradient") & (d.method == "structured") & d.stable]
    drops = []
    for (b, n), g in s.groupby(["batch", "features"]):
        g = g.sort_values("classes")
        for (_, lo), (_, hi) in zip(g.iterrows(), g.iloc[1:].iterrows()):
            if hi.time_ci_high_s < lo.time_ci_low_s:
                drops.append(
                    f"B={b} n={n}: k={lo.classes} {lo.time_median_s:.3g} s -> "
                    f"k={hi.classes} {hi.time_median_s:.3g} s"
                )
    print(
        f"3. structured time against k, stable points: {len(s)} points, "
        f"{len(drops)} decreasing steps beyond their intervals"
        + "".join(f"\n   {x}" for x in drops)
    )


def burst(quiet: Path, noisy: Path) -> None:
    q, b = load_ok_points(quiet), load_ok_points(noisy)
    both = q.index.intersection(b.index)
    # a move is measured from a quiet number that is itself trusted: stable in the quiet run
    trusted = both[q.loc[both, "stable"].eq(True).values]
    moved = (b.loc[trusted, "time_median_s"] / q.loc[trusted, "time_median_s"] - 1).abs()
    moved = moved[moved > 0.10]
    flagged = b.loc[moved.index, "stable"].eq(False)
    print(
        f"4. burst load: {len(both)} points, {len(trusted)} of them stable in the quiet run; "
        f"{len(moved)} of those moved more than 10%; "
        f"{int(flagged.sum())} of them marked not stable "
        "(goal: all)"
    )
    for key in moved.index[~flagged.values]:
        print(f"   NOT FLAGGED: {key}: moved {moved[key]:.0%}")
    stable_b = b.loc[both, "stable"]
    print(
        f"   (points marked not stable in the burst run: {int((~stable_b).sum())} of {len(both)})"
    )


def asv_agreement(quiet: Path, asv_dir: Path, env: str | None) -> None:
    from softmax_core.report.asv import asv_points
    from softmax_core.report.asv_results import load_asv_results

    a = load_asv_results(asv_dir)
    every = sorted(a["env_name"].dropna().unique())
    if env:
        a = a[a["env_name"].astype(str).str.contains(env, regex=False)]
    envs = sorted(a["env_name"].dropna().unique())
    if len(envs) != 1:
        picked = f" matching {env!r}" if env else ""
        sys.exit(
            f"5. asv: {len(envs)} environments{picked} in {asv_dir} "
            f"(there: {', '.join(every) or 'none'}); "
            "fix: pick the one measured like QUIET_A with --asv-env (e.g. SOFTMAX_THREADS1)"
        )
    points = asv_points(a)[0]
    # one result per point: the newest commit's (asv keeps every commit it measured)
    points = points[(points.timestamp == points.timestamp.max()) & (points.status == "ok")]
    on = ["kind", "method", "batch", "features", "classes"]
    q = load_ok_points(quiet).reset_index()
    q = q[~q.duplicated(on, keep=False)]  # a point matched by one sweep row only
    df = points[points.time_median_s.notna()].merge(q, on=on, suffixes=("_asv", "_sweep"))
    if df.empty:
        print("5. asv: no point in common")
        return
    df["ratio"] = df.time_median_s_asv / df.time_median_s_sweep
    off = df[(df.ratio - 1).abs() > 0.10]
    print(
        f"5. sweep vs asv ({envs[0]}, commit {df.run_id_asv.iloc[0]}): {len(df)} points in both; "
        f"ratio asv/sweep median {df.ratio.median():.3f}, "
        f"range {df.ratio.min():.3f}-{df.ratio.max():.3f}; {len(off)} beyond 10%"
    )
    for r in off.itertuples():
        sizes = f" n={r.features:g} k={r.classes:g}" if r.kind == "gradient" else ""
        print(
            f"   {r.kind} {r.method} B={r.batch:g}{sizes}: "
            f"asv {r.time_median_s_asv:.4g} s, sweep {r.time_median_s_sweep:.4g} s"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("quiet_a", type=Path)
    p.add_argument("quiet_b", type=Path)
    p.add_argument("--burst", type=Path, help="a sweep run under tools/burst_load.py")
    p.add_argument("--asv", type=Path, help="an asv results folder with this machine's results")
    p.add_argument(
        "--asv-env",
        help="the asv environment to compare (a part of its name), where the folder holds several",
    )
    args = p.parse_args()
    try:
        quiet_pair(args.quiet_a, args.quiet_b)
        naive_twins(args.quiet_a)
        structured_monotone(args.quiet_a)
        if args.burst:
            burst(args.quiet_a, args.burst)
        if args.asv:
            asv_agreement(args.quiet_a, args.asv, args.asv_env)
    except ValueError as exc:
        print(f"check_measurement: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
