"""The report of a scaling set (``softmax-bench scale``): tables and plots of Dask against
NumPy from the set's results.csv (read as every set is:
:func:`softmax_core.report.results.read_set`), and out_of_core.json where there is one.

Two efficiencies, both per point (kind, data, m, chunk size):

* **parallel efficiency** E(w) = T_dask(1) / (w · T_dask(w)): how well Dask
  spreads one call over w workers (1 = perfect);
* **efficiency against NumPy** T_numpy(1 thread) / (w · T_dask(w)): how much of
  w cores' worth of plain single-threaded NumPy the cluster delivers, Dask's
  overhead included.  Above 1/w Dask is faster than NumPy on one core; the
  speedup against NumPy with all cores (its BLAS threaded) is in the tables.

Each ratio is of two medians, with the interval their 95% intervals span (the lower end: the
smaller time's upper end over the larger's lower end), so it is wide where either is.

Plots: ``efficiency.png`` (both, against workers), ``throughput.png`` (samples/s
against m), ``chunks.png`` (time per gradient against the chunk size), each where the data
has more than one value.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..fileio import atomic_write_text
from ..runs.cases import threads_text
from ..runs.out_of_core import read_out_of_core
from ..units import si

#: The plots a scaling report may draw.
PLOTS = ("efficiency.png", "throughput.png", "chunks.png")


def is_scaling(frame: pd.DataFrame, env: dict) -> bool:
    """Whether a set is a scaling grid (``softmax-bench scale``'s, which records the machine's
    parallelism), or has points on Dask clusters of several sizes or beside this process."""
    return "parallelism" in env or frame["workers"].nunique() > 1


def _frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The ``ok`` rows with the names the tables use: engine, rows (m) and memory/stream."""
    df = frame[frame["status"] == "ok"].copy()
    df["engine"] = np.where(df["backend"] == "dask", "dask", "numpy")
    df["rows"] = df["samples"].astype(int)
    df["data"] = np.where(df["data"] == "stream", "stream", "memory")
    df["threads"] = df["threads"].fillna(1).astype(int)
    return df


def _ratio(num: pd.Series, den: pd.Series, scale=1.0) -> tuple:
    """``num / den / scale`` of two times' medians, and the interval their intervals span."""
    return (
        num.time_median_s / den.time_median_s / scale,
        num.time_ci_low_s / den.time_ci_high_s / scale,
        num.time_ci_high_s / den.time_ci_low_s / scale,
    )


def efficiencies(df: pd.DataFrame) -> pd.DataFrame:
    """The Dask rows with speedups over NumPy (1 thread, all) and parallel efficiency."""
    d = df[df.engine == "dask"].copy()
    cols = [
        f"{c}{e}"
        for c in ("speedup_numpy_1t", "speedup_numpy_all", "parallel_eff")
        for e in ("", "_low", "_high")
    ]
    for c in cols:
        d[c] = math.nan
    for idx, r in d.iterrows():
        same = (df.kind == r.kind) & (df.data == r.data) & (df.rows == r.rows)
        same &= (df.batch == r.batch) & (df.features == r.features) & (df.classes == r.classes)
        same &= df["dtype"] == r["dtype"]
        numpy = df[same & (df.engine == "numpy")]
        one = df[same & (df.engine == "dask") & (df.workers == 1) & (df.chunk_rows == r.chunk_rows)]
        for name, base, scale in (
            ("speedup_numpy_1t", numpy[numpy.threads == 1], 1.0),
            ("speedup_numpy_all", numpy[numpy.threads == numpy.threads.max()], 1.0),
            ("parallel_eff", one, r.workers),
        ):
            if len(base) and not (name == "parallel_eff" and r.workers == 1):  # 1 by definition
                ratio = _ratio(base.iloc[0], r, scale)
                for suffix, v in zip(("", "_low", "_high"), ratio):
                    d.at[idx, name + suffix] = v
    return d


