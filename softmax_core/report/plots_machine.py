"""Plots of what each machine achieved: throughput against its bound, the roofline, the time
model's predictions against measurement, the CPU/GPU comparison, and one asv benchmark across
commits.

Same conventions as :mod:`softmax_core.report.plots`: each function returns a Figure or raises
:class:`~softmax_core.report.plots.NotDrawn`; intervals are drawn (bands or bars) wherever the
results hold them; points not marked stable are hollow.
"""

from __future__ import annotations

from itertools import cycle

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..runs.cases import EPOCH_CLASSES, EPOCH_FEATURES
from .analysis import SERIES, cpu_gpu_table, crossovers, ok_rows, throughput_table
from .asv import ASV_UNITS
from .fmt import axis_formatter, si
from .plots import (
    DPI,
    MARKERS,
    METHOD_COLORS,
    NotDrawn,
    Styles,
    ci_bars,
    ci_handle,
    draw_series,
    facets,
    figure_legend,
    hollow_handle,
    hollow_points,
    log_axes,
)

KIND_MARKERS = {"gradient": "o", "epoch": "s"}


def _per_set(ok: pd.DataFrame, row: str, **labels):
    """:func:`facets` with one panel per result set of ``ok``, its axes not shared."""
    sets = list(dict.fromkeys(ok["set"]))
    return facets(
        [row], sets, legend_rows=3, sharey=False, sharex=False, panel=(5.2, 4.0), **labels
    )


def _ci_points(ax, kind: str, method: str, x, ys, stable) -> tuple[bool, bool]:
    """One kind and method's points against ``x``: ``ys``' columns are the median and its CI's
    ends, drawn as bars; colour the method's, marker the kind's, hollow where not ``stable``.
    Returns whether any bar was drawn and whether any point is hollow."""
    color = METHOD_COLORS.get(method, "gray")
    x, stable = np.asarray(x, float), np.asarray(stable, bool)
    y, lo, hi = np.asarray(ys, float).T
    has = np.isfinite(lo) & np.isfinite(hi)
    if has.any():
        ci_bars(ax, x, y, lo, hi, has, color, capsize=2)
    marker = KIND_MARKERS.get(kind, "o")
    hollow_points(ax, x, y, stable, color=color, marker=marker, markersize=5, alpha=0.85)
    return bool(has.any()), not stable.all()


def _kind_handles(ok: pd.DataFrame) -> list:
    """A legend entry per kind of point in ``ok``, with its marker."""
    return [
        Line2D([], [], color="black", marker=KIND_MARKERS[k], linestyle="none", label=k)
        for k in KIND_MARKERS
        if (ok["kind"] == k).any()
    ]


def _series_label(r: dict, varying: list[str]) -> str:
    parts = [r["method"]] if "method" in varying else []
    parts += [str(r[c]) for c in ("dtype", "data") if c in varying and r[c]]
    return ", ".join(parts)


def throughput_vs_batch(df: pd.DataFrame) -> Figure:
    """Samples per second against B, per result set, with the time's CI as a band and the
    machine's bound (the roofline at that set's probed ceilings) dotted.  Left: whole SGD epochs;
    right: single structured gradient calls at the epochs' shape."""
    table = throughput_table(df)
    if table.empty:
        raise NotDrawn(
            f"no epoch rows and no structured gradient rows at n = {EPOCH_FEATURES}, "
            f"k = {EPOCH_CLASSES}"
        )
    sources = [s for s in ("epoch", "gradient") if (table["source"] == s).any()]
    sets = list(dict.fromkeys(table["set"]))
    colors = dict(zip(sets, (f"C{i}" for i in cycle(range(10)))))
    fig, axes = facets(
        ["throughput"],
        sources,
        legend_rows=3,
        panel=(4.2, 3.4),
        xlabel="batch size B",
        ylabel="samples / s",
        title=f"Throughput vs batch size (n = {EPOCH_FEATURES}, k = {EPOCH_CLASSES})",
    )
    handles, bound, interval, hollow = {}, False, False, False
    for (_, source), ax in axes.items():
        at = table[table["source"] == source]
        varying = [c for c in ("method", "dtype", "data") if at[c].nunique() > 1]
        styles = dict(
            zip(
                at[["method", "dtype", "data"]]
                .drop_duplicates()
                .itertuples(index=False, name=None),
                zip(cycle(["-", "--", "-."]), cycle(MARKERS)),
            )
        )
        for (set_, method, dtype, data), pts in at.groupby(
            ["set", "method", "dtype", "data"], sort=False
        ):
            pts = pts.sort_values("batch")
            ls, mk = styles[method, dtype, data]
            interval |= draw_series(
                ax,
                pts["batch"],
                pts["samples_per_s"],
                pts["samples_per_s_low"],
                pts["samples_per_s_high"],
                pts["stability"] == "stable",
                color=colors[set_],
                linestyle=ls,
                marker=mk,
                band=True,
            )
            hollow |= (pts["stability"] != "stable").any()
            if pts["bound_samples_per_s"].notna().any():
                bound = True
                ax.plot(
                    pts["batch"], pts["bound_samples_per_s"], ":", color=colors[set_], linewidth=1.5
                )
            label = ", ".join(p for p in (set_, _series_label(pts.iloc[0], varying)) if p)
            handles.setdefault(
                label, Line2D([], [], color=colors[set_], linestyle=ls, marker=mk, label=label)
            )
        log_axes(ax, table["batch"])
        ax.set_title(
            "whole SGD epochs" if source == "epoch" else "structured gradient calls", fontsize=9
        )
    extra = (
        [Line2D([], [], color="gray", linestyle=":", label="machine bound (roofline)")]
        if bound
        else []
    )
    extra += [Patch(color="gray", alpha=0.3, label="band: 95% CI")] if interval else []
    extra += [hollow_handle()] if hollow else []
    figure_legend(fig, [*handles.values(), *extra])
    return fig


