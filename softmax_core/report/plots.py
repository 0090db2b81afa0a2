"""Plots of how a gradient scales: time against k and against B, peak memory, naive/structured.

Each function takes the results table and returns a matplotlib :class:`Figure` (not yet
saved), or raises :class:`NotDrawn` saying why it cannot be drawn.  The grids are faceted:
one panel per (n, B) or (n, k) of the grid, so any custom grid is drawn whole.  Every time is
drawn with its 95% confidence interval (bars) where the results file has one; a point not
marked stable is drawn hollow.  Colour is the method; line style and marker tell result sets
(and dtypes or data sources, where several) apart; one legend per figure.
"""

from __future__ import annotations

import io
import math
from itertools import cycle
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from ..fileio import atomic_write_bytes
from .analysis import SYMBOL, method_rank, ok_rows
from .fmt import axis_formatter

DPI = 110
PANEL = (2.9, 2.3)  # inches per facet
MAX_COLS = 4
METHOD_COLORS = {"structured": "tab:blue", "naive": "tab:red", "naive_batched": "tab:orange"}
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")
VARIANT = ["set", "dtype", "data"]


class NotDrawn(Exception):
    """Why a plot cannot be drawn from these results."""


def save(fig: Figure, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    atomic_write_bytes(path, buf.getvalue())


def facets(
    row_values,
    col_values,
    *,
    title: str,
    legend_rows: int = 1,
    sharey: bool = True,
    sharex: bool = True,
    panel: tuple[float, float] = PANEL,
    xlabel: str = "",
    ylabel: str = "",
):
    """A figure with one panel per (row value, column value); columns wrap after :data:`MAX_COLS`
    (each row value starting a new line of panels).  Returns (figure, {(row, col): axes})."""
    row_values, col_values = list(row_values), list(col_values)
    ncols = (
        len(col_values)
        if len(col_values) <= MAX_COLS
        else min((MAX_COLS, MAX_COLS - 1), key=lambda c: (-len(col_values) % c, -c))
    )
    lines = math.ceil(len(col_values) / ncols)
    nrows = len(row_values) * lines
    fig = Figure(
        figsize=(panel[0] * ncols + 0.6, panel[1] * nrows + 0.6 + 0.22 * legend_rows),
        dpi=DPI,
        layout="constrained",
    )
    grid = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey)
    axes, used = {}, set()
    for r, rv in enumerate(row_values):
        for c, cv in enumerate(col_values):
            at = (r * lines + c // ncols, c % ncols)
            axes[rv, cv] = grid[at]
            used.add(at)
    for (r, c), ax in np.ndenumerate(grid):
        if (r, c) not in used:
            ax.remove()
        elif (r + 1, c) not in used:  # the lowest panel of its column: x ticks and label
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel(xlabel, fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.supylabel(ylabel, fontsize=9)
    return fig, axes


def log_axes(ax, xs, ylabel: str = "", yunit: str | None = None) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    # minor log ticks cost seconds per figure, and say little
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_locator(NullLocator())
    for axis, (lo, hi) in ((ax.yaxis, ax.get_ylim()), (ax.xaxis, ax.get_xlim())):
        # under two decades: label 1, 2 and 5 of each, not just one tick
        narrow = lo > 0 and hi / lo < 100
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if narrow else (1.0,), numticks=7))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ticks = sorted({float(v) for v in xs if np.isfinite(v)})
    if 0 < len(ticks) <= 8:
        ax.set_xticks(ticks)
    if len(ticks) == 1:  # one x value: a log axis needs room around it
        ax.set_xlim(ticks[0] / 2, ticks[0] * 2)
    if yunit is not None:
        ax.yaxis.set_major_formatter(axis_formatter(yunit))
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, which="major", alpha=0.3)


def draw_series(
    ax,
    x,
    y,
    low=None,
    high=None,
    stable=None,
    *,
    color,
    linestyle="-",
    marker="o",
    band: bool = False,
) -> bool:
    """A line with its interval (error bars, or a band) and markers, hollow where not stable.
    Returns whether any interval was drawn."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ax.plot(x, y, linestyle=linestyle, color=color, linewidth=1.2)
    drew = False
    if low is not None and high is not None:
        lo, hi = np.asarray(low, float), np.asarray(high, float)
        has = np.isfinite(lo) & np.isfinite(hi)
        if has.any():
            drew = True
            if band:
                ax.fill_between(
                    x,
                    np.where(has, lo, y),
                    np.where(has, hi, y),
                    color=color,
                    alpha=0.2,
                    linewidth=0,
                )
            else:
                ci_bars(ax, x, y, lo, hi, has, color, elinewidth=1, capsize=2.5)
    stable = np.ones(len(x), bool) if stable is None else np.asarray(stable, bool)
    hollow_points(ax, x, y, stable, color=color, marker=marker)
    return drew


def ci_bars(ax, x, y, lo, hi, has, color, **style) -> None:
    """Error bars from the median ``y`` to its interval's ends ``lo`` and ``hi``, where ``has``."""
    yerr = [np.maximum(y - lo, 0)[has], np.maximum(hi - y, 0)[has]]
    ax.errorbar(x[has], y[has], yerr=yerr, fmt="none", ecolor=color, **style)


