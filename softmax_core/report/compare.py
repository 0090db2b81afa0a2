"""Two result sets, point by point: which points got faster, slower, or stayed the same.

``softmax-bench compare A B`` matches the ``ok`` rows of two sweep folders by
their point key (kind, method, B, n, k, dtype, data source) and, for each,
takes the ratio B / A of the medians with an interval from the two medians'
95% confidence intervals: [low_B / high_A, high_B / low_A] (conservative: it
covers the ratio whenever both intervals cover their medians).  The verdict,
with a threshold t (default 5%):

* ``SAME``: the whole interval lies within [1/(1+t), 1+t];
* ``SLOWER``: the whole interval lies above 1+t; ``FASTER``: below 1/(1+t);
* ``UNSURE``: anything else (the interval straddles a threshold).

The summary gives the geometric mean ratio, the verdict counts and, over the
points marked stable on both sides, the median and 95th percentile of
|ratio - 1|: how far two runs of the same code drift on this machine; and the
ratio of the two runs' machine probes, which shows a host that was itself
slower or faster during one of them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..runs.cases import threads_text
from ..runs.envfile import blas_pools, probe_rates
from ..runs.resultformat import (
    COLUMNS,
    KEY_COLUMNS,
    parse_stable,
    read_results,
    row_case,
)
from ..units import is_finite
from .fmt import with_interval
from .results import set_environment, set_folder

VERDICTS = ("SAME", "FASTER", "SLOWER", "UNSURE")


def load_ok_points(folder: str | Path) -> pd.DataFrame:
    """The valid ``ok`` rows of a sweep folder, one per point (the last one measured)."""
    if not Path(folder).exists():
        raise InputError(
            f"{folder} does not exist; fix: pass a folder written by `softmax-bench sweep`"
        )
    path = Path(folder) / "results.csv" if Path(folder).is_dir() else Path(folder)
    if not path.is_file():
        what = f"{path} is not a file" if path.exists() else f"no results.csv in {folder}"
        raise InputError(f"{what}; fix: pass a folder written by `softmax-bench sweep`")
    found = read_results(path)
    if not found.header:
        raise InputError(
            f"{path} is empty (no header, no rows); fix: run or resume the sweep first"
        )
    if found.version < 2:
        raise InputError(
            f"{path} was written by an older softmax-bench (result format {found.version}, "
            "without intervals); fix: compare result sets of this version (re-run the sweep)"
        )
    valid = [r for r in found.rows if row_case(r) is not None]
    rows = [r for r in valid if r["status"] == "ok"]
    if not rows:
        raise InputError(
            f"{path} holds no measured (ok) points; fix: run or resume the sweep first"
        )
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    cases = [row_case(r) for r in rows]
    for c in ("batch", "features", "classes", "samples", "workers", "chunk_rows", "data"):
        df[c] = [getattr(case, c) for case in cases]
    for c in ("time_median_s", "time_ci_low_s", "time_ci_high_s"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df["stable"] = df["stable"].map(parse_stable)
    recorded = pd.to_numeric(df["threads"], errors="coerce")
    if found.version < 3:  # format 2 records the BLAS threads in environment.json only
        recorded = recorded.fillna(_blas_threads(_environment(path)) or 0)
    df["threads"] = recorded.fillna(0).astype(int)
    df = df.drop_duplicates(list(KEY_COLUMNS), keep="last").set_index(list(KEY_COLUMNS))
    df.attrs["damaged"] = len(found.rows) - len(valid) + len(found.notes)  # a half-written line
    return df


def compare(a: str | Path, b: str | Path, *, threshold: float = 0.05) -> tuple[pd.DataFrame, dict]:
    """Point-by-point comparison of result set ``b`` against ``a``.

    Returns ``(table, summary)``: the table has one row per point in both sets
    (``median_a_s, median_b_s``, their intervals ``ci_low_a_s`` ... ``ci_high_b_s``,
    ``ratio, ratio_low, ratio_high, stable_a, stable_b, verdict``); the summary holds
    ``points, only_a, only_b, geomean_ratio``, the count of each verdict, ``median_abs_change`` /
    ``p95_abs_change`` over the points stable on both sides (NaN if none), and
    ``probe_gemm_time_ratio`` / ``probe_copy_time_ratio``, B/A of the two runs'
    machine probes in time (NaN where a side has none, or where the probe
    versions differ: then ``probe_versions`` holds them).
    """
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not 0 < threshold < 1
    ):
        raise InputError(f"threshold must be a fraction between 0 and 1, got {threshold!r}")
    if set_folder(a) == set_folder(b):
        raise InputError(
            f"A and B are the same result set ({a}); fix: compare two runs, e.g. two sweeps "
            "of the same grid"
        )
    da, db = load_ok_points(a), load_ok_points(b)
    threads = (_thread_counts(da), _thread_counts(db))
    if len(threads[0]) == len(threads[1]) == 1 and threads[0] != threads[1]:
        # two runs at one thread count each: the same points, with the change said
        da, db = (d.droplevel("threads") for d in (da, db))
    both = da.index.intersection(db.index)
    if both.empty:
        raise InputError(
            f"{a} and {b} have no measured point in common; fix: compare sweeps of "
            "the same grid, dtype and data"
        )
    A, B = da.loc[both], db.loc[both]
    table = pd.DataFrame(
        {
            "median_a_s": A["time_median_s"],
            "median_b_s": B["time_median_s"],
            **{
                f"ci_{end}_{side}_s": d[f"time_ci_{end}_s"]
                for side, d in (("a", A), ("b", B))
                for end in ("low", "high")
            },
            "ratio": B["time_median_s"] / A["time_median_s"],
            **dict(zip(("ratio_low", "ratio_high"), ratio_interval(A, B))),
            "stable_a": A["stable"],
            "stable_b": B["stable"],
        }
    )
    table["verdict"] = [
        verdict(lo, hi, threshold) for lo, hi in zip(table["ratio_low"], table["ratio_high"])
    ]
    stable = table[table["stable_a"] & table["stable_b"]]
    change = (stable["ratio"] - 1).abs()
    summary = {
        "points": len(table),
        "only_a": len(da.index.difference(db.index)),
        "only_b": len(db.index.difference(da.index)),
        "geomean_ratio": float(np.exp(np.log(table["ratio"]).mean())),
        **{v: int((table["verdict"] == v).sum()) for v in VERDICTS},
        "stable_both": len(stable),
        "median_abs_change": float(change.median()) if len(stable) else math.nan,
        "p95_abs_change": float(change.quantile(0.95)) if len(stable) else math.nan,
        "threshold": threshold,
        "damaged": (da.attrs.get("damaged", 0), db.attrs.get("damaged", 0)),
        **_machine_facts(_environment(a), _environment(b)),
        "blas_threads": threads,
    }
    return table.reset_index(), summary


def _machine_facts(env_a: dict, env_b: dict) -> dict:
    """What the two runs' environment records say about the machines: B/A of the time
    their probes took (GEMM, copy; a host that ran slower for a while shifts every point
    alike, and the probes show it), NaN where a side has no usable probe or the two are
    of different probe versions (then ``probe_versions`` says which)."""
    out = {"probe_gemm_time_ratio": math.nan, "probe_copy_time_ratio": math.nan}
    probes = [probe_rates(env_a), probe_rates(env_b)]
    if None in probes:
        return out
    (gemm_a, copy_a, version_a), (gemm_b, copy_b, version_b) = probes
    if version_a != version_b:
        return {**out, "probe_versions": (version_a, version_b)}
    return {
        **out,
        "probe_gemm_time_ratio": gemm_a / gemm_b,
        "probe_copy_time_ratio": copy_a / copy_b,
    }


def _thread_counts(points: pd.DataFrame) -> tuple[int, ...]:
    """The BLAS thread counts a side's points ran with (0: not known)."""
    return tuple(sorted(set(points.index.get_level_values("threads"))))


