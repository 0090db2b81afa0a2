"""The sections of report.md, as markdown text (tables via :meth:`DataFrame.to_markdown`).

Every table that shows a time shows its confidence interval where the results hold one, and a
``stable`` column: ``yes``, ``**no** ⚠`` (the interval is wider than the sweep allows) or ``?``
(not recorded, an old results file).
"""

from __future__ import annotations

import pandas as pd

from ..runs.cases import threads_text
from ..runs.envfile import blas_pools, probe_rates
from .analysis import (
    SYMBOL,
    WIDE_SLOPE,
    cpu_gpu_table,
    crossovers,
    lecture_rows,
    loglog_slopes,
    method_rank,
    ok_rows,
    throughput_table,
    time_model_error,
)
from .asv import ASV_UNITS
from .fmt import NA, number, one_line, row_time, si, stability_cell, times, with_interval


def table(rows: list[dict] | pd.DataFrame) -> str:
    """A GitHub markdown table of text cells; ``|`` and newlines in cells are escaped."""
    df = pd.DataFrame(rows)
    if df.empty:
        return ""
    df = df.astype(object).where(df.notna(), NA).map(lambda v: one_line(v))
    df.columns = [one_line(c) for c in df.columns]
    return df.to_markdown(index=False, disable_numparse=True)


def _point(r) -> str:
    data = f" on {r['data']}" if r.get("data") else ""
    return (
        f"{r['kind']} {r['method']} B={int(r['batch'])} n={int(r['features'])} "
        f"k={int(r['classes'])} {r['dtype']}{data}"
    )


def _time(r) -> str:
    if r["status"] != "ok":
        return NA
    return row_time(r)


def _status(r) -> str:
    reason = one_line(r["reason"], 90)
    return r["status"] if r["status"] == "ok" or not reason else f"{r['status']}: {reason}"


def _blas(env: dict, backend: dict) -> str:
    pools = blas_pools(env)
    if pools:
        threads = env.get("threads")  # a set of one thread count of the sweep's threads axis
        return "; ".join(
            f"{p.get('internal_api')} {p.get('version')} "
            f"({threads_text(threads or p.get('num_threads'))})"
            for p in pools
        )
    return backend.get("blas") or NA


def environment_section(envs: dict) -> str:
    """environment.json of each set: the sweep's record (older and newer layouts alike)."""
    rows = {}
    for label, env in envs.items():
        b, m = env.get("backend") or {}, env.get("machine") or {}
        rates = probe_rates(env)
        libs = {
            **(env.get("versions") or {}),
            **{k: b[k] for k in ("numpy", "cupy", "torch") if b.get(k)},
        }
        cores = b.get("cpu_cores") or m.get("cpu_cores_physical") or m.get("cpu_cores_logical")
        rows[label] = {
            "backend": f"{b.get('backend', NA)} on {b.get('device', NA)}",
            "CPU": f"{b.get('cpu_model') or m.get('cpu_model') or NA}"
            + (f" ({cores} cores)" if cores else ""),
            "GPU": f"{b.get('gpu_name') or NA}"
            + (
                f" ({si(b['gpu_memory_total_bytes'], 'B')})"
                if b.get("gpu_memory_total_bytes")
                else ""
            ),
            "BLAS": _blas(env, b),
            "libraries": ", ".join(
                f"{k} {v}"
                for k, v in libs.items()
                if v and k in ("numpy", "cupy", "cupy-cuda12x", "torch", "pandas", "softmax-bench")
            )
            or NA,
            "memory": si(m.get("memory_total_bytes"), "B"),
            "git commit": str(env.get("git_commit") or m.get("git_commit") or NA)[:12]
            + (" + uncommitted changes" if env.get("git_changes") not in (None, "none") else ""),
            "GEMM rate (probe)": si(rates[0] * 1e9, "FLOP/s") if rates else NA,
            "copy bandwidth (probe)": si(rates[1] * 1e9, "B/s") if rates else NA,
            "measured": str(env.get("created") or NA),
            "folder": f"`{env.get('folder', NA)}`",
        }
    frame = pd.DataFrame(rows)
    return table(frame.reset_index().rename(columns={"index": ""}))


def _reasons(rows: pd.DataFrame, none: str = "") -> str:
    """One list item per point of ``rows``: its set, the point and why."""
    return "\n".join(
        f"- {r['set']}: {_point(r)}: {one_line(r['reason']) or none}"
        for r in rows.to_dict("records")
    )


