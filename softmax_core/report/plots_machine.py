"""Plots of what each machine achieved: throughput against its bound, the roofline, the time
model's predictions against measurement, the CPU/GPU comparison, and asv history.

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
from .fmt import axis_formatter, si
from .plots import (
    MARKERS,
    METHOD_COLORS,
    NotDrawn,
    Styles,
    draw_series,
    facets,
    figure_legend,
    log_axes,
)

KIND_MARKERS = {"gradient": "o", "epoch": "s"}
_CI = Line2D(
    [], [], color="gray", marker="|", linestyle="none", markersize=10, label="bars: 95% CI"
)
_HOLLOW = Line2D(
    [],
    [],
    color="gray",
    marker="o",
    markerfacecolor="white",
    linestyle="none",
    label="hollow: not marked stable",
)


def _points(ax, x, y, stable, marker: str, color) -> None:
    """Points of one series: filled where stable, hollow where not."""
    for mask, face in ((stable, color), (~stable, "white")):
        ax.plot(
            x[mask],
            y[mask],
            marker,
            color=color,
            markerfacecolor=face,
            linestyle="none",
            markersize=5,
            alpha=0.85,
        )


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
        sharey=True,
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
    figure_legend(fig, [*handles.values(), *extra, *([_HOLLOW] if hollow else [])])
    return fig


def roofline(df: pd.DataFrame) -> Figure:
    """Achieved GFLOP/s against arithmetic intensity (FLOPs per byte of traffic, cost model), one
    panel per result set, under that set's ceilings from environment.json's probe: the GEMM rate
    (flat) and the copy bandwidth (slope 1).  Colour: method; circle: gradient, square: epoch."""
    ok = ok_rows(df)
    ok = ok[(ok["gflops"] > 0) & (ok["intensity"] > 0)]
    if ok.empty:
        raise NotDrawn("no ok points with FLOPs and traffic")
    sets = list(dict.fromkeys(ok["set"]))
    fig, axes = facets(
        ["roofline"],
        sets,
        legend_rows=3,
        sharey=False,
        sharex=False,
        title="Roofline per result set",
        panel=(5.2, 4.0),
        xlabel="arithmetic intensity (FLOPs per byte of traffic)",
        ylabel="achieved FLOP/s",
    )
    styles = Styles(ok)
    interval = hollow = ceilings = False
    for (_, set_), ax in axes.items():
        pts = ok[ok["set"] == set_]
        for (kind, method), g in pts.groupby(["kind", "method"], sort=False):
            color = METHOD_COLORS.get(method, "gray")
            stable = g["stable"].to_numpy(bool)
            x, y = g["intensity"].to_numpy(float), 1e9 * g["gflops"].to_numpy(float)
            lo, hi = 1e9 * g["gflops_low"].to_numpy(float), 1e9 * g["gflops_high"].to_numpy(float)
            has = np.isfinite(lo) & np.isfinite(hi)
            if has.any():
                interval = True
                ax.errorbar(
                    x[has],
                    y[has],
                    fmt="none",
                    ecolor=color,
                    capsize=2,
                    yerr=[np.maximum(y - lo, 0)[has], np.maximum(hi - y, 0)[has]],
                )
            _points(ax, x, y, stable, KIND_MARKERS.get(kind, "o"), color)
            hollow |= not stable.all()
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
    kinds = [
        Line2D([], [], color="black", marker=KIND_MARKERS[k], linestyle="none", label=k)
        for k in KIND_MARKERS
        if (ok["kind"] == k).any()
    ]
    styles.variants = []  # sets have their own panels
    if ceilings:
        kinds.append(
            Line2D([], [], color="black", label="ceilings: min(GEMM rate, bandwidth x intensity)")
        )
    figure_legend(fig, styles.handles(interval=interval, hollow=hollow, extra=kinds))
    return fig


def predicted_vs_measured(df: pd.DataFrame) -> Figure:
    """Measured time (with its CI) against the time model's ``predicted_time_s``, log-log, one
    panel per result set; the diagonal is a perfect prediction, the band a factor of 2."""
    ok = ok_rows(df)
    ok = ok[ok["predicted_time_s"] > 0]
    if ok.empty:
        raise NotDrawn("no ok point has a predicted time (predicted_time_s)")
    sets = list(dict.fromkeys(ok["set"]))
    fig, axes = facets(
        ["model"],
        sets,
        legend_rows=3,
        sharey=False,
        sharex=False,
        panel=(5.2, 4.0),
        xlabel="predicted time",
        ylabel="measured time (median)",
        title="Measured vs predicted time (time model)",
    )
    styles = Styles(ok)
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
            x, y = g["predicted_time_s"].to_numpy(float), g["time_median_s"].to_numpy(float)
            lo, hi = g["time_ci_low_s"].to_numpy(float), g["time_ci_high_s"].to_numpy(float)
            has = np.isfinite(lo) & np.isfinite(hi)
            color = METHOD_COLORS.get(method, "gray")
            if has.any():
                interval = True
                ax.errorbar(
                    x[has],
                    y[has],
                    yerr=[np.maximum(y - lo, 0)[has], np.maximum(hi - y, 0)[has]],
                    fmt="none",
                    ecolor=color,
                    capsize=2,
                )
            stable = g["stable"].to_numpy(bool)
            hollow |= not stable.all()
            _points(ax, x, y, stable, KIND_MARKERS.get(kind, "o"), color)
        log_axes(ax, [], yunit="s")
        ax.xaxis.set_major_formatter(axis_formatter("s"))
        ax.set_title(set_, fontsize=9)
    styles.variants = []
    kinds = [
        Line2D([], [], color="black", marker=KIND_MARKERS[k], linestyle="none", label=k)
        for k in KIND_MARKERS
        if (ok["kind"] == k).any()
    ]
    figure_legend(
        fig,
        styles.handles(
            interval=interval,
            hollow=hollow,
            extra=kinds
            + [
                Line2D([], [], color="black", label="measured = predicted"),
                Patch(color="gray", alpha=0.3, label="within a factor of 2"),
            ],
        ),
    )
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
        sharey=True,
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
    figure_legend(fig, [*labels.values(), *extra, *([_CI] if interval else [])])
    return fig


__all__ = ["throughput_vs_batch", "roofline", "predicted_vs_measured", "cpu_vs_gpu"]