def _environment(where) -> dict:
    """The environment record of a results folder (or of the folder of a results.csv); {}
    where it is missing.  One that is damaged, or of a newer format, is refused in one line,
    as the report refuses it."""
    return set_environment(set_folder(where))


def _whole(v) -> int | None:
    """``v`` if it is a positive whole number (not a bool), else None."""
    return int(v) if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else None


def _blas_threads(env: dict) -> int | None:
    """The BLAS thread count a run measured with (None where not recorded, or not one number)."""
    threads = {_whole(p.get("num_threads")) for p in blas_pools(env)}
    return threads.pop() if len(threads) == 1 else None


def ratio_interval(a, b):
    """(low, high) of the ratio b / a of two medians from their intervals:
    ``[low_b / high_a, high_b / low_a]``; ``a`` and ``b`` are rows (or columns) with
    ``time_ci_low_s`` and ``time_ci_high_s``."""
    return b["time_ci_low_s"] / a["time_ci_high_s"], b["time_ci_high_s"] / a["time_ci_low_s"]


def verdict(ratio_low: float, ratio_high: float, threshold: float) -> str:
    """SAME / FASTER / SLOWER / UNSURE from a ratio's interval (see the module docstring)."""
    if not (math.isfinite(ratio_low) and math.isfinite(ratio_high)):
        return "UNSURE"
    up, down = 1 + threshold, 1 / (1 + threshold)
    if down <= ratio_low and ratio_high <= up:
        return "SAME"
    if ratio_low > up:
        return "SLOWER"
    if ratio_high < down:
        return "FASTER"
    return "UNSURE"