def hollow_points(ax, x, y, stable, *, color, marker="o", markersize=4.5, **style) -> None:
    """Markers of one series: filled where ``stable``, hollow where not."""
    for mask, face in ((stable, color), (~stable, "white")):
        if mask.any():
            ax.plot(
                x[mask],
                y[mask],
                linestyle="none",
                marker=marker,
                color=color,
                markerfacecolor=face,
                markersize=markersize,
                **style,
            )


def ci_handle(label: str = "bars: 95% CI of the median") -> Line2D:
    """The legend entry of interval bars."""
    return Line2D([], [], color="gray", marker="|", linestyle="none", markersize=10, label=label)


def hollow_handle(label: str = "hollow: not marked stable") -> Line2D:
    """The legend entry of hollow (not stable) points."""
    return Line2D(
        [], [], color="gray", marker="o", markerfacecolor="white", linestyle="none", label=label
    )


class Styles:
    """Colour per method; line style and marker per variant (set, dtype, data source)."""

    def __init__(self, df: pd.DataFrame):
        variants = df[VARIANT].drop_duplicates().itertuples(index=False, name=None)
        self.variants = sorted(variants)
        self.varying = [c for c in VARIANT if df[c].nunique() > 1]
        self.style = dict(zip(self.variants, zip(cycle(LINESTYLES), cycle(MARKERS))))
        self.methods = sorted(df["method"].unique(), key=method_rank)

    def variant_label(self, variant) -> str:
        parts = dict(zip(VARIANT, variant))
        return ", ".join(str(parts[c]) or "—" for c in self.varying)

    def handles(self, *, interval: bool, hollow: bool, extra=(), variants: bool = True) -> list:
        """Legend entries: each method, each variant (with ``variants``, where several), the
        intervals and hollow points where drawn, then ``extra``."""
        out = [
            Line2D([], [], color=METHOD_COLORS.get(m, "gray"), marker="o", label=m)
            for m in self.methods
        ]
        if variants and len(self.variants) > 1:
            out += [
                Line2D([], [], color="black", linestyle=ls, marker=mk, label=self.variant_label(v))
                for v, (ls, mk) in self.style.items()
            ]
        out += [ci_handle()] if interval else []
        return out + ([hollow_handle()] if hollow else []) + list(extra)


def figure_legend(fig: Figure, handles: list) -> None:
    """One legend under the panels, in up to 4 columns as the figure's width allows."""
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(len(handles), max(1, min(4, int(fig.get_figwidth() / 2.3)))),
        fontsize=8,
        frameon=False,
    )


def legend_rows(handles: int) -> int:
    return math.ceil(handles / 4)


def sizes(values) -> list[int]:
    return sorted(int(v) for v in pd.unique(values))


def time_facets(df: pd.DataFrame, x: str) -> Figure:
    """Gradient time against ``x`` (``classes`` or ``batch``), one panel per n and the other
    size."""
    other = "batch" if x == "classes" else "classes"
    grads = df[df["kind"] == "gradient"]
    ok = ok_rows(grads)
    if ok.empty:
        raise NotDrawn("no ok gradient points")
    ns, others = sizes(grads["features"]), sizes(grads[other])
    styles = Styles(ok)
    handles_n = len(styles.methods) + len(styles.variants) * (len(styles.variants) > 1) + 2
    name = {"classes": "classes k", "batch": "batch size B"}[x]
    fig, axes = facets(
        ns,
        others,
        legend_rows=legend_rows(handles_n),
        xlabel=name,
        ylabel="time per gradient (median)",
        title=f"Gradient time vs {name}, every n and {SYMBOL[other]} of the grid",
    )
    interval = hollow = False
    for (n, o), ax in axes.items():
        at = ok[(ok["features"] == n) & (ok[other] == o)]
        for (method, *variant), pts in at.groupby(["method", *VARIANT], sort=False):
            pts = pts.sort_values(x)
            ls, mk = styles.style[tuple(variant)]
            interval |= draw_series(
                ax,
                pts[x],
                pts["time_median_s"],
                pts["time_ci_low_s"],
                pts["time_ci_high_s"],
                pts["stable"],
                color=METHOD_COLORS.get(method, "gray"),
                linestyle=ls,
                marker=mk,
            )
            hollow |= not pts["stable"].all()
        if at.empty:
            ax.text(
                0.5,
                0.5,
                "no point ran",
                transform=ax.transAxes,
                ha="center",
                va="center",
                fontsize=8,
            )
        log_axes(ax, grads[x], yunit="s")
        ax.set_title(f"n = {n}, {SYMBOL[other]} = {o}", fontsize=9)
    figure_legend(fig, styles.handles(interval=interval, hollow=hollow))
    return fig


def time_vs_classes(df: pd.DataFrame) -> Figure:
    """Time of one gradient against k, one panel per (n, B): the lecture predicts slope 2
    for naive (a k x nk Jacobian per example) and 1 for structured."""
    return time_facets(df, "classes")


def time_vs_batch(df: pd.DataFrame) -> Figure:
    """Time of one gradient against B, one panel per (n, k)."""
    return time_facets(df, "batch")


__all__ = [
    "NotDrawn",
    "save",
    "facets",
    "draw_series",
    "Styles",
    "figure_legend",
    "ci_handle",
    "hollow_handle",
    "hollow_points",
    "ci_bars",
    "log_axes",
    "time_vs_classes",
    "time_vs_batch",
    "METHOD_COLORS",
]
