"""Plots of the naive gradient against the structured one: peak memory against k with the cost
model's prediction, and the naive/structured ratios of time and memory.  Drawn as
:mod:`.plots` draws (facets, intervals, hollow unstable points)."""

from __future__ import annotations

from itertools import cycle

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..model.cost import gradient_cost
from .analysis import ratio_table
from .plots import (
    MARKERS,
    METHOD_COLORS,
    VARIANT,
    NotDrawn,
    Styles,
    ci_handle,
    draw_series,
    facets,
    figure_legend,
    hollow_handle,
    legend_rows,
    log_axes,
    sizes,
)


def memory_vs_classes(df: pd.DataFrame) -> Figure:
    """Peak memory above the inputs against k, one panel per (n, B): the cost model's prediction
    (lines, per method, in the points' dtype), measured peaks (markers), points not run (crosses
    at their predicted peak)."""
    grads = df[df["kind"] == "gradient"]
    measured = grads[(grads["status"] == "ok") & grads["peak_bytes"].notna()]
    if measured.empty:
        raise NotDrawn("no ok gradient points with a measured peak")
    ns, batches = sizes(grads["features"]), sizes(grads["batch"])
    styles = Styles(grads)
    fig, axes = facets(
        ns,
        batches,
        legend_rows=2,
        xlabel="classes k",
        ylabel="peak memory above the inputs",
        title="Peak memory above the inputs vs k: measured (markers) and cost model (lines)",
    )
    dtype = grads["dtype"].mode().iloc[0]
    ks = np.unique(
        np.geomspace(grads["classes"].min(), grads["classes"].max(), 40).round().astype(int)
    )
    missed = False
    for (n, b), ax in axes.items():
        at = grads[(grads["features"] == n) & (grads["batch"] == b)]
        for method in styles.methods:
            color = METHOD_COLORS.get(method, "gray")
            ax.plot(
                ks,
                [gradient_cost(method, b, n, int(k), dtype).peak_bytes for k in ks],
                "--" if method == "naive_batched" else "-",
                color=color,
                linewidth=1,
                alpha=0.8,
            )
            for variant, pts in at[at["method"] == method].groupby(VARIANT, sort=False):
                mk = styles.style[variant][1]
                run = pts[(pts["status"] == "ok") & pts["peak_bytes"].notna()]
                ax.plot(
                    run["classes"],
                    run["peak_bytes"],
                    mk,
                    color=color,
                    markersize=5,
                    linestyle="none",
                )
                miss = pts[pts["status"] != "ok"]
                missed |= not miss.empty
                ax.plot(miss["classes"], miss["predicted_bytes"], "x", color=color, markersize=6)
        log_axes(ax, grads["classes"], yunit="B")
        ax.set_title(f"n = {n}, B = {b}", fontsize=9)
    extra = [Line2D([], [], color="gray", label=f"cost model ({dtype})")]
    if missed:
        extra.append(
            Line2D([], [], color="gray", marker="x", linestyle="none", label="not run (predicted)")
        )
    figure_legend(fig, styles.handles(interval=False, hollow=False, extra=extra))
    return fig


def ratio_vs_classes(df: pd.DataFrame) -> Figure:
    """Naive over structured against k: time (top row, with the ratio's interval) and peak memory
    (bottom row), one column per n, one colour per batch size; dotted: the cost model's ratio
    (FLOPs for time, peak bytes for memory); dashed grey: the lecture's ratio k."""
    ratios = ratio_table(df)
    if ratios.empty:
        raise NotDrawn("no k with both naive and structured measured at the same B and n")
    ns, batches = sizes(ratios["features"]), sizes(ratios["batch"])
    colors = dict(zip(batches, _batch_colors(len(batches))))
    sets = sorted(ratios["set"].unique())
    markers = dict(zip(sets, cycle(MARKERS)))
    styles = dict(zip(sets, cycle(("-", "--", "-."))))  # dotted is the cost model
    fig, axes = facets(
        ["time", "peak memory"],
        ns,
        legend_rows=legend_rows(len(batches) + len(sets) + 3),
        sharey=False,
        title="Naive / structured vs k",
        xlabel="classes k",
    )
    interval = hollow = False
    for (what, n), ax in axes.items():
        col = "time_ratio" if what == "time" else "memory_ratio"
        model = "predicted_flops_ratio" if what == "time" else "predicted_memory_ratio"
        at = ratios[ratios["features"] == n]
        ks = np.array(sorted(at["classes"].unique()), float)
        # "_": seen at one k too
        ax.plot(ks, ks, "--", color="gray", linewidth=1, marker="_", markersize=9)
        for (set_, b, _dtype), pts in at.groupby(["set", "batch", "dtype"], sort=False):
            pts = pts.sort_values("classes")
            ax.plot(
                pts["classes"],
                pts[model],
                ":",
                color=colors[int(b)],
                linewidth=1.2,
                marker="_",
                markersize=9,
            )
            if pts[col].notna().any():
                lo, hi = (
                    (pts["time_ratio_low"], pts["time_ratio_high"])
                    if what == "time"
                    else (None, None)
                )
                interval |= draw_series(
                    ax,
                    pts["classes"],
                    pts[col],
                    lo,
                    hi,
                    pts["stable"],
                    color=colors[int(b)],
                    marker=markers[set_],
                    linestyle=styles[set_],
                )
                hollow |= not pts["stable"].all()
        log_axes(ax, ratios["classes"], ylabel=f"naive / structured, {what}")
        ax.set_title(f"{what}, n = {n}", fontsize=9)
    handles = [Line2D([], [], color=colors[b], marker="o", label=f"B = {b}") for b in batches]
    if len(sets) > 1:
        handles += [
            Line2D([], [], color="black", marker=markers[s], linestyle=styles[s], label=s)
            for s in sets
        ]
    handles += [
        Line2D([], [], color="gray", linestyle=":", label="cost model"),
        Line2D([], [], color="gray", linestyle="--", label="k (lecture)"),
    ]
    handles += [ci_handle("bars: 95% interval of the ratio")] if interval else []
    handles += [hollow_handle("hollow: a point not marked stable")] if hollow else []
    figure_legend(fig, handles)
    return fig


def _batch_colors(count: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.9 * i / max(count - 1, 1)) for i in range(count)]


__all__ = ["memory_vs_classes", "ratio_vs_classes"]
