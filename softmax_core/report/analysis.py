"""Analysis: DataFrame in, DataFrame out.  Fitted exponents with intervals, naive/structured
ratios, throughput against the machine's bound, the lecture's table, the time model's error,
and the CPU/GPU comparison with its crossover batch size.

Every predicted number comes from the rows' ``predicted_*`` columns (the cost model, filled by
:func:`softmax_core.report.results.derive` where a file lacks them); the only formula here is
the roofline itself, ``max(FLOPs / GEMM rate, traffic / copy bandwidth)``, with the ceilings the
sweep probed on that set's machine.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..model.cost import METHODS, roofline_seconds
from ..runs.cases import EPOCH_CLASSES, EPOCH_FEATURES
from .fmt import number

#: A fitted exponent whose 95% interval is wider than +-this is flagged, not stated.
WIDE_SLOPE = 0.25
#: z of a two-sided 95% interval; Student's t for 1 to 30 degrees of freedom.
Z95 = 1.96
_T95 = """12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 2.201 2.179 2.160 2.145 2.131
2.120 2.110 2.101 2.093 2.086 2.080 2.074 2.069 2.064 2.060 2.056 2.052 2.048 2.045 2.042"""
T95 = tuple(map(float, _T95.split()))
LECTURE_N = LECTURE_K = 1000
LECTURE_BATCH = 96
#: What identifies a series of points along batch size (the key without the batch).
SERIES = ["kind", "method", "features", "classes", "dtype", "data"]
#: The letter of each size, as the lecture writes it.
SYMBOL = {"batch": "B", "features": "n", "classes": "k"}


def method_rank(method: str) -> int:
    return METHODS.index(method) if method in METHODS else len(METHODS)


def ok_rows(df: pd.DataFrame, kind: str | None = None) -> pd.DataFrame:
    ok = df[df["status"] == "ok"]
    return ok if kind is None else ok[ok["kind"] == kind]


def _t95(dof: int) -> float:
    return T95[dof - 1] if dof <= len(T95) else Z95


def fit_loglog(x, y, low=None, high=None) -> dict:
    """Least-squares exponent p of y ~ x**p, with a 95% interval.

    The interval's half-width is the larger of the fit's own (Student's t on the
    residuals, with 3 or more points) and what the points' confidence intervals
    (``low``, ``high``) allow on their own.  Points with a non-positive or
    non-finite coordinate are ignored.  Returns ``slope``, ``low``, ``high``,
    ``half_width`` (NaN where no interval can be given) and ``points``.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    lo = np.full_like(y, np.nan) if low is None else np.asarray(low, dtype=float)
    hi = np.full_like(y, np.nan) if high is None else np.asarray(high, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y, lo, hi = np.log(x[keep]), np.log(y[keep]), lo[keep], hi[keep]
    out = {
        "slope": math.nan,
        "low": math.nan,
        "high": math.nan,
        "half_width": math.nan,
        "points": int(np.unique(x).size),
    }
    if out["points"] < 2:
        return out
    slope, intercept = np.polyfit(x, y, 1)
    sxx = float(((x - x.mean()) ** 2).sum())
    halves = []
    if x.size >= 3:
        dof = x.size - 2
        rss = float(((y - (slope * x + intercept)) ** 2).sum())
        halves.append(_t95(dof) * math.sqrt(rss / dof / sxx))
    if np.all(np.isfinite(lo) & np.isfinite(hi) & (lo > 0) & (hi > 0)):
        sigma = (np.log(hi) - np.log(lo)) / (2 * Z95)
        weights = (x - x.mean()) / sxx
        halves.append(Z95 * math.sqrt(float((weights**2 * sigma**2).sum())))
    half = max(halves) if halves else math.nan
    out.update(
        slope=float(slope), half_width=half, low=float(slope - half), high=float(slope + half)
    )
    return out


def slope_text(row) -> str:
    """``1.02 ± 0.04``, or, for a flagged fit, ``≈ -0.2 (-1.1 to 0.7; wide)``."""
    if not np.isfinite(row["slope"]):
        return "—"
    if row["flags"]:
        span = f"{row['low']:.1f} to {row['high']:.1f}; " if np.isfinite(row["half_width"]) else ""
        return f"≈ {row['slope']:.1f} ({span}{row['flags']})"
    return f"{row['slope']:.2f} ± {row['half_width']:.2f}"


def _flags(fit: dict, stability: pd.Series) -> str:
    flags = []
    if not np.isfinite(fit["half_width"]):
        flags.append("no interval")
    elif fit["half_width"] > WIDE_SLOPE:
        flags.append("wide")
    elif fit["points"] == 2:
        flags.append("2 points")
    if (stability == "unstable").any():
        flags.append("unstable")
    elif (stability == "unknown").any():
        flags.append("stability unknown")
    return ", ".join(flags)


def loglog_slopes(df: pd.DataFrame, x: str = "classes") -> pd.DataFrame:
    """Fitted exponent of gradient time in ``x`` (classes k, or batch B), per set, method, dtype
    and the other two sizes, over ok points; with interval, flags and the text to print.

    Columns: set, method, dtype, the two fixed sizes, points, slope, low, high,
    half_width, flags (empty for a slope that can be stated), text.
    """
    fixed = [c for c in ("batch", "features", "classes") if c != x]
    keys = ["set", "method", "dtype", *fixed]
    rows = []
    for values, g in ok_rows(df, "gradient").groupby(keys, sort=False):
        g = g.sort_values(x)
        fit = fit_loglog(g[x], g["time_median_s"], g["time_ci_low_s"], g["time_ci_high_s"])
        if fit["points"] < 2:
            continue
        row = dict(zip(keys, values)) | fit
        row["flags"] = _flags(fit, g["stability"])
        rows.append(row)
    columns = [*keys, "points", "slope", "low", "high", "half_width", "flags", "text"]
    out = pd.DataFrame(rows, columns=columns[:-1])
    out["text"] = [slope_text(r) for r in out.to_dict("records")] if len(out) else []
    out = out.astype({c: int for c in fixed})
    out["_rank"] = out["method"].map(method_rank)
    return out.sort_values(["set", "_rank", *fixed]).drop(columns="_rank").reset_index(drop=True)


def ratio_table(df: pd.DataFrame) -> pd.DataFrame:
    """Naive / structured per set, dtype, B, n and k where both ran: measured time (with the
    interval of the ratio from both CIs), measured peak memory, and the cost model's FLOP and
    peak-memory ratios."""
    g = ok_rows(df, "gradient")
    keys = ["set", "dtype", "batch", "features", "classes"]
    m = g[g["method"] == "naive"].merge(
        g[g["method"] == "structured"], on=keys, suffixes=("_n", "_s")
    )
    out = m[keys].copy()
    out["time_ratio"] = m["time_median_s_n"] / m["time_median_s_s"]
    out["time_ratio_low"] = m["time_ci_low_s_n"] / m["time_ci_high_s_s"]
    out["time_ratio_high"] = m["time_ci_high_s_n"] / m["time_ci_low_s_s"]
    out["memory_ratio"] = m["peak_bytes_n"] / m["peak_bytes_s"]
    out["predicted_flops_ratio"] = m["predicted_flops_n"] / m["predicted_flops_s"]
    out["predicted_memory_ratio"] = m["predicted_bytes_n"] / m["predicted_bytes_s"]
    out["stable"] = m["stable_n"] & m["stable_s"]
    return out.sort_values(keys).reset_index(drop=True)


def roofline_time(df: pd.DataFrame) -> pd.Series:
    """Seconds the machine's ceilings allow each row: max(FLOPs / GEMM rate, traffic / copy
    rate)."""
    return roofline_seconds(
        df["predicted_flops"],
        df["predicted_traffic_bytes"],
        df["gemm_gflops"] * 1e9,
        df["copy_gbps"] * 1e9,
    )


def throughput_table(df: pd.DataFrame) -> pd.DataFrame:
    """Samples per second against batch size, per set: whole epochs (any method, data source
    and dtype), and structured gradient calls at the epochs' shape (n = 784, k = 10).

    Columns: set, device_kind, source (``epoch``/``gradient``), method, dtype, data,
    batch, samples_per_s, samples_per_s_low/high (from the time's CI), bound_samples_per_s
    (the roofline's limit on that set's machine), stability.
    """
    ok = ok_rows(df)
    grads = ok[
        (ok["kind"] == "gradient")
        & (ok["method"] == "structured")
        & (ok["features"] == EPOCH_FEATURES)
        & (ok["classes"] == EPOCH_CLASSES)
    ]
    out = pd.concat(
        [ok[ok["kind"] == "epoch"].assign(source="epoch"), grads.assign(source="gradient")],
        ignore_index=True,
    )
    out["bound_samples_per_s"] = out["samples"] / roofline_time(out)
    cols = (
        "set device_kind source method dtype data batch samples_per_s samples_per_s_low "
        "samples_per_s_high bound_samples_per_s stability"
    ).split()
    out = out[np.isfinite(out["samples_per_s"].astype(float))][cols].astype({"batch": int})
    return out.sort_values(["source", "set", "method", "dtype", "data", "batch"]).reset_index(
        drop=True
    )


def time_model_error(df: pd.DataFrame) -> pd.DataFrame:
    """How far measured times are from the time model's ``predicted_time_s``, per set, kind and
    method: points, the median of measured / predicted, the share within a factor of 2, and the
    worst factor either way."""
    ok = ok_rows(df)
    ok = ok[ok["predicted_time_s"] > 0].assign(
        ratio=lambda d: d["time_median_s"] / d["predicted_time_s"]
    )
    rows = []
    for (set_, kind, method), g in ok.groupby(["set", "kind", "method"], sort=False):
        factor = np.maximum(g["ratio"], 1 / g["ratio"])
        rows.append(
            {
                "set": set_,
                "kind": kind,
                "method": method,
                "points": len(g),
                "median_ratio": float(g["ratio"].median()),
                "within_2x": float((factor <= 2).mean()),
                "worst_factor": float(factor.max()),
            }
        )
    return pd.DataFrame(
        rows,
        columns=["set", "kind", "method", "points", "median_ratio", "within_2x", "worst_factor"],
    )


def cpu_gpu_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every point measured on both a CPU set and a GPU set: both times, the speedup
    (CPU time / GPU time) with its interval, and which side is faster: ``gpu`` or ``cpu`` where
    the intervals do not overlap (the medians where a side has no interval), else ``tie``."""
    ok = ok_rows(df)
    keys = [*SERIES, "batch"]
    cols = ["time_median_s", "time_ci_low_s", "time_ci_high_s", "stable"]
    parts = []
    for cpu in ok.loc[ok["device_kind"] == "cpu", "set"].unique():
        for gpu in ok.loc[ok["device_kind"] == "gpu", "set"].unique():
            a = ok[ok["set"] == cpu][keys + cols]
            b = ok[ok["set"] == gpu][keys + cols]
            parts.append(
                a.merge(b, on=keys, suffixes=("_cpu", "_gpu")).assign(cpu_set=cpu, gpu_set=gpu)
            )
    if not parts:
        return pd.DataFrame(columns=["cpu_set", "gpu_set", *keys, "speedup", "faster"])
    m = pd.concat(parts, ignore_index=True)
    m["speedup"] = m["time_median_s_cpu"] / m["time_median_s_gpu"]
    m["speedup_low"] = m["time_ci_low_s_cpu"] / m["time_ci_high_s_gpu"]
    m["speedup_high"] = m["time_ci_high_s_cpu"] / m["time_ci_low_s_gpu"]
    low, high = m["speedup_low"].fillna(m["speedup"]), m["speedup_high"].fillna(m["speedup"])
    m["faster"] = np.where(low > 1, "gpu", np.where(high < 1, "cpu", "tie"))
    return m.sort_values(["cpu_set", "gpu_set", *keys]).reset_index(drop=True)


def crossovers(table: pd.DataFrame) -> pd.DataFrame:
    """Per CPU/GPU pair and series: the crossover batch size, the smallest B from which the GPU
    is faster at every larger B measured, and the last B below it (where the CPU was faster or
    the two tied), with a sentence saying so."""
    keys = ["cpu_set", "gpu_set", *SERIES]
    rows = []
    for key, g in table.groupby(keys, sort=False):
        g = g.sort_values("batch")
        faster = list(g["faster"])
        batches = [int(b) for b in g["batch"]]
        tail = len(faster)
        while tail > 0 and faster[tail - 1] == "gpu":
            tail -= 1
        cross = batches[tail] if tail < len(batches) else None
        before = batches[tail - 1] if tail > 0 else None
        if cross is None:
            text = (
                f"no crossover up to B = {batches[-1]}: the GPU is not faster at the largest batch "
                f"(speedup {number(g['speedup'].iloc[-1], '.2g')}x)"
            )
        elif before is None:
            text = f"the GPU is faster at every batch size measured, from B = {cross}"
        else:
            was = (
                "the CPU is faster"
                if faster[tail - 1] == "cpu"
                else "the two tie within their intervals"
            )
            text = f"the GPU is faster from B = {cross} on; at B = {before} {was}"
        found = {"batches": len(batches), "crossover_batch": cross, "below_batch": before}
        rows.append(dict(zip(keys, key)) | found | {"text": text})
    out = pd.DataFrame(rows, columns=[*keys, "batches", "crossover_batch", "below_batch", "text"])
    order = out["kind"].map({"epoch": 0}).fillna(1) * 10 + out["method"].map(method_rank)
    return out.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(drop=True)


def lecture_rows(df_set: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """The rows of one set for the lecture's table, and the (n, k) they are at.

    At n = k = 1000 where the set has such points, else at its largest k with an ok point (and
    the largest n there): naive and naive_batched at the smallest B, naive_batched at B = 96,
    structured at the smallest B, 96 and the largest (each where present).
    """
    g = df_set[df_set["kind"] == "gradient"]
    if g.empty:
        return g, 0, 0
    if ((g["features"] == LECTURE_N) & (g["classes"] == LECTURE_K)).any():
        n, k = LECTURE_N, LECTURE_K
    else:
        pool = g[g["status"] == "ok"] if (g["status"] == "ok").any() else g
        k = int(pool["classes"].max())
        n = int(pool.loc[pool["classes"] == k, "features"].max())
    at = g[(g["features"] == n) & (g["classes"] == k)]
    smallest, largest = int(at["batch"].min()), int(at["batch"].max())
    wanted = dict.fromkeys(
        [
            ("naive", smallest),
            ("naive_batched", smallest),
            ("naive_batched", LECTURE_BATCH),
            ("structured", smallest),
            ("structured", LECTURE_BATCH),
            ("structured", largest),
        ]
    )
    picks = [
        at[(at["method"] == m) & (at["batch"] == b)].iloc[-1]
        for m, b in wanted
        if ((at["method"] == m) & (at["batch"] == b)).any()
    ]
    return pd.DataFrame(picks), n, k


__all__ = [
    "fit_loglog",
    "loglog_slopes",
    "slope_text",
    "ratio_table",
    "roofline_time",
    "throughput_table",
    "time_model_error",
    "cpu_gpu_table",
    "crossovers",
    "lecture_rows",
    "method_rank",
    "ok_rows",
    "WIDE_SLOPE",
    "SERIES",
    "SYMBOL",
]
