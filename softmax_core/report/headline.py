"""The opening of report.md: a few plain sentences of what this hardware does (the structured
and naive gradient at k = 1000, the best batch, where the time goes), and what the reader must
know before believing a number (data notes, unstable points)."""

from __future__ import annotations

import pandas as pd

from ..measure.stats import MAX_OTHERS_CPU
from .analysis import lecture_rows, ok_rows, throughput_table
from .fmt import number, one_line, row_time, si, times

#: How the opening names the naive gradient it quotes.
NAIVE_NAMES = {
    "naive": "the naive one (explicit Jacobian)",
    "naive_batched": "the batched naive one (naive_batched: a batch of explicit Jacobians)",
}

#: A call reaching less than this share (%) of both ceilings is bound by neither.
BOUND_SHARE = 50
#: Below this time, a call bound by neither ceiling is one whose overhead dominates (a call
#: costs Python and dispatch some microseconds); above it, overhead cannot be the reason.
OVERHEAD_S = 1e-3
#: A largest call that takes less than this many times the smallest one's time is overhead.
OVERHEAD_GROWTH = 2


def headline_section(df: pd.DataFrame) -> str:
    """A few plain sentences per set of what this hardware does: the structured and the naive
    gradient at the lecture's (or the largest) size, the best batch of whole epochs, and
    whether the structured gradient is bound by arithmetic or by memory traffic."""
    parts = []
    for set_, g in df.groupby("set", sort=False):
        said = [
            s for s in (_gradients_sentence(g), _best_batch_sentence(g), _bound_sentence(g)) if s
        ]
        if said:
            parts.append(f"**{set_}**: " + " ".join(said))
    return "\n\n".join(parts)


def _gradients_sentence(g: pd.DataFrame) -> str:
    rows, n, k = lecture_rows(g)
    ok = rows[rows["status"] == "ok"] if not rows.empty else rows
    if ok.empty:
        return ""
    b = int(ok["batch"].min())
    at = ok[ok["batch"] == b].set_index("method")
    if "structured" not in at.index:
        return ""
    st = at.loc["structured"]
    text = (
        f"one structured gradient at n = {n}, k = {k}, B = {b} takes {_time(st)} and peaks at "
        f"{si(st['peak_bytes'], 'B')}"
    )
    method = next((m for m in ("naive", "naive_batched") if m in at.index), None)
    if method is not None:
        naive = at.loc[method]
        text += (
            f"; {NAIVE_NAMES[method]} takes {_time(naive)}, "
            f"{times(naive['time_median_s'] / st['time_median_s'])} as long, and peaks at "
            f"{si(naive['peak_bytes'], 'B')}"
        )
    else:
        skipped = rows[(rows["method"] != "structured") & (rows["status"] != "ok")]
        if not skipped.empty:
            text += (
                f"; the naive one would need {si(skipped.iloc[0]['predicted_bytes'], 'B')} "
                "and was not run (see the lecture's table)"
            )
    return text[0].upper() + text[1:] + "."


def _time(row) -> str:
    """A median time with its interval, and ⚠ where the point is not marked stable."""
    return row_time(row) + ("" if row.get("stability") == "stable" else " ⚠")


def _best_batch_sentence(g: pd.DataFrame) -> str:
    t = throughput_table(g)
    epochs = t[(t["source"] == "epoch") & (t["method"] == "structured")]
    if epochs.empty:
        return ""
    best = epochs.loc[epochs["samples_per_s"].idxmax()]
    # batches whose interval reaches the best one's: the data do not tell them apart
    rivals = epochs[
        (epochs.index != best.name) & (epochs["samples_per_s_high"] >= best["samples_per_s_low"])
    ]
    tied = (
        f" (B = {', '.join(str(int(b)) for b in sorted(rivals['batch']))} within its interval)"
        if len(rivals)
        else ""
    )
    return (
        f"Whole SGD epochs run fastest at B = {int(best['batch'])}{tied}: "
        f"{si(best['samples_per_s'])} samples/s, of {len(epochs)} batch size"
        + ("s" if len(epochs) > 1 else "")
        + " measured."
    )


def _bound_sentence(g: pd.DataFrame) -> str:
    s = ok_rows(g, "gradient")
    s = s[s["method"] == "structured"]
    if s.empty or not s["gemm_gflops"].notna().any():
        return ""
    r = s.sort_values(["batch", "classes", "features"]).iloc[-1]  # the largest call measured
    flops = 100 * r["gflops"] / r["gemm_gflops"]
    traffic = 100 * r["gbytes_per_s"] / r["copy_gbps"]
    # overhead: a call too short for anything else, or barely longer than the smallest call
    # (a cost every call pays whatever its size: Dask's scheduling is milliseconds)
    smallest = s["time_median_s"].min() if len(s) > 1 else 0.0
    overhead = r["time_median_s"] < max(OVERHEAD_S, OVERHEAD_GROWTH * smallest)
    if max(flops, traffic) < BOUND_SHARE and overhead:
        which = "neither ceiling: per-call overhead (Python, dispatch, small kernels) dominates"
    elif max(flops, traffic) < BOUND_SHARE:  # too long a call for overhead to be the reason
        which = (
            "neither ceiling: it runs below both probed rates (a busier machine than at the "
            "probe, or kernels slower than the probe's GEMM)"
        )
    elif flops >= traffic:
        which = "arithmetic (GEMM rate)"
    else:
        which = "memory traffic (copy bandwidth)"
    low_probe = (
        " (over 100%: the probe read low, the machine was busier while it was probed)"
        if max(flops, traffic) > 100
        else ""
    )
    return (
        f"At B = {int(r['batch'])} (n = {int(r['features'])}, k = {int(r['classes'])}) the "
        f"structured gradient reaches {number(flops, '.0f')}% of the probed GEMM rate and "
        f"{number(traffic, '.0f')}% of the copy bandwidth{low_probe}: its time goes to {which}."
    )


def notes_section(notes: list[str], df: pd.DataFrame) -> str:
    """What the reader must know before believing a number: data notes and unstable points."""
    lines = [f"- {one_line(n)}" for n in notes]
    ok = ok_rows(df)
    for set_, g in ok.groupby("set", sort=False):
        bad = int((g["stability"] == "unstable").sum())
        if bad:
            lines.append(
                f"- {set_}: {bad} of {len(g)} ok points are not marked stable (their confidence "
                "interval is wider than ±5% of the median, or other processes were busy "
                "meanwhile): drawn hollow, marked **no** ⚠ in every table." + _busy_note(g)
            )
    return "\n".join(lines)


def _busy_note(g: pd.DataFrame) -> str:
    """Which of the two causes: how busy other processes kept the machine."""
    if "others_cpu" not in g:
        return ""
    others = pd.to_numeric(g["others_cpu"], errors="coerce").dropna()
    if others.empty:
        return ""
    busy = int((others > MAX_OTHERS_CPU).sum())
    return (
        f" Other processes used {others.median():.0%} of the CPUs at the median point, more than "
        f"{MAX_OTHERS_CPU:.0%} at {busy} of {len(others)}: "
        + (
            "measure again on a quieter machine."
            if busy
            else "the spread is the machine's own drift."
        )
    )


__all__ = ["headline_section", "notes_section", "BOUND_SHARE"]