def roofline(df: pd.DataFrame) -> Figure:
    """Achieved GFLOP/s against arithmetic intensity (FLOPs per byte of traffic, cost model), one
    panel per result set, under that set's ceilings from environment.json's probe: the GEMM rate
    (flat) and the copy bandwidth (slope 1).  Colour: method; circle: gradient, square: epoch."""
    ok = ok_rows(df)
    ok = ok[(ok["gflops"] > 0) & (ok["intensity"] > 0)]
    if ok.empty:
        raise NotDrawn("no ok points with FLOPs and traffic")
    fig, axes = _per_set(
        ok,
        "roofline",
        title="Roofline per result set",
        xlabel="arithmetic intensity (FLOPs per byte of traffic)",
        ylabel="achieved FLOP/s",
    )
    interval = hollow = ceilings = False
    for (_, set_), ax in axes.items():
        pts = ok[ok["set"] == set_]
        for (kind, method), g in pts.groupby(["kind", "method"], sort=False):
            flops = 1e9 * g[["gflops", "gflops_low", "gflops_high"]]
            bars, some = _ci_points(ax, kind, method, g["intensity"], flops, g["stable"])
            interval, hollow = interval or bars, hollow or some
        gemm, copy = 1e9 * pts["gemm_gflops"].iloc[0], 1e9 * pts["copy_gbps"].iloc[0]
        xs = np.geomspace(
            min(pts["intensity"].min(), 0.05) / 2, max(pts["intensity"].max(), 100) * 2, 200
        )
        if np.isfinite(gemm) and np.isfinite(copy):
            ceilings = True
            ax.plot(xs, np.minimum(gemm, copy * xs), color="black", linewidth=1.5)
            ax.text(
                xs[-1], gemm * 1.15, f"GEMM {si(gemm, 'FLOP/s')} (probe)", ha="right", fontsize=7
            )
            x0 = xs[0] * 3  # under the bandwidth slope, which rises away from the text
            ax.text(
                x0,
                copy * x0 / 2,
                f"copy {si(copy, 'B/s')} (probe)",
                ha="left",
                va="top",
                fontsize=7,
            )
            title = set_
        else:
            title = f"{set_} (no probe: no ceilings)"
        log_axes(ax, [])
        ax.yaxis.set_major_formatter(axis_formatter("FLOP/s"))
        ax.set_title(title, fontsize=9)
    kinds = _kind_handles(ok)
    if ceilings:
        kinds.append(
            Line2D([], [], color="black", label="ceilings: min(GEMM rate, bandwidth x intensity)")
        )
    # sets have their own panels: no entry per set
    handles = Styles(ok).handles(interval=interval, hollow=hollow, extra=kinds, variants=False)
    figure_legend(fig, handles)
    return fig


def predicted_vs_measured(df: pd.DataFrame) -> Figure:
    """Measured time (with its CI) against the time model's ``predicted_time_s``, log-log, one
    panel per result set; the diagonal is a perfect prediction, the band a factor of 2."""
    ok = ok_rows(df)
    ok = ok[ok["predicted_time_s"] > 0]
    if ok.empty:
        raise NotDrawn("no ok point has a predicted time (predicted_time_s)")
    fig, axes = _per_set(
        ok,
        "model",
        xlabel="predicted time",
        ylabel="measured time (median)",
        title="Measured vs predicted time (time model)",
    )
    interval = hollow = False
    for (_, set_), ax in axes.items():
        pts = ok[ok["set"] == set_]
        span = np.array(
            [
                min(pts["predicted_time_s"].min(), pts["time_median_s"].min()) / 1.5,
                max(pts["predicted_time_s"].max(), pts["time_median_s"].max()) * 1.5,
            ]
        )
        ax.plot(span, span, color="black", linewidth=1)
        ax.fill_between(span, span / 2, span * 2, color="gray", alpha=0.15, linewidth=0)
        for (kind, method), g in pts.groupby(["kind", "method"], sort=False):
            g = g.sort_values("predicted_time_s")
            times = g[["time_median_s", "time_ci_low_s", "time_ci_high_s"]]
            bars, some = _ci_points(ax, kind, method, g["predicted_time_s"], times, g["stable"])
            interval, hollow = interval or bars, hollow or some
        log_axes(ax, [], yunit="s")
        ax.xaxis.set_major_formatter(axis_formatter("s"))
        ax.set_title(set_, fontsize=9)
    extra = [
        *_kind_handles(ok),
        Line2D([], [], color="black", label="measured = predicted"),
        Patch(color="gray", alpha=0.3, label="within a factor of 2"),
    ]
    handles = Styles(ok).handles(interval=interval, hollow=hollow, extra=extra, variants=False)
    figure_legend(fig, handles)
    return fig