def counts_section(df: pd.DataFrame) -> str:
    counts = pd.crosstab(df["set"], df["status"], margins=True, margins_name="total")
    parts = [table(counts.reset_index().astype(str))]
    errors = df[df["status"] == "error"]
    if not errors.empty:
        parts.append("Errors:\n\n" + _reasons(errors, "no reason"))
    skipped = df[df["status"] == "skipped"]
    if not skipped.empty:
        parts.append(
            f"<details><summary>{len(skipped)} skipped point(s) and why</summary>\n\n"
            f"{_reasons(skipped)}\n\n</details>"
        )
    return "\n\n".join(parts)


def lecture_section(df: pd.DataFrame) -> str:
    parts = []
    for set_, df_set in df.groupby("set", sort=False):
        rows, n, k = lecture_rows(df_set)
        if rows.empty:
            continue
        where = (
            f"n = k = {n}"
            if n == k == 1000
            else (f"no n = k = 1000 points; its largest k instead: n = {n}, k = {k}")
        )
        parts.append(f"**{set_}**, {where}:")
        parts.append(
            table(
                [
                    {
                        "method": r["method"],
                        "B": int(r["batch"]),
                        "dtype": r["dtype"],
                        "lecture memory (predicted)": si(r["predicted_lecture_bytes"], "B"),
                        "implementation peak (predicted)": si(r["predicted_bytes"], "B"),
                        "measured peak": si(r["peak_bytes"], "B") if r["status"] == "ok" else NA,
                        "FLOPs (predicted)": si(r["predicted_flops"], "FLOP"),
                        "measured time (95% CI)": _time(r),
                        "stable": stability_cell(r["stability"]) if r["status"] == "ok" else NA,
                        "status": _status(r),
                    }
                    for r in rows.to_dict("records")
                ]
            )
        )
    return "\n\n".join(parts) or "No gradient points, so no lecture table."


def slopes_section(df: pd.DataFrame, x: str = "classes") -> str:
    slopes = loglog_slopes(df, x)
    if slopes.empty:
        return f"No method has ok points at two or more {x}, so no fitted exponents."
    # the size of the table's columns, then that of its rows
    cols = ["batch" if x == "classes" else "classes", "features"]
    flagged = int((slopes["flags"] != "").sum())
    head = (
        f"Fitted exponent p of time ~ {SYMBOL[x]}^p over ok points; ± is a 95% interval (the "
        "fit's own, or what the points' CIs allow, whichever is wider). A slope that cannot be "
        "stated as a fact is written ≈ with its interval and why: *wide* (wider than "
        f"±{WIDE_SLOPE}: not one power law over this range), *unstable* (a point is not stable), "
        "*stability unknown* (an old results file), *2 points* (a secant: nothing tests the "
        f"power law), *no interval* (2 points without CIs). {flagged} of {len(slopes)} here are "
        "flagged."
    )
    if x == "classes":
        head += " The lecture: 2 for naive, 1 for structured (at large k)."
    pivot = slopes.pivot_table(
        index=["set", "method", "dtype", cols[1]],
        columns=cols[0],
        values="text",
        aggfunc="first",
        sort=False,
    )
    pivot = pivot.reindex(columns=sorted(pivot.columns))
    pivot.columns = [f"{SYMBOL[cols[0]]} = {c}" for c in pivot.columns]
    pivot.index = pivot.index.set_names(["set", "method", "dtype", SYMBOL[cols[1]]])
    return head + "\n\n" + table(pivot.reset_index())


def throughput_section(df: pd.DataFrame) -> str:
    t = throughput_table(df)
    t = t[t["source"] == "epoch"]
    if t.empty:
        return ""
    rows = [
        {
            "set": r["set"],
            "method": r["method"],
            "data": r["data"],
            "dtype": r["dtype"],
            "B": r["batch"],
            "samples/s (95% CI)": f"{number(r['samples_per_s'], ',.0f')}"
            + (
                f" ({number(r['samples_per_s_low'], ',.0f')}–"
                f"{number(r['samples_per_s_high'], ',.0f')})"
                if pd.notna(r["samples_per_s_low"])
                else ""
            ),
            "machine bound": number(r["bound_samples_per_s"], ",.0f"),
            "% of bound": number(100 * r["samples_per_s"] / r["bound_samples_per_s"], ".1f"),
            "stable": stability_cell(r["stability"]),
        }
        for r in t.to_dict("records")
    ]
    return "Whole-epoch throughput:\n\n" + table(rows)


def time_model_section(df: pd.DataFrame) -> str:
    err = time_model_error(df)
    if err.empty:
        return ""
    rows = [
        {
            "set": r["set"],
            "kind": r["kind"],
            "method": r["method"],
            "points": r["points"],
            "median measured / predicted": times(r["median_ratio"]),
            "within 2x": f"{100 * r['within_2x']:.0f} %",
            "worst factor": times(r["worst_factor"]),
        }
        for r in err.to_dict("records")
    ]
    return "How far the time model's predictions were from the measured medians:\n\n" + table(rows)


