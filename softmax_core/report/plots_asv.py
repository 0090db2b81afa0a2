"""The plot of one asv benchmark across commits."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from .fmt import axis_formatter
from .plots import DPI, NotDrawn, draw_series


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
        draw_series(
            ax,
            pts["commit_hash"].map(pos),
            pts["value"],
            pts["low"],
            pts["high"],
            pts["stable"],
            color=f"C{i % 10}",
        )
        ax.plot([], [], color=f"C{i % 10}", marker="o", label=series)
    ax.set_xticks(range(len(commits)))
    ax.set_xticklabels(
        [c[:8] for c in commits], rotation=45 if len(commits) > 4 else 0, ha="right", fontsize=8
    )
    unit = ok["unit"].iloc[0] or ""
    values = ok["value"]
    if values.min() > 0 and values.max() / values.min() > 30:
        ax.set_yscale("log")
    if unit in ("seconds", "bytes"):
        ax.yaxis.set_major_formatter(axis_formatter({"seconds": "s", "bytes": "B"}[unit]))
    ax.set_xlabel("commit (oldest to newest)")
    ax.set_ylabel({"seconds": "time", "bytes": "bytes"}.get(unit, unit or "value"))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    subtitle = rows.attrs.get("subtitle", "")
    ax.set_title(f"asv: {benchmark}" + (f"\n{subtitle}" if subtitle else ""), fontsize=9)
    return fig


__all__ = ["asv_history"]
