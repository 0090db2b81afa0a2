"""asv results, read through asv's own API, mapped by parameter name.

:func:`~softmax_core.report.asv_results.load_asv_results` reads every result file with asv's
``Results.load`` and each benchmark's parameter names, unit and type from ``benchmarks.json``
(``asv.util.load_json``), giving one row per benchmark, parameter combination, commit and
environment.

:func:`asv_points` turns the benchmarks whose parameters name a whole point into rows shaped
like results.csv, with nothing guessed: a gradient benchmark has ``method``, ``batch``,
``features`` and ``classes`` parameters (and ``dtype``); an epoch benchmark has ``method`` and
``batch`` (and ``dtype``, ``data``) but no sizes, since epochs run at MNIST's shape.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import InputError
from ..runs.cases import EPOCH_CLASSES, EPOCH_FEATURES, Case
from ..runs.resultformat import COLUMNS
from .asv_results import FIXED
from .results import derive, empty_frame

#: Parameter names the suite uses for the parts of a point.
POINT_PARAMS = ("method", "batch", "features", "classes", "dtype", "data")
MAX_SERIES = 6
#: asv's units the report writes in SI, and their symbols.
ASV_UNITS = {"seconds": "s", "bytes": "B"}


def set_labels(asv: pd.DataFrame) -> dict:
    """``asv:<machine>``, and the environment name where a machine has several."""
    labels = {}
    for machine, envs in asv.groupby("machine")["env_name"].unique().items():
        for env in sorted(envs):
            labels[machine, env] = f"asv:{machine}" + (f"/{env}" if len(envs) > 1 else "")
    return labels


def _metric(row: dict) -> str | None:
    """The results.csv column a benchmark's value fills, from its unit (and type)."""
    if row["type"] in ("time", "track") and row["unit"] == "seconds":
        return "time_median_s"  # time_* benchmarks, and track_time returning the engine's samples
    if row["type"] == "track" and row["unit"] == "bytes":
        return "peak_bytes"
    if row["type"] == "track" and row["unit"] in ("samples/s", "samples per second"):
        return "samples_per_s"
    return None  # peakmemory (the process's RSS), ratios, percentages: not a sweep column


def _case(row: dict) -> Case | None:
    present = {p: row.get(p) for p in POINT_PARAMS if _given(row.get(p))}
    if "method" not in present or "batch" not in present:
        return None
    sizes = ("features" in present, "classes" in present)
    if sizes == (True, True):
        point = {"kind": "gradient", "data": ""}
    elif sizes == (False, False):
        point = {"kind": "epoch", "features": EPOCH_FEATURES, "classes": EPOCH_CLASSES}
    else:
        return None
    return Case.from_row({"dtype": "float32", **point, **present})