def crossover_section(df: pd.DataFrame) -> str:
    cross = crossovers(cpu_gpu_table(df))
    if cross.empty:
        return ""
    lines = []
    for r in cross.to_dict("records"):
        what = (
            f"whole epochs ({r['data']}, {r['dtype']})"
            if r["kind"] == "epoch"
            else (
                f"{r['method']} gradient, n = {int(r['features'])}, "
                f"k = {int(r['classes'])}, {r['dtype']}"
            )
        )
        lines.append(f"- {r['gpu_set']} vs {r['cpu_set']}, {what}: {r['text']}.")
    return (
        "Crossover batch size (the smallest B from which the GPU is faster at every larger B "
        "measured, judged on the 95% intervals):\n\n" + "\n".join(lines)
    )


def summary_section(df: pd.DataFrame) -> str:
    parts = []
    for set_, g in ok_rows(df, "gradient").groupby("set", sort=False):
        batch = int(g["batch"].min())
        g = g[g["batch"] == batch].assign(rank=lambda d: d["method"].map(method_rank))
        rows = [
            {
                "method": r["method"],
                "n": int(r["features"]),
                "k": int(r["classes"]),
                "dtype": r["dtype"],
                "time (95% CI)": _time(r),
                "stable": stability_cell(r["stability"]),
                "FLOP/s": si(r["gflops"] * 1e9, "FLOP/s"),
                "% GEMM peak": number(100 * r["gflops"] / r["gemm_gflops"], ".1f"),
                "bytes/s": si(r["gbytes_per_s"] * 1e9, "B/s"),
                "% copy bandwidth": number(100 * r["gbytes_per_s"] / r["copy_gbps"], ".1f"),
                "measured peak": si(r["peak_bytes"], "B"),
                "predicted peak": si(r["predicted_bytes"], "B"),
            }
            for r in g.sort_values(["rank", "features", "classes"]).to_dict("records")
        ]
        parts += [f"**{set_}**, B = {batch}:", table(rows)]
    return "\n\n".join(parts) or "No ok gradient points."


def all_points_section(df: pd.DataFrame) -> str:
    ok = ok_rows(df)
    if ok.empty:
        return ""
    rows = [
        {
            "set": r["set"],
            "point": _point(r),
            "time (95% CI)": _time(r),
            "stable": stability_cell(r["stability"]),
            "first call": si(r["time_first_s"], "s"),
            "samples × rounds": (
                f"{int(r['repeats'])} × {int(r['rounds'])}"
                if pd.notna(r["rounds"]) and pd.notna(r["repeats"])
                else number(r["repeats"], ".0f")
            ),
            "others' CPU": number(100 * r["others_cpu"], ".0f") + " %"
            if pd.notna(r["others_cpu"])
            else NA,
            "predicted time": si(r["predicted_time_s"], "s"),
        }
        for r in ok.to_dict("records")
    ]
    return f"<details><summary>All {len(ok)} ok points</summary>\n\n{table(rows)}\n\n</details>"


def asv_section(asv: pd.DataFrame, benchmark: str, asv_dir, rows: pd.DataFrame) -> str:
    lines = [
        f"asv results from `{asv_dir}`: {asv['benchmark'].nunique()} benchmark(s), "
        f"{asv['commit_hash'].nunique()} commit(s), "
        f"machine(s): {', '.join(sorted(asv['machine'].unique()))}."
    ]
    ok = rows[rows["status"] == "ok"].sort_values("date")
    unit = ASV_UNITS.get(ok["unit"].iloc[0] if len(ok) else "", "")

    def value(r) -> str:
        if unit:
            return with_interval(r["value"], r["low"], r["high"], unit)
        return number(r["value"], ".4g")

    out = []
    for series, g in ok.groupby("series", sort=False):
        first, last = g.iloc[0], g.iloc[-1]
        out.append(
            {
                "series": series,
                "first commit": first["commit_hash"][:8],
                "value (CI)": value(first),
                "latest commit": last["commit_hash"][:8],
                "latest value (CI)": value(last),
                "change": number(100 * (last["value"] / first["value"] - 1), "+.1f") + " %",
                "latest stable": stability_cell("stable" if last["stable"] else "unstable"),
            }
        )
    if out:
        lines += [
            f"`{benchmark}`, first and latest commit with a result (asv's 99% CI):",
            table(out),
        ]
    return "\n\n".join(lines)


__all__ = [
    "table",
    "environment_section",
    "counts_section",
    "lecture_section",
    "slopes_section",
    "throughput_section",
    "time_model_section",
    "crossover_section",
    "summary_section",
    "all_points_section",
    "asv_section",
]