def format_comparison(table: pd.DataFrame, summary: dict, a, b) -> str:
    """The table and summary as markdown."""
    shown = table.assign(
        point=[
            f"{r.kind} {r.method} B={r.batch} n={r.features} k={r.classes} {r.dtype}"
            + (f" {r.data}" if r.data else "")
            + (f", {threads_text(r.threads)}" if getattr(r, "threads", 0) else "")
            + (f", {r.workers} Dask workers" if getattr(r, "workers", 0) else "")
            + (f", chunks of {r.chunk_rows}" if getattr(r, "chunk_rows", 0) else "")
            for r in table.itertuples()
        ],
        **{
            side.upper(): [
                with_interval(*values)
                for values in zip(
                    *(table[f"{c}_{side}_s"] for c in ("median", "ci_low", "ci_high"))
                )
            ]
            for side in "ab"
        },
        **{
            "B/A": [
                f"{r:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if is_finite(lo) and is_finite(hi) else "")
                for r, lo, hi in zip(table["ratio"], table["ratio_low"], table["ratio_high"])
            ]
        },
        stable=[
            ("" if sa else "A unstable ") + ("" if sb else "B unstable")
            for sa, sb in zip(table["stable_a"], table["stable_b"])
        ],
    )[["point", "A", "B", "B/A", "verdict", "stable"]]
    s = summary
    lines = [
        f"# B = {b} against A = {a}",
        "",
        shown.to_markdown(index=False, disable_numparse=True),  # "1.000" as written
        "",
        f"{_points(s['points'])} in both ({s['only_a']} only in A, {s['only_b']} only in B); "
        f"geometric mean ratio B/A {s['geomean_ratio']:.3f}; "
        + ", ".join(f"{v} {s[v]}" for v in VERDICTS)
        + f" (threshold ±{s['threshold']:.0%}).",
        f"Over the {_points(s['stable_both'])} stable in both: median |B/A - 1| "
        f"{_pct(s['median_abs_change'])}, 95th percentile {_pct(s['p95_abs_change'])}.",
        *(
            f"{n} damaged row(s) of {which} left out (not a measurement: see `report`)."
            for which, n in zip("AB", s.get("damaged", (0, 0)))
            if n
        ),
    ]
    if math.isfinite(s.get("probe_gemm_time_ratio", math.nan)):
        lines.append(
            "The machine probes of the two runs, B/A in time: "
            f"GEMM {s['probe_gemm_time_ratio']:.3f}, "
            f"copy {s['probe_copy_time_ratio']:.3f} (a machine that itself ran slower or faster "
            "shifts every point alike)."
        )
    elif "probe_versions" in s:
        va, vb = s["probe_versions"]
        lines.append(
            f"The machine probes are not compared: A's is of probe version {va}, B's of {vb} "
            "(softmax_core.measure.engine.PROBE_VERSION says what changed)."
        )
    ta, tb = s.get("blas_threads", ((), ()))
    if len(ta) == len(tb) == 1 and ta != tb and 0 not in ta + tb:
        lines.append(
            f"A ran with {threads_text(ta[0])}, B with {threads_text(tb[0])}: "
            "the ratios include that change of setting."
        )
    return "\n".join(lines) + "\n"


def _points(n: int) -> str:
    return f"{n} point" + "s" * (n != 1)


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.1%}"


__all__ = ["compare", "verdict", "format_comparison", "load_ok_points", "VERDICTS"]