def cpu_vs_gpu(df: pd.DataFrame) -> Figure:
    """CPU time / GPU time against B for every point measured on both, one panel per kind and
    method; above 1 the GPU is faster.  The crossover batch size is marked where there is one."""
    table = cpu_gpu_table(df)
    if table.empty:
        raise NotDrawn("needs a CPU set and a GPU set with points in common")
    table = table.assign(
        panel=np.where(table["kind"] == "epoch", "whole epochs", table["method"] + " gradient")
    )
    panels = list(dict.fromkeys(table.sort_values("kind", ascending=False)["panel"]))
    cross = crossovers(table)
    fig, axes = facets(
        ["speedup"],
        panels,
        legend_rows=3,
        title="CPU time / GPU time",
        panel=(3.6, 3.0),
        xlabel="batch size B",
        ylabel="CPU time / GPU time",
    )
    interval = False
    labels = {}
    for (_, panel), ax in axes.items():
        at = table[table["panel"] == panel]
        ax.axhline(1, color="black", linewidth=1)
        for i, (key, g) in enumerate(at.groupby(["cpu_set", "gpu_set", *SERIES], sort=False)):
            g = g.sort_values("batch")
            color = f"C{i % 10}"
            stable = (g["stable_cpu"] & g["stable_gpu"]).to_numpy(bool)
            interval |= draw_series(
                ax,
                g["batch"],
                g["speedup"],
                g["speedup_low"],
                g["speedup_high"],
                stable,
                color=color,
            )
            r = dict(zip(["cpu_set", "gpu_set", *SERIES], key))
            label = (
                (f"n={r['features']}, k={r['classes']}" if r["kind"] == "gradient" else "epoch")
                + (f", {r['data']}" if r["data"] else "")
                + (f", {r['dtype']}" if table["dtype"].nunique() > 1 else "")
            )
            if table["cpu_set"].nunique() * table["gpu_set"].nunique() > 1:
                label += f" ({r['cpu_set']} / {r['gpu_set']})"
            labels.setdefault(label, Line2D([], [], color=color, marker="o", label=label))
            c = cross[(cross[list(r)] == pd.Series(r)).all(axis=1)]
            if (
                not c.empty
                and pd.notna(c["crossover_batch"].iloc[0])
                and pd.notna(c["below_batch"].iloc[0])
            ):
                ax.axvline(c["crossover_batch"].iloc[0], color=color, linestyle=":", linewidth=1)
        log_axes(ax, table["batch"])
        ax.set_title(panel, fontsize=9)
    extra = [Line2D([], [], color="gray", linestyle=":", label="crossover batch size")]
    extra += [ci_handle("bars: 95% CI")] if interval else []
    figure_legend(fig, [*labels.values(), *extra])
    return fig


def asv_history(rows: pd.DataFrame, benchmark: str, commits: list[str]) -> Figure:
    """One asv benchmark across commits (oldest to newest), one line per parameter set, with asv's
    confidence interval as bars (its interquartile range where it stored no CI)."""
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        raise NotDrawn(f"asv benchmark {benchmark} has no successful result")
    pos = {c: i for i, c in enumerate(commits)}
    fig = Figure(figsize=(7.5, 4.8), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for i, (series, pts) in enumerate(ok.groupby("series", sort=False)):
        pts = pts.sort_values("date")
        color = f"C{i % 10}"
        x = pts["commit_hash"].map(pos)
        draw_series(ax, x, pts["value"], pts["low"], pts["high"], pts["stable"], color=color)
        ax.plot([], [], color=color, marker="o", label=series)
    ax.set_xticks(range(len(commits)))
    ax.set_xticklabels(
        [c[:8] for c in commits], rotation=45 if len(commits) > 4 else 0, ha="right", fontsize=8
    )
    unit = ok["unit"].iloc[0] or ""
    values = ok["value"]
    if values.min() > 0 and values.max() / values.min() > 30:
        ax.set_yscale("log")
    if unit in ASV_UNITS:
        ax.yaxis.set_major_formatter(axis_formatter(ASV_UNITS[unit]))
    ax.set_xlabel("commit (oldest to newest)")
    ax.set_ylabel({"seconds": "time", "bytes": "bytes"}.get(unit, unit or "value"))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    subtitle = rows.attrs.get("subtitle", "")
    ax.set_title(f"asv: {benchmark}" + (f"\n{subtitle}" if subtitle else ""), fontsize=9)
    return fig


__all__ = ["throughput_vs_batch", "roofline", "predicted_vs_measured", "cpu_vs_gpu", "asv_history"]