def _given(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def asv_points(asv: pd.DataFrame) -> tuple[pd.DataFrame, dict, list[str]]:
    """The latest commit's results of each machine and environment, as results.csv rows (one set
    per machine and environment, ``asv:<machine>``), environments shaped like environment.json,
    and notes naming the benchmarks left out and why.  The CI is asv's (99%)."""
    empty = empty_frame()
    if asv.empty:
        return empty, {}, []
    latest = asv.groupby(["machine", "env_name"])["date"].transform("max")
    asv = asv[asv["date"] == latest]
    labels = set_labels(asv)
    points: dict[tuple, dict] = {}
    left_out: dict[str, str] = {}
    for row in asv.to_dict("records"):
        metric, case = _metric(row), _case(row)
        if metric is None:
            left_out[row["benchmark"]] = (
                f"its type and unit ({row['type']}, {row['unit'] or 'none'}) "
                "fill no results.csv column"
            )
        elif case is None:
            left_out[row["benchmark"]] = (
                "its parameters do not name a whole point (method, batch, features, classes)"
            )
        if metric is None or case is None:
            continue
        label = labels[row["machine"], row["env_name"]]
        point = points.setdefault(
            (label, case.key),
            {
                **dict(zip(("kind", *POINT_PARAMS), case.key)),
                "set": label,
                "folder": f"asv {row['machine']}",
                "backend": "asv",
                "device": row["env_name"],
                "run_id": row["commit_hash"][:8],
                "timestamp": str(row["date"]),
                "status": "",
                "reason": "",
                "stability": "unknown",
                "stable": False,
                "samples": case.samples,
            },
        )
        if metric == "time_median_s" or not point["status"]:
            point["status"] = {"ok": "ok", "skipped": "skipped"}.get(row["status"], "error")
            point["reason"] = (
                "" if row["status"] == "ok" else f"asv: {row['benchmark']} {row['status']}"
            )
        if row["status"] == "ok":
            point[metric] = row["value"]
            if metric == "time_median_s":
                point.update(
                    time_ci_low_s=row["low"],
                    time_ci_high_s=row["high"],
                    # asv keeps no record of the load other processes put on the machine
                    # meanwhile: a narrow interval is not known to be stable, a wide one is not
                    stable=False,
                    stability="unknown" if row["stable"] else "unstable",
                )
    for point in points.values():  # an ok row of results.csv is a measured time
        if point["status"] == "ok" and not math.isfinite(point.get("time_median_s", math.nan)):
            point.update(status="skipped", reason="asv holds no time of this point")
    notes = list(asv.attrs.get("notes", [])) + [
        f"asv benchmark {name} is not in the plots: {why}" for name, why in sorted(left_out.items())
    ]
    if points:
        notes.append(
            "the intervals of asv sets are asv's 99% confidence intervals; asv keeps no record "
            "of other processes' load while a point ran, so no asv point is marked stable "
            "(a narrow interval shows as ?, drawn hollow)"
        )
    if not points:
        return empty, {}, notes
    frame = pd.DataFrame(list(points.values()))
    frame = pd.concat([empty, frame], ignore_index=True).reindex(columns=empty.columns)
    frame = frame.astype({c: float for c in COLUMNS if c in empty.select_dtypes(float).columns})
    frame["device_kind"] = np.where(frame["device"].str.lower().str.contains("gpu"), "gpu", "cpu")
    frame["stable"] = frame["stable"].astype(bool)
    # one source per point: where a time was measured, samples/s and its interval come from it
    frame.loc[frame["time_median_s"].notna(), "samples_per_s"] = np.nan
    envs = {}
    for label, first in (
        frame.groupby("set")[["folder", "device", "run_id", "timestamp"]].first().iterrows()
    ):
        info = asv.attrs.get("machines", {}).get(first["folder"].removeprefix("asv "), {})
        envs[label] = {
            "source": "asv",
            "folder": first["folder"],
            "created": first["timestamp"],
            "git_commit": first["run_id"],
            "backend": {
                "label": label,
                "backend": "asv",
                "device": first["device"],
                "cpu_model": info.get("cpu"),
                "cpu_cores": info.get("num_cpu"),
            },
            "machine": {"platform": info.get("os"), "memory_total_bytes": info.get("ram")},
        }
    return derive(frame), envs, notes


def pick_benchmark(asv: pd.DataFrame, name: str | None = None) -> str:
    """``name`` (exact, or a unique part of one), else the structured gradient's time (a
    benchmark in seconds with a ``method`` and a ``classes`` parameter).

    Raises ValueError for a name that matches none or several benchmarks."""
    names = sorted(asv["benchmark"].unique())
    if name:
        if name in names:
            return name
        hits = [b for b in names if name.lower() in b.lower()]
        if len(hits) == 1:
            return hits[0]
        what = f"matches {', '.join(hits)}" if hits else f"matches none of {', '.join(names)}"
        raise InputError(f"asv benchmark {name!r} {what}; fix: pass one full name to --benchmark")

    def score(b: str) -> tuple:
        rows = asv[asv["benchmark"] == b]
        structured = "method" in rows and (rows["method"] == "structured").any()
        return (
            (rows["unit"] == "seconds").any(),
            structured,
            "classes" in rows and rows["classes"].notna().any(),
            (rows["status"] == "ok").sum(),
        )

    return max(names, key=score)


def history_table(
    asv: pd.DataFrame, benchmark: str, *, default_filter: bool = True
) -> pd.DataFrame:
    """The rows of ``benchmark`` to draw across commits, each with a ``series`` label (its
    parameters, and its environment where several).  With ``default_filter``, only the
    structured method; at most :data:`MAX_SERIES` series, spread over those with a result
    (``attrs["subtitle"]`` says what was left out)."""
    rows = asv[asv["benchmark"] == benchmark].copy()
    params = [c for c in rows.columns if c not in FIXED and rows[c].notna().any()]
    notes = []
    if default_filter and "method" in params and (rows["method"] == "structured").any():
        rows = rows[rows["method"] == "structured"]
        params.remove("method")
        notes.append("method=structured")
    labels = set_labels(rows)
    several = len(labels) > 1
    rows["series"] = [
        ", ".join(
            [f"{p}={_text(r[p])}" for p in params if rows[p].nunique() > 1]
            + ([labels[r["machine"], r["env_name"]]] if several else [])
        )
        or benchmark.rsplit(".", 1)[-1]
        for r in rows.to_dict("records")
    ]
    fixed = [f"{p}={_text(rows[p].iloc[0])}" for p in params if rows[p].nunique() == 1]
    series = sorted(rows.loc[rows["status"] == "ok", "series"].unique(), key=_natural)
    if len(series) > MAX_SERIES:
        notes.append(f"{MAX_SERIES} of {len(series)} parameter sets")
        series = [series[int(i)] for i in np.linspace(0, len(series) - 1, MAX_SERIES).round()]
    rows = (
        rows[rows["series"].isin(series)]
        .sort_values(["date", "commit_hash"])
        .reset_index(drop=True)
    )
    rows.attrs["subtitle"] = ", ".join(fixed + notes)
    return rows


def commits_in_order(asv: pd.DataFrame) -> list[str]:
    return asv.groupby("commit_hash")["date"].min().sort_values().index.tolist()


def _text(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _natural(text: str) -> list:
    import re

    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t]


__all__ = [
    "asv_points",
    "pick_benchmark",
    "history_table",
    "commits_in_order",
    "set_labels",
    "ASV_UNITS",
]