def _table(df, eff, kind: str, data: str) -> list[str]:
    sub = df[(df.kind == kind) & (df.data == data)].sort_values(
        ["rows", "chunk_rows", "engine", "workers", "threads"]
    )
    if sub.empty:
        return []
    several_shapes = len(df.groupby(["features", "classes"])) > 1
    lines = [
        "| m | chunk | engine | time [95% CI] | samples/s | vs NumPy 1T | vs NumPy all | "
        "parallel eff. | peak |",
        "|---:|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for idx, r in sub.iterrows():
        e = eff.loc[idx] if idx in eff.index else None
        who = (
            f"Dask, {r.workers} worker{'s' if r.workers > 1 else ''}"
            if r.engine == "dask"
            else f"NumPy, {threads_text(r.threads)}"
        )
        flag = "" if str(r.stable) == "True" else " (unstable)"
        peak = si(r.peak_bytes, "B")

        def f(c: str) -> str:
            if e is None or not math.isfinite(e[c]):
                return "–"
            lo, hi = e.get(f"{c}_low", math.nan), e.get(f"{c}_high", math.nan)
            return f"{e[c]:.2f}" + (
                f" [{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) and math.isfinite(hi) else ""
            )

        shape = f" (n={r.features}, k={r.classes})" if several_shapes else ""
        lines.append(
            f"| {r.rows:,}{shape} | {(r.engine == 'dask' and r.chunk_rows) or '–'} | {who} | "
            f"{si(r.time_median_s, 's')} "
            f"[{si(r.time_ci_low_s, 's')}, {si(r.time_ci_high_s, 's')}]{flag} | "
            f"{si(r.samples_per_s)} | {f('speedup_numpy_1t')} | "
            f"{f('speedup_numpy_all')} | {f('parallel_eff')} | {peak} |"
        )
    return lines


def _plots(out: Path, df, eff) -> list[str]:
    from matplotlib.figure import Figure

    from .plots import save as write_png  # read at each report (tests replace it)

    made = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        write_png(fig, out / name)  # atomic, as every plot of a report
        made.append(name)

    if eff.workers.nunique() > 1:
        fig = Figure(figsize=(11, 4.2))
        axes = fig.subplots(1, 2)
        for key, g in eff.groupby(["kind", "data", "rows", "chunk_rows"]):
            g = g.sort_values("workers")
            label = f"{key[0]} {key[1]} m={key[2]:,}" + (
                f" chunk {key[3]}" if eff.chunk_rows.nunique() > 1 else ""
            )
            for ax, col in zip(axes, ("parallel_eff", "speedup_numpy_1t")):
                per = 1 if col == "parallel_eff" else g.workers
                mid, lo, hi = (g[col + end] / per for end in ("", "_low", "_high"))
                err = np.vstack(
                    [(mid - lo).clip(lower=0).fillna(0), (hi - mid).clip(lower=0).fillna(0)]
                )
                ax.errorbar(g.workers, mid, yerr=err, fmt="o-", capsize=3, label=label)
        for ax, title in zip(
            axes,
            (
                "parallel efficiency  T(1) / (w·T(w))",
                "efficiency against NumPy  T_NumPy,1 thread / (w·T(w))",
            ),
        ):
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax.set_xlabel("Dask workers (1 thread each)")
            ax.set_title(title, fontsize=10)
            ax.set_xticks(sorted(eff.workers.unique()))
            ax.set_ylim(bottom=0)
        _legend(axes[1])
        save(fig, "efficiency.png")
    if df.rows.nunique() > 1:
        fig = Figure(figsize=(11, 4.2))
        axes = fig.subplots(1, 2, sharey=True)
        dask_chunks = df[df.engine == "dask"].chunk_rows
        # the chunk size most points have
        usual = int(dask_chunks.mode().iloc[0]) if len(dask_chunks) else 0
        for ax, data in zip(axes, ("memory", "stream")):
            g = df[
                (df.kind == "gradient")
                & (df.data == data)
                & ((df.engine == "numpy") | (df.chunk_rows == usual))
            ]
            for (engine, workers, threads), h in g.groupby(["engine", "workers", "threads"]):
                h = h.groupby("rows").samples_per_s.median().sort_index()
                label = (
                    f"Dask, {workers} worker{'s' if workers > 1 else ''} (chunks of {usual:,} rows)"
                    if engine == "dask"
                    else f"NumPy, {threads_text(threads)}"
                )
                ax.plot(h.index, h.values, "o-" if engine == "dask" else "s--", label=label)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("m (rows)")
            ax.set_title(
                "full-batch gradient, data "
                f"{'in memory' if data == 'memory' else 'streamed (generated)'}",
                fontsize=10,
            )
            _legend(ax)
        axes[0].set_ylabel("samples / s")
        save(fig, "throughput.png")
    d = df[(df.engine == "dask") & (df.kind == "gradient")]
    if d.chunk_rows.nunique() > 1:
        fig = Figure(figsize=(6, 4.2))
        ax = fig.subplots()
        for (data, m, w), g in d.groupby(["data", "rows", "workers"]):
            if g.chunk_rows.nunique() > 1:
                g = g.sort_values("chunk_rows")
                ax.plot(g.chunk_rows, g.time_median_s, "o-", label=f"{data} m={m:,} w={w}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows per chunk")
        ax.set_ylabel("seconds per gradient")
        _legend(ax)
        save(fig, "chunks.png")
    return made


def _legend(ax) -> None:
    """A legend where the axes have labelled lines (an empty one only warns)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _not_measured(frame: pd.DataFrame, notes: list[str]) -> list[str]:
    """What the reader must know: the reader's notes (damaged rows), and each point that was
    skipped or failed, with why."""
    lines = [f"- {n}" for n in notes]
    for r in frame[frame["status"] != "ok"].itertuples():
        who = f"Dask, {r.workers} workers" if r.backend == "dask" else f"NumPy, {r.threads} threads"
        lines.append(
            f"- {r.kind} m={int(r.samples):,} n={r.features} k={r.classes} "
            f"{'streamed' if r.data == 'stream' else 'in memory'}, {who}, chunks of "
            f"{r.chunk_rows}: {r.status}: {r.reason}"
        )
    return ["## Not measured, and notes", "", *lines, ""] if lines else []


def _what_it_does(df: pd.DataFrame | None, eff: pd.DataFrame | None, r: dict | None) -> list[str]:
    """The report's opening, in plain sentences: Dask's best full-batch gradient in memory at
    the largest m against NumPy with all its threads, the parallel efficiencies, and the
    out-of-core gradient (``r``: out_of_core.json, if any)."""
    said = []
    grad = eff[(eff.kind == "gradient") & (eff.data == "memory")] if eff is not None else None
    grad = grad.dropna(subset=["speedup_numpy_all"]) if grad is not None else []
    if len(grad):
        best = grad[grad.rows == grad.rows.max()].sort_values("time_median_s").iloc[0]
        ratio = best.speedup_numpy_all  # NumPy's time over Dask's
        faster = (
            f"NumPy is {1 / ratio:.1f}x as fast" if ratio < 1 else f"Dask is {ratio:.1f}x as fast"
        )
        said.append(
            f"The full-batch gradient over m = {best.rows:,} rows (n = {best.features}, "
            f"k = {best.classes}, {best['dtype']}) in memory takes "
            f"{si(best.time_median_s, 's')} at best on Dask ({best.workers} worker"
            f"{'s' if best.workers > 1 else ''}, {int(best.chunk_rows):,}-row chunks) and "
            f"{si(best.time_median_s * ratio, 's')} on NumPy with all its threads: {faster}."
        )
    several = pd.Series(dtype=float) if eff is None else eff.parallel_eff.dropna()
    if len(several):
        said.append(
            f"Spread over several workers, a call keeps {several.min():.2f} to "
            f"{several.max():.2f} of one worker's speed per worker (parallel efficiency)."
        )
    if r is not None:
        said.append(
            f"Larger than memory, the gradient over X of {si(r['x_bytes'], 'B')} (RAM: "
            f"{si(r['dask_memory']['host_total_bytes'], 'B')}) takes "
            f"{si(r['dask']['time_median_s'], 's')} on {r['cluster']['workers']} workers."
        )
    return ["## What this hardware does", "", " ".join(said), ""] if said else []


def _out_of_core(r: dict | None) -> list[str]:
    if r is None:
        return []
    d, mem, ref = r["dask"], r["dask_memory"], r["numpy_reference"]
    peaks = ", ".join(si(v, "B") for v in r["worker_peak_rss_bytes"].values())
    return [
        "## Larger than memory",
        "",
        f"The full-batch gradient over m = {r['rows']:,} rows of n = {r['features']} {r['dtype']} "
        f"(X = {si(r['x_bytes'], 'B')}, on a host with {si(mem['host_total_bytes'], 'B')} "
        f"of RAM), generated in {r['chunks']} chunks of {r['chunk_rows']:,} rows, never whole, "
        f"on {r['cluster']['workers']} workers:",
        "",
        "| | |",
        "|---|---|",
        f"| Dask gradient, median of {d['repeats']} [95% CI] | {si(d['time_median_s'], 's')} "
        f"[{si(d['time_ci_low_s'], 's')}, {si(d['time_ci_high_s'], 's')}] "
        f"(first call {r['first_call_s']:.1f} s) |",
        f"| throughput | {si(d['samples_per_s'])} samples/s, {d['gbytes_per_s']:.2f} GB/s |",
        f"| peak RSS per worker ({r['peak_source']}) | {peaks} |",
        f"| peak RSS of the client | {si(r['client_peak_rss_bytes'], 'B')} |",
        "| host memory used at most (all processes, sampled every 0.2 s) | "
        f"{si(mem['host_peak_used_bytes'], 'B')} |",
        f"| tasks; compute / overhead per task | {r['engine']['tasks']:,}; "
        f"{si(r['engine']['compute_per_task_s'], 's')}"
        f" / {si(r['engine']['overhead_per_task_s'], 's')} |",
        f"| NumPy reference (same chunks, one process, one call) | {ref['seconds']:.1f} s, "
        f"{si(ref['samples_per_s'])} samples/s |",
        "| max abs. difference Dask − NumPy (relative) | "
        f"{r['max_abs_diff']:.3g} ({r['max_rel_diff']:.3g}): "
        f"{'equal' if r['equal'] else 'NOT equal'} within rtol {r['tolerance']['rtol']}, "
        f"atol {r['tolerance']['atol']} |",
        "",
    ]


def parallelism_text(probe: dict, eff: pd.DataFrame | None) -> str:
    """What the parallelism probe bounds, and whether the points measured (``eff``, of
    :func:`efficiencies`) exceed it: then the probe read a busier machine than they ran on."""
    n, x = probe["processes"], probe["speedup"]
    text = (
        f"**This machine's parallelism:** {n} busy single-threaded processes together ran "
        f"{x:.2f}x as fast as one alone when probed before the points "
        f"(1-min load {probe['load_average_1min']:.1f}), so parallel efficiency with {n} "
        f"workers should not exceed {x / n:.2f} here, Dask or not"
    )
    above = eff[(eff.workers == n) & (eff.parallel_eff_low > x / n)] if eff is not None else []
    if len(above):
        text += (
            f"; {len(above)} point(s) measured above it (up to {above.parallel_eff.max():.2f}): "
            "the machine was busier while it was probed than while they ran, so this ceiling "
            "reads low"
        )
    return text + "."


def write_report(out: str | Path, frame: pd.DataFrame | None, env: dict, notes: list) -> Path:
    """Write ``out/report.md`` (and the plots) of a scaling set's rows (``frame``, as
    :func:`~softmax_core.report.results.read_set` gives them; None: out_of_core.json only) and
    its environment.json (``env``), with the reader's ``notes``; return its path."""
    out = Path(out)
    lines = ["# Dask scaling: softmax regression's gradient and SGD epoch", ""]
    df = _frame(frame) if frame is not None else None
    eff = efficiencies(df) if df is not None else None
    out_of_core = read_out_of_core(out)
    try:  # every figure of the record read once: one of another shape is said so
        larger = _out_of_core(out_of_core)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        why = f"{out / 'out_of_core.json'} is not an out-of-core run's record ({exc!r})"
        raise InputError(f"{why}; fix: move it away, or rerun scale --out-of-core") from None
    lines += _what_it_does(df, eff, out_of_core)
    mach = env.get("machine", {})
    if mach:
        lines += [
            f"Machine: {mach.get('cpu_model', '?')}, {mach.get('cpu_cores_logical', '?')} cores, "
            f"{si(mach.get('memory_total_bytes'), 'B')} RAM; "
            f"dask {env.get('versions', {}).get('dask', '?')}. "
            "Each Dask worker is one single-threaded process (BLAS on 1 thread).",
            "",
        ]
    if env.get("parallelism"):
        lines += [parallelism_text(env["parallelism"], eff), ""]
    if df is not None:
        if df.others_cpu.notna().any():
            lines += [
                f"Other processes used a median {df.others_cpu.median():.0%} of the CPUs while "
                "points were sampled (points marked unstable had a wide interval or a busy "
                "machine).",
                "",
            ]
        titles = {
            ("gradient", "memory"): "Full-batch gradient, X in memory",
            ("gradient", "stream"): "Full-batch gradient, X streamed (made chunk by chunk "
            "inside the call)",
            ("epoch", "memory"): "One epoch of large-batch SGD, X in memory",
        }
        for (kind, data), title in titles.items():
            table = _table(df, eff, kind, data)
            if table:
                batch = df[(df.kind == kind)].batch.dropna()
                extra = (
                    f" (batch {int(batch.iloc[0]):,}; an m at or below it is one full-batch step)"
                    if kind == "epoch" and len(batch)
                    else ""
                )
                lines += [f"## {title}{extra}", "", *table, ""]
        for name in _plots(out, df, eff):
            lines += [f"![{name}]({name})", ""]
        lines += _not_measured(frame, notes)
    lines += larger
    lines += [
        "Columns: *vs NumPy 1T / all* = NumPy's time (1 BLAS thread / all cores) over this one; "
        "*parallel eff.* = T(1 worker) / (w · T(w)), each with the interval the two times' "
        "intervals span; *peak* = the largest worker's rise of peak RSS during the call "
        "(NumPy: the call's allocations, tracemalloc).",
        "",
    ]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


__all__ = ["write_report", "efficiencies", "is_scaling"]
