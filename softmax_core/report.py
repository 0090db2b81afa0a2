"""Reports: markdown tables and PNG plots from sweep results and asv results.

:func:`make_report` reads one or more sweep folders (``results.csv`` and
``environment.json``, see :mod:`softmax_core.sweep`) and, optionally, an asv
results folder, and writes ``report.md`` with these plots next to it:

* ``time_vs_classes.png``: gradient time vs k, with fitted log-log slopes;
* ``memory_vs_classes.png``: measured peak memory over the cost model's;
* ``ratio_vs_classes.png``: naive / structured, time and memory, vs k;
* ``throughput_vs_batch.png``: samples/s vs batch size, per result set;
* ``asv_history.png``: one asv benchmark across commits (with ``asv_dir``).

Every predicted number comes from :mod:`softmax_core.costmodel`, never from a
formula written here.  A plot whose data are missing is left out and the
report says why; every file is written atomically.
"""

from __future__ import annotations

import ast
import io
import itertools
import json
import math
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter

from ._io import atomic_write_bytes, atomic_write_text
from .cases import EPOCH_CLASSES, EPOCH_FEATURES, EPOCH_SAMPLES, Case
from .costmodel import METHODS, format_bytes, gradient_cost
from .sweep import COLUMNS, _now, read_results

#: Columns of results.csv that hold numbers.
NUMERIC_COLUMNS = tuple(c for c in COLUMNS if c not in (
    "run_id", "timestamp", "backend", "device", "kind", "method", "dtype", "status", "reason"))
#: Columns :func:`load_results` adds to the sweep's.
EXTRA_COLUMNS = ("set", "folder", "gemm_gflops", "copy_gbps")
PLOT_FILES = ("time_vs_classes.png", "memory_vs_classes.png", "ratio_vs_classes.png",
              "throughput_vs_batch.png", "asv_history.png")
#: The lecture's example size: n = k = 1000.
LECTURE_N = LECTURE_K = 1000
LECTURE_BATCH = 96
FIGSIZE = (7.0, 4.5)
DPI = 110
MAX_ASV_LINES = 6
#: Legends with more entries than this go below the axes, not over the data.
LEGEND_INSIDE_MAX = 4

METHOD_COLORS = {"structured": "tab:blue", "naive": "tab:red", "naive_batched": "tab:orange"}
SET_STYLES = ("-", "--", ":", "-.")
SET_MARKERS = ("o", "s", "^", "D", "v", "P")
RATIO_COLORS = ("tab:purple", "tab:green", "tab:brown", "tab:pink")
#: Colours of the cost model's ratio lines, one per batch size drawn.
MODEL_COLORS = ("black", "tab:olive", "tab:cyan", "tab:gray")
_REQUIRED = ("kind", "method", "batch", "features", "classes", "status")


# ---------------------------------------------------------------------------
# Reading sweep results
# ---------------------------------------------------------------------------

def load_results(dirs: str | os.PathLike | Iterable[str | os.PathLike]) -> pd.DataFrame:
    """All rows of the ``results.csv`` of each sweep folder in ``dirs``, as one table.

    Numeric columns are numbers (NaN where empty).  Added columns: ``set``, the
    folder's backend label from ``environment.json`` (``numpy-cpu``,
    ``cupy-gpu``; the folder name is appended where two folders share a
    label), ``folder``, and the machine limits ``gemm_gflops`` and
    ``copy_gbps`` measured by the sweep's probe.  ``df.attrs["environments"]``
    maps each set to its environment.json.

    Raises
    ------
    ValueError
        No folder given, a folder that does not exist or holds no results.csv,
        an empty or foreign results.csv, an unreadable environment.json.
    """
    frame, envs = _load_sets(_as_paths(dirs))
    frame.attrs["environments"] = envs
    return frame


def _as_paths(dirs) -> list[Path]:
    if dirs is None:
        return []
    if isinstance(dirs, (str, os.PathLike)):
        dirs = [dirs]
    return [Path(d) for d in dirs]


def _load_sets(dirs: Sequence[Path]) -> tuple[pd.DataFrame, dict]:
    if not dirs:
        raise ValueError("no sweep result folders given; fix: pass the folder written by "
                         "`softmax-bench sweep --out DIR`")
    loaded = [(_read_results_csv(d), _read_environment(d)) for d in dirs]
    labels = _set_labels(dirs, [_backend_label(df, env, d) for d, (df, env) in zip(dirs, loaded)])
    frames, envs = [], {}
    for folder, label, (df, env) in zip(dirs, labels, loaded):
        probe = env.get("probe") or {}
        df = df.assign(set=label, folder=str(folder),
                       gemm_gflops=_number(probe.get("gemm_gflops")),
                       copy_gbps=_number(probe.get("copy_gbps")))
        frames.append(df)
        envs[label] = {**env, "folder": str(folder)}
    return pd.concat(frames, ignore_index=True), envs


def _read_results_csv(folder: Path) -> pd.DataFrame:
    if not folder.exists():
        raise ValueError(f"{folder} does not exist; fix: pass a folder written by "
                         "`softmax-bench sweep --out DIR`")
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; fix: pass the folder that holds results.csv")
    path = folder / "results.csv"
    if not path.is_file():
        raise ValueError(f"no results.csv in {folder}; fix: run `softmax-bench sweep --out {folder}` "
                         "first, or pass the folder that holds results.csv")
    try:
        rows = read_results(path)
    except (UnicodeDecodeError, OSError) as exc:
        raise ValueError(f"cannot read {path} ({exc}); fix: re-run the sweep into a new --out folder") from None
    if not rows:
        raise ValueError(f"{path} holds no results (it is empty or has only a header); fix: run or "
                         f"resume the sweep: `softmax-bench sweep --resume --out {folder}`")
    missing = [c for c in _REQUIRED if c not in rows[0]]
    if missing:
        raise ValueError(f"{path} is not a softmax-bench results file (no column {', '.join(missing)}); "
                         "fix: pass a folder written by `softmax-bench sweep`")
    df = pd.DataFrame(rows).drop(columns=[None], errors="ignore")
    df = df.reindex(columns=[*COLUMNS, *[c for c in df.columns if c not in COLUMNS]])
    for col in NUMERIC_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    for col in ("kind", "method", "status", "reason", "dtype", "backend", "device"):
        df[col] = df[col].fillna("").astype(str)
    damaged = df[["batch", "features", "classes"]].isna().any(axis=1) | (df["kind"] == "")
    if damaged.all():
        raise ValueError(f"{path}: every row is damaged (no kind, batch, features or classes); fix: re-run "
                         f"the sweep into a new --out folder, or delete {path}")
    return df[~damaged].reset_index(drop=True)


def _read_json_object(path: Path, fix: str) -> dict:
    """The JSON object in ``path``, {} if there is no such file; ValueError naming ``fix``
    if it cannot be read."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot read {path} ({exc}); fix: {fix}") from None
    return data if isinstance(data, dict) else {}


def _read_environment(folder: Path) -> dict:
    return _read_json_object(folder / "environment.json",
                             "delete it to report without the machine facts, or re-run the sweep")


def _backend_label(df: pd.DataFrame, env: dict, folder: Path) -> str:
    label = (env.get("backend") or {}).get("label")
    if label:
        return str(label)
    first = df.iloc[0]
    if first["backend"] and first["device"]:
        return f"{first['backend']}-{first['device']}"
    return folder.name or str(folder)


def _set_labels(dirs: Sequence[Path], labels: list[str]) -> list[str]:
    """Labels made unique: the folder name is appended to shared ones, then a counter."""
    out = [f"{lab} ({d.resolve().name})" if labels.count(lab) > 1 else lab
           for d, lab in zip(dirs, labels)]
    seen: dict[str, int] = {}
    for i, lab in enumerate(out):
        seen[lab] = seen.get(lab, 0) + 1
        if seen[lab] > 1:
            out[i] = f"{lab} #{seen[lab]}"
    return out


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _empty_results() -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype=float if c in NUMERIC_COLUMNS else object)
                       for c in (*COLUMNS, *EXTRA_COLUMNS)})
    return df.astype({"gemm_gflops": float, "copy_gbps": float})


# ---------------------------------------------------------------------------
# Reading asv results
# ---------------------------------------------------------------------------

def load_asv_results(asv_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per benchmark x parameter combination x commit x machine x environment.

    Reads asv's result format (version 2, asv >= 0.5): ``<asv_dir>/benchmarks.json``
    (param names, unit, type of each benchmark), and for each machine folder
    with a ``machine.json`` every ``<hash[:8]>-<env>.json``, whose ``results``
    map a benchmark name to a row laid out by ``result_columns`` (``result``,
    ``params``, ``stats_q_25``, ...).  A parametrized benchmark's values run
    over the product of its parameter lists.

    Columns: ``benchmark``, ``machine``, ``env_name``, ``commit_hash``, ``date``
    (the commit's date, UTC), ``value``, ``q25``, ``q75``, ``unit``, ``type``,
    ``status`` (ok; skipped where asv stored NaN; failed where it stored null),
    plus one column per parameter name, holding the parameter's value
    (``'naive'`` -> ``naive``, ``'96'`` -> 96), and ``features_hint``, the n of a
    benchmark that has no n parameter where its name or code tells it (see
    :func:`asv_to_sweep`).  ``df.attrs["machines"]`` holds
    each machine.json and ``df.attrs["problems"]`` the files left out.

    Raises
    ------
    ValueError
        ``asv_dir`` does not exist or holds no asv result files.
    """
    root = Path(asv_dir)
    if not root.is_dir():
        raise ValueError(f"asv results folder {root} does not exist; fix: run `asv run` first, or pass "
                         "the folder named by results_dir in asv.conf.json (e.g. results/asv)")
    benchmarks = _asv_benchmarks(root)
    rows, machines, problems = [], {}, []
    for machine_json in sorted(root.glob("*/machine.json")):
        try:
            info = json.loads(machine_json.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:
            problems.append(f"{machine_json}: {exc}")
            continue
        machine = str(info.get("machine") or machine_json.parent.name)
        machines[machine] = info
        for path in sorted(machine_json.parent.glob("*.json")):
            if path.name == "machine.json":
                continue
            try:
                rows.extend(_asv_result_rows(path, machine, benchmarks))
            except (ValueError, KeyError, TypeError, OSError) as exc:
                problems.append(f"{path}: {type(exc).__name__}: {exc}")
    if not rows:
        detail = f" (left out: {'; '.join(problems)})" if problems else ""
        raise ValueError(f"no asv results in {root}{detail}; fix: run `asv run` (results go to "
                         "<results_dir>/<machine>/), or pass the folder that holds the machine folders")
    df = pd.DataFrame(rows)
    df["date"] = pd.to_datetime(df["date"], unit="ms", utc=True)
    df.attrs["machines"] = machines
    df.attrs["problems"] = problems
    return df


def _asv_benchmarks(root: Path) -> dict:
    data = _read_json_object(root / "benchmarks.json", "regenerate it with `asv run --bench just-discover`")
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def _asv_result_rows(path: Path, machine: str, benchmarks: dict) -> list[dict]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("version") != 2 or "result_columns" not in data:
        raise ValueError(f"asv result format version {data.get('version')!r}, expected 2; "
                         "fix: run `asv update` with asv >= 0.5")
    columns = data["result_columns"]
    rows = []
    for name, values in data["results"].items():
        entry = dict(zip(columns, values))
        params = entry.get("params") or []
        combos = list(itertools.product(*params))
        bench = benchmarks.get(name, {})
        names = list(bench.get("param_names") or [])
        names += [f"param{i + 1}" for i in range(len(names), len(params))]
        result, q25, q75 = (_per_combo(entry.get(key), len(combos))
                            for key in ("result", "stats_q_25", "stats_q_75"))
        for i, combo in enumerate(combos):
            value = result[i]
            status = "failed" if value is None else "skipped" if not math.isfinite(value) else "ok"
            rows.append({
                "benchmark": name, "machine": machine, "env_name": data.get("env_name") or "",
                "commit_hash": data.get("commit_hash") or "", "date": data.get("date"),
                "python": data.get("python"), "value": _number(value), "q25": _number(q25[i]),
                "q75": _number(q75[i]), "unit": bench.get("unit") or "", "type": bench.get("type") or "",
                "status": status, "features_hint": _features_hint(name, bench.get("code")),
                **{p: _literal(v) for p, v in zip(names, combo)},
            })
    return rows


def _features_hint(name: str, code) -> float:
    """n of a benchmark without an n parameter: a number ending its class name
    (``TimeGradient784``), else ``n = 784`` / ``features = 784`` in its source
    (benchmarks.json's ``code``), else NaN."""
    parts = name.split(".")
    match = re.search(r"(\d{2,6})$", parts[-2]) if len(parts) > 1 else None
    if match is None and isinstance(code, str):
        match = re.search(r"\b(?:n|n_features|features|num_features)\s*=\s*(\d+)\b", code, re.IGNORECASE)
    return float(match.group(1)) if match else math.nan


def _per_combo(values, n: int) -> list:
    if not isinstance(values, list):
        return [values] * n
    return (values + [None] * n)[:n]


def _literal(text):
    """asv stores parameter values as reprs: ``"'naive'"`` -> ``'naive'``, ``"96"`` -> 96."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


_PARAM_ALIASES = {
    "method": ("method", "grad", "gradient", "approach"),
    "batch": ("batch", "b", "batch_size", "batchsize"),
    "classes": ("classes", "k", "n_classes", "num_classes"),
    "features": ("features", "n", "n_features", "num_features"),
    "dtype": ("dtype",),
}


def asv_to_sweep(asv: pd.DataFrame, *, latest_only: bool = True) -> tuple[pd.DataFrame, dict]:
    """The asv rows that map onto the sweep's columns, as a sweep-shaped table.

    A benchmark maps when its parameters name the method, batch and classes
    (``method``/``batch``/``classes`` or ``B``/``k``); an epoch benchmark (name
    with ``epoch``) may leave out method (structured) and classes (10).
    Features come from a ``features``/``n`` parameter, else from a number
    ending the benchmark's class name (``TimeGradient1000``) or an ``n = 784``
    in its code, else stay unknown (NaN: left out of the plots at one n).
    ``time_*`` benchmarks give ``time_median_s``; ``track_*`` ones give
    ``peak_bytes`` (unit or name with bytes/peak/mem) or ``samples_per_s``
    (samples/throughput).  ``peakmem_*``
    (the process's peak RSS) is not the sweep's peak above the inputs and is
    left out.  Predicted columns come from the cost model.  With
    ``latest_only``, each machine and environment keeps its latest commit.

    Returns the table (one result set per machine, ``asv:<machine>``) and the
    environments of its sets, shaped like environment.json.
    """
    if asv.empty:
        return _empty_results(), {}
    if latest_only:
        latest = asv.groupby(["machine", "env_name", "benchmark"])["date"].transform("max")
        asv = asv[asv["date"] == latest]
    labels = _asv_set_labels(asv)
    points: dict[tuple, dict] = {}
    for rec in asv.to_dict("records"):
        metric = _asv_metric(rec["benchmark"], rec.get("unit"), rec.get("type"))
        keys = _asv_point(rec)
        if metric is None or keys is None:
            continue
        label = labels[rec["machine"], rec["env_name"]]
        point = points.setdefault((label, *keys), {
            "set": label, "folder": f"asv {rec['machine']}", "kind": keys[0], "method": keys[1],
            "batch": keys[2], "features": keys[3], "classes": keys[4], "dtype": keys[5],
            "backend": "asv", "device": rec["machine"], "run_id": rec["commit_hash"][:8],
            "timestamp": str(rec["date"]), "status": "", "reason": ""})
        point.setdefault("_status", {})[metric] = (rec["status"], rec["benchmark"])
        if rec["status"] == "ok":
            point[metric] = rec["value"]
    if not points:
        return _empty_results(), {}
    for point in points.values():
        point["status"], point["reason"] = _asv_point_status(point.pop("_status"))
    df = pd.DataFrame(list(points.values())).reindex(columns=[*COLUMNS, *EXTRA_COLUMNS])
    df = _with_predictions(df.astype({c: float for c in (*NUMERIC_COLUMNS, "gemm_gflops", "copy_gbps")}))
    envs = {}
    for label, machine in df.groupby("set")["device"].first().items():
        info = asv.attrs.get("machines", {}).get(machine, {})
        commit = asv.loc[asv["machine"] == machine].sort_values("date")["commit_hash"].iloc[-1]
        envs[label] = {"source": "asv", "folder": f"asv machine {machine}",
                       "backend": {"label": label, "cpu_model": info.get("cpu"), "cpu_cores": info.get("num_cpu"),
                                   "backend": "asv", "device": machine},
                       "machine": {"platform": info.get("os"), "git_commit": commit,
                                   "memory_total_bytes": _number(info.get("ram"))}, "probe": {}}
    return df, envs


def _asv_set_labels(asv: pd.DataFrame) -> dict:
    """``asv:<machine>``, plus the part of the environment name that differs where a
    machine has several (``asv:vm/SOFTMAX_DEVICEcpu``)."""
    labels = {}
    for machine, envs in asv.groupby("machine")["env_name"].unique().items():
        envs = sorted(envs)
        prefix = os.path.commonprefix(envs) if len(envs) > 1 else ""
        prefix = prefix[: prefix.rfind("-") + 1]  # cut at a separator, not inside a word
        for env in envs:
            labels[machine, env] = f"asv:{machine}" + (f"/{env[len(prefix):] or env}" if len(envs) > 1 else "")
    return labels


def _asv_point_status(statuses: dict) -> tuple[str, str]:
    """A point's status: its time benchmark's where it has one, else ok if any metric is."""
    status, bench = statuses.get("time_median_s") or next(
        (v for v in statuses.values() if v[0] == "ok"), next(iter(statuses.values())))
    if status == "ok":
        return "ok", ""
    return ("skipped" if status == "skipped" else "error"), f"asv: {bench} {status}"


def _asv_metric(benchmark: str, unit, type_) -> str | None:
    leaf = benchmark.rsplit(".", 1)[-1].lower()
    unit = str(unit or "").lower()
    if leaf.startswith("time_") or type_ == "time":
        return "time_median_s"
    if leaf.startswith("track_") or type_ == "track":
        if "sample" in unit or "samples" in leaf or "throughput" in leaf:
            return "samples_per_s"
        if "byte" in unit or any(word in leaf for word in ("peak", "mem", "bytes")):
            return "peak_bytes"
    return None


def _asv_point(rec: dict) -> tuple | None:
    """(kind, method, batch, features, classes, dtype) of an asv row, or None."""
    def param(name):
        for key, value in rec.items():
            if str(key).lower() in _PARAM_ALIASES[name] and not _is_missing(value):
                return value
        return None

    method, batch, classes = param("method"), param("batch"), param("classes")
    kind = "epoch" if "epoch" in rec["benchmark"].lower() else "gradient"
    if method is None and kind == "epoch":
        method = "structured"  # the sweep's epochs run the structured gradient
    if method not in METHODS or not _is_count(batch):
        return None
    features = param("features")
    if not _is_count(features):
        hint = rec.get("features_hint", math.nan)
        features = int(hint) if np.isfinite(hint) else (EPOCH_FEATURES if kind == "epoch" else math.nan)
    if not _is_count(classes):
        if kind != "epoch":
            return None
        classes = EPOCH_CLASSES
    return kind, method, int(batch), features, int(classes), str(param("dtype") or "float32")


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _is_count(value) -> bool:
    """A positive whole number (a float column may hold it as 96.0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return bool(np.isfinite(value) and value > 0 and float(value).is_integer())


def _with_predictions(df: pd.DataFrame) -> pd.DataFrame:
    """Fill predicted and derived columns (cost model; GFLOP/s, GB/s, samples/s) where empty."""
    df = df.copy()
    for i, row in df.iterrows():
        case = Case.from_row(row)
        if case is not None:
            cost = case.cost
            for col, value in (("predicted_bytes", cost.peak_bytes), ("predicted_lecture_bytes", cost.lecture_bytes),
                               ("predicted_flops", cost.flops), ("predicted_traffic_bytes", cost.traffic_bytes)):
                if pd.isna(row[col]):
                    df.at[i, col] = value
        if pd.isna(row["samples"]):
            if case is not None:
                df.at[i, "samples"] = case.samples
            else:
                df.at[i, "samples"] = row["batch"] if row["kind"] == "gradient" else EPOCH_SAMPLES
    t = df["time_median_s"]
    df["samples_per_s"] = df["samples_per_s"].fillna(df["samples"] / t)
    df["gflops"] = df["gflops"].fillna(df["predicted_flops"] / t / 1e9)
    df["gbytes_per_s"] = df["gbytes_per_s"].fillna(df["predicted_traffic_bytes"] / t / 1e9)
    return df


# ---------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------

def fit_loglog_slope(x, y) -> float:
    """Slope of the least-squares line through (log x, log y): the exponent p of y ~ x**p.

    Points with a non-positive or non-finite coordinate are ignored; with fewer
    than two points left (or a single distinct x) the slope is NaN.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[keep], y[keep]
    if x.size < 2 or np.unique(x).size < 2:
        return math.nan
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def _ok_gradients(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["kind"] == "gradient") & (df["status"] == "ok")]


def loglog_slopes(df: pd.DataFrame) -> pd.DataFrame:
    """Fitted exponents of time and of peak memory in k, per set, method, batch and n.

    Only ok gradient points count; a group with fewer than two k values has NaN
    slopes.  Columns: set, method, batch, features, points, slope_time, slope_memory.
    """
    rows = []
    for (set_, method, batch, n), g in _ok_gradients(df).groupby(["set", "method", "batch", "features"]):
        rows.append({"set": set_, "method": method, "batch": int(batch), "features": int(n),
                     "points": int(g["classes"].nunique()),
                     "slope_time": fit_loglog_slope(g["classes"], g["time_median_s"]),
                     "slope_memory": fit_loglog_slope(g["classes"], g["peak_bytes"])})
    return pd.DataFrame(rows, columns=["set", "method", "batch", "features", "points",
                                       "slope_time", "slope_memory"])


def _pick_features(g: pd.DataFrame) -> int | None:
    """The feature size with the most distinct k among ``g``'s points (ties: the largest n)."""
    counts = g.dropna(subset=["features"]).groupby("features")["classes"].nunique()
    if counts.empty:
        return None
    best = counts[counts == counts.max()].index.max()
    return int(best)


def _scaling_batches(g: pd.DataFrame) -> list[int]:
    """The batch sizes with a k-scaling curve: the smallest, and the largest B <= 32 besides it."""
    per_batch = g.groupby(["batch", "method", "set"])["classes"].nunique().groupby("batch").max()
    usable = sorted(int(b) for b in per_batch[per_batch >= 2].index)
    if not usable:
        return []
    small = [b for b in usable if b <= 32 and b != usable[0]]
    return [usable[0], small[-1]] if small else [usable[0]]


def throughput_table(df: pd.DataFrame) -> pd.DataFrame:
    """Samples per second vs batch size, per set: whole epochs, and structured gradient calls at MNIST's shape.

    Columns: set, source (``epoch`` or ``gradient``), method, batch, samples_per_s.
    Gradient calls count only at n = 784, k = 10 (the epochs' shape).
    """
    ok = df[df["status"] == "ok"]
    epochs = ok[ok["kind"] == "epoch"].assign(source="epoch")
    grads = ok[(ok["kind"] == "gradient") & (ok["method"] == "structured") & (ok["features"] == EPOCH_FEATURES)
               & (ok["classes"] == EPOCH_CLASSES)].assign(source="gradient")
    out = pd.concat([epochs, grads], ignore_index=True)
    out = out[np.isfinite(out["samples_per_s"].astype(float))]
    out = out[["set", "source", "method", "batch", "samples_per_s"]].astype({"batch": int})
    return out.sort_values(["source", "set", "method", "batch"]).reset_index(drop=True)


# ---------------------------------------------------------------------------
# Plots: each returns None when drawn, or why it was not
# ---------------------------------------------------------------------------

def _figure(ncols: int = 1, legend_rows: int = 0) -> tuple[Figure, list]:
    """A figure of ``ncols`` panels, taller by ``legend_rows`` lines of legend below them."""
    fig = Figure(figsize=(FIGSIZE[0], FIGSIZE[1] + 0.16 * legend_rows), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _legend(ax, handles=None, *, below: bool | None = None) -> None:
    """The axes' legend: inside where it hides least if short, else below the axes."""
    handles = handles if handles is not None else ax.get_legend_handles_labels()[0]
    if below is None:
        below = len(handles) > LEGEND_INSIDE_MAX
    if not below:
        ax.legend(handles=handles, fontsize=7, loc="best")
    else:
        ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                  frameon=False)


def _save(fig: Figure, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    atomic_write_bytes(path, buf.getvalue())


def _set_style(sets: Sequence[str], set_: str) -> tuple[str, str]:
    i = list(sets).index(set_)
    return SET_STYLES[i % len(SET_STYLES)], SET_MARKERS[i % len(SET_MARKERS)]


def _log_axes(ax, xs, xlabel: str, ylabel: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = sorted({float(v) for v in xs})
    if 0 < len(ticks) <= 8:
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)


def _series_label(method: str, set_: str, sets: Sequence[str]) -> str:
    return method if len(sets) == 1 else f"{method}, {set_}"


def _dtype_of(rows: pd.DataFrame) -> str:
    """The most common dtype among ``rows`` (float32 where none is recorded)."""
    known = rows["dtype"][rows["dtype"].astype(bool)]
    return str(known.mode().iloc[0]) if not known.empty else "float32"


def _method_rank(method: str) -> int:
    """Sort key of a method: the cost model's order, unknown methods last."""
    return METHODS.index(method) if method in METHODS else len(METHODS)


def _method_order(methods) -> list[str]:
    return sorted(set(methods), key=_method_rank)


def plot_time_vs_classes(df: pd.DataFrame, path: Path) -> str | None:
    """Gradient time vs number of classes k, log-log, at one feature size n.

    One panel per batch size (the smallest, and the largest B <= 32), one line
    per method and result set; each legend entry gives the fitted log-log
    slope.  The lecture predicts about 2 for naive (a k x nk Jacobian per
    example) and about 1 for structured, at fixed B and n.
    """
    g = _ok_gradients(df)
    n = _pick_features(g)
    if n is None:
        return "no ok gradient points"
    g = g[g["features"] == n]
    batches = _scaling_batches(g)
    if not batches:
        return f"no method has ok gradient points at two or more k (n = {n})"
    sets = sorted(g["set"].unique())
    lines = max(len(g[g["batch"] == b][["method", "set"]].drop_duplicates()) for b in batches)
    fig, axes = _figure(len(batches), lines if lines > LEGEND_INSIDE_MAX else 0)
    for ax, batch in zip(axes, batches):
        gb = g[g["batch"] == batch]
        for method in _method_order(gb["method"]):
            for set_ in sets:
                pts = gb[(gb["method"] == method) & (gb["set"] == set_)].sort_values("classes")
                if pts.empty:
                    continue
                slope = fit_loglog_slope(pts["classes"], pts["time_median_s"])
                style, marker = _set_style(sets, set_)
                text = "n/a" if math.isnan(slope) else f"{slope:.1f}"
                ax.plot(pts["classes"], pts["time_median_s"], style, marker=marker, color=METHOD_COLORS.get(method),
                        label=f"{_series_label(method, set_, sets)}: slope {text}")
        _log_axes(ax, gb["classes"], "classes k", "time per gradient (s)")
        ax.set_title(f"B = {batch}", fontsize=10)
        _legend(ax)
    fig.suptitle(f"Gradient time vs classes (n = {n}); lecture: naive slope 2, structured 1", fontsize=11)
    _save(fig, path)
    return None


def plot_memory_vs_classes(df: pd.DataFrame, path: Path) -> str | None:
    """Peak memory vs number of classes k, log-log, at one n: one panel per batch size
    (the smallest, and the largest B <= 32, where naive_batched grows with B).

    Lines: the cost model's predicted peak (``costmodel.gradient_cost``) per
    method, over a fine grid of k (naive_batched dashed: at B = 1 it equals
    naive).  Filled markers: measured peak bytes above the inputs, one marker
    shape per result set.  Crosses: points skipped or failed, drawn at their
    predicted peak.  Points without a measured (or predicted) peak are left
    out, and so is the legend entry of a set with no measured point in a panel.
    """
    g = _ok_gradients(df)
    g = g[g["peak_bytes"].notna()]
    n = _pick_features(g)
    if n is None:
        return "no ok gradient points with a measured peak"
    batches = _scaling_batches(g[g["features"] == n])
    if not batches:
        return f"no method has a measured peak at two or more k (n = {n})"
    grads = df[(df["kind"] == "gradient") & (df["features"] == n)]
    sets = sorted(grads["set"].unique())
    measured_sets = g.loc[(g["features"] == n) & g["batch"].isin(batches), "set"].nunique()
    entries = grads["method"].nunique() + measured_sets + int((grads["status"] != "ok").any())
    below = entries > LEGEND_INSIDE_MAX + 1  # methods' lines run apart: room for one more inside
    fig, axes = _figure(len(batches), entries if below else 0)
    for ax, batch in zip(axes, batches):
        at = grads[grads["batch"] == batch]
        dtype = _dtype_of(at)
        ks = np.unique(np.geomspace(at["classes"].min(), at["classes"].max(), 60).round().astype(int))
        handles, with_points, any_miss = [], set(), False
        for method in _method_order(at["method"]):
            color = METHOD_COLORS.get(method)
            predicted = [gradient_cost(method, batch, n, int(k), dtype).peak_bytes for k in ks]
            style = "--" if method == "naive_batched" else "-"
            handles.append(ax.plot(ks, predicted, style, color=color, label=f"{method} (cost model)")[0])
            for set_ in sets:
                pts = at[(at["method"] == method) & (at["set"] == set_)]
                ok = pts[(pts["status"] == "ok") & pts["peak_bytes"].notna()]
                if not ok.empty:
                    with_points.add(set_)
                    ax.plot(ok["classes"], ok["peak_bytes"], _set_style(sets, set_)[1], color=color,
                            linestyle="none", markersize=6)
                miss = pts[(pts["status"] != "ok") & pts["predicted_bytes"].notna()]
                if not miss.empty:
                    any_miss = True
                    ax.plot(miss["classes"], miss["predicted_bytes"], "x", color=color, markersize=8)
        for set_ in sets:
            if set_ in with_points:
                handles.append(Line2D([], [], color="black", marker=_set_style(sets, set_)[1], linestyle="none",
                                      label=f"measured, {set_}" if len(sets) > 1 else "measured"))
        if any_miss:
            handles.append(Line2D([], [], color="black", marker="x", linestyle="none", label="not run (predicted)"))
        _log_axes(ax, at["classes"].unique(), "classes k", "peak memory above inputs (bytes)")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_bytes(v)))
        ax.set_title(f"B = {batch}", fontsize=10)
        _legend(ax, handles, below=below)
    fig.suptitle(f"Peak memory vs classes: measured vs cost model (n = {n})", fontsize=11)
    _save(fig, path)
    return None


def ratio_table(df: pd.DataFrame) -> pd.DataFrame:
    """Naive / structured, time and peak memory, per set and k, at the smallest shared batch and one n.

    The batch is the smallest one at which every set has both methods at some
    k; where the sets share no batch, each set keeps its own smallest.

    Columns: set, batch, features, classes, time_ratio, memory_ratio,
    predicted_flops_ratio, predicted_memory_ratio (the last two from the cost model).
    """
    g = _ok_gradients(df)
    both = g[g["method"].isin(["naive", "structured"])]
    n = _pick_features(both[both["method"] == "naive"])
    cols = ["set", "batch", "features", "classes", "time_ratio", "memory_ratio",
            "predicted_flops_ratio", "predicted_memory_ratio"]
    if n is None:
        return pd.DataFrame(columns=cols)
    both = both[both["features"] == n]
    keys = ["set", "batch", "features", "classes"]
    merged = both[both["method"] == "naive"].merge(both[both["method"] == "structured"], on=keys,
                                                   suffixes=("_naive", "_structured"))
    if merged.empty:
        return pd.DataFrame(columns=cols)
    common = set.intersection(*(set(b) for b in merged.groupby("set")["batch"].unique()))
    if common:
        merged = merged[merged["batch"] == min(common)]
    else:
        merged = merged[merged["batch"] == merged.groupby("set")["batch"].transform("min")]
    out = merged[keys].copy()
    out["time_ratio"] = merged["time_median_s_naive"] / merged["time_median_s_structured"]
    out["memory_ratio"] = merged["peak_bytes_naive"] / merged["peak_bytes_structured"]
    out["predicted_flops_ratio"] = merged["predicted_flops_naive"] / merged["predicted_flops_structured"]
    out["predicted_memory_ratio"] = merged["predicted_bytes_naive"] / merged["predicted_bytes_structured"]
    return out.sort_values(["set", "classes"]).reset_index(drop=True)


def plot_ratio_vs_classes(df: pd.DataFrame, path: Path) -> str | None:
    """Naive over structured vs k: time (left) and peak memory (right), log-log.

    Measured ratios per result set (markers), the lecture's ratio k (dashed:
    a k x nk Jacobian against an n x k gradient), and the cost model's ratio
    (dotted: predicted FLOPs for time, predicted peak bytes for memory, in the
    points' dtype), one line per batch where the sets share none (see
    :func:`ratio_table`).  A set without a measured ratio in a panel (no peak
    counter: NaN peak bytes) is left out of that panel and its legend.
    """
    ratios = ratio_table(df)
    if ratios.empty:
        return "no k with both naive and structured measured at the same batch and n"
    n = int(ratios["features"].iloc[0])
    batches = sorted(int(b) for b in ratios["batch"].unique())
    ks = np.unique(np.geomspace(ratios["classes"].min(), ratios["classes"].max(), 60).round().astype(int))
    g = _ok_gradients(df)
    g = g[g["method"].isin(["naive", "structured"]) & (g["features"] == n)]
    models = {}  # batch -> {column: the cost model's ratio over ks}
    for batch in batches:
        dtype = _dtype_of(g[g["batch"] == batch])
        costs = [(gradient_cost("naive", batch, n, int(k), dtype),
                  gradient_cost("structured", batch, n, int(k), dtype)) for k in ks]
        models[batch] = {"time_ratio": [a.flops / b.flops for a, b in costs],
                         "memory_ratio": [a.peak_bytes / b.peak_bytes for a, b in costs]}
    sets = sorted(ratios["set"].unique())
    set_batch = ratios.groupby("set")["batch"].first().astype(int).to_dict()
    entries = len(sets) + 1 + len(batches)
    fig, axes = _figure(2, entries if entries > LEGEND_INSIDE_MAX else 0)
    for ax, col, title, model_label in ((axes[0], "time_ratio", "time", "cost model (FLOPs)"),
                                        (axes[1], "memory_ratio", "peak memory", "cost model (peak bytes)")):
        for set_ in sets:
            pts = ratios[(ratios["set"] == set_) & ratios[col].notna()]
            if pts.empty:  # e.g. no peak counter on this backend: no measured memory ratio
                continue
            style, marker = _set_style(sets, set_)
            label = "measured" if len(sets) == 1 else f"measured, {set_}"
            if len(batches) > 1:
                label += f" (B = {set_batch[set_]})"
            ax.plot(pts["classes"], pts[col], style, marker=marker,
                    color=RATIO_COLORS[sets.index(set_) % len(RATIO_COLORS)], label=label)
        ax.plot(ks, ks, "--", color="gray", label="k (lecture)")
        for i, batch in enumerate(batches):
            ax.plot(ks, models[batch][col], ":", color=MODEL_COLORS[i % len(MODEL_COLORS)],
                    label=model_label if len(batches) == 1 else f"{model_label}, B = {batch}")
        _log_axes(ax, ratios["classes"].unique(), "classes k", f"naive / structured {title} (x)")
        ax.set_title(f"{title} ratio", fontsize=10)
        _legend(ax)
    where = f"B = {batches[0]}" if len(batches) == 1 else "no batch shared by all sets: each at its smallest B"
    fig.suptitle(f"Naive over structured ({where}, n = {n})", fontsize=11)
    _save(fig, path)
    return None


def plot_throughput_vs_batch(df: pd.DataFrame, path: Path) -> str | None:
    """Samples per second vs batch size, log-log, one colour per result set.

    Solid: whole SGD epochs (the ``epoch`` rows, structured gradient on
    MNIST-shaped data); dashed: single structured gradient calls at n = 784,
    k = 10.  With a CPU and a GPU set, the crossing shows the batch size
    from which the GPU is faster.
    """
    table = throughput_table(df)
    if table.empty:
        return ("no epoch rows and no structured gradient rows at n = "
                f"{EPOCH_FEATURES}, k = {EPOCH_CLASSES}")
    sets = sorted(table["set"].unique())
    colors = [f"C{i}" for i in range(10)]
    fig, (ax,) = _figure(1)
    many_methods = table["method"].nunique() > 1
    for (source, method, set_), pts in table.groupby(["source", "method", "set"]):
        color = colors[sets.index(set_) % len(colors)]
        what = "epoch" if source == "epoch" else "gradient call"
        label = f"{set_}: {what}" + (f" ({method})" if many_methods else "")
        ax.plot(pts["batch"], pts["samples_per_s"], "-" if source == "epoch" else "--", marker="o",
                color=color, label=label)
    _log_axes(ax, table["batch"].unique(), "batch size B", "throughput (samples/s)")
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"Throughput vs batch size (n = {EPOCH_FEATURES}, k = {EPOCH_CLASSES})", fontsize=11)
    _save(fig, path)
    return None


def pick_asv_benchmark(asv: pd.DataFrame, name: str | None = None) -> str:
    """The asv benchmark to plot: ``name`` (exact, or a unique substring), else the
    structured gradient time benchmark.

    Raises ValueError for a name that matches none or several benchmarks.
    """
    names = sorted(asv["benchmark"].unique())
    if name:
        if name in names:
            return name
        hits = [b for b in names if name.lower() in b.lower()]
        if len(hits) == 1:
            return hits[0]
        what = f"matches {', '.join(hits)}" if hits else f"matches none of {', '.join(names)}"
        raise ValueError(f"asv benchmark {name!r} {what}; fix: pass one full name to --benchmark")

    def score(b: str) -> tuple:
        rows = asv[asv["benchmark"] == b]
        leaf = b.rsplit(".", 1)[-1]
        has_structured = "method" in rows and (rows["method"] == "structured").any()
        return (leaf.startswith("time_") or (rows["type"] == "time").any(), has_structured,
                "gradient" in b.lower(), "epoch" not in b.lower(), -len(b))

    return max(names, key=score)


def asv_history_table(asv: pd.DataFrame, benchmark: str, *, default_filter: bool = True) -> pd.DataFrame:
    """The rows of ``benchmark`` to draw across commits, with a ``series`` label each.

    With ``default_filter`` and a ``method`` parameter, only the structured
    method's rows.  At most :data:`MAX_ASV_LINES` series are kept, spread over
    the sorted parameter combinations that have a successful result
    (``attrs["series_total"]`` counts those).
    """
    rows = asv[asv["benchmark"] == benchmark].copy()
    params = [c for c in rows.columns if c not in _ASV_FIXED and rows[c].notna().any()]
    if default_filter and "method" in params and (rows["method"] == "structured").any():
        rows = rows[rows["method"] == "structured"]
        params.remove("method")
    envs = _asv_set_labels(rows)
    several = len(envs) > 1

    def label(r) -> str:
        parts = [f"{p}={_param_text(r[p])}" for p in params]
        if several:
            parts.append(envs[r["machine"], r["env_name"]].removeprefix("asv:"))
        return ", ".join(parts) or benchmark.rsplit(".", 1)[-1]

    rows["series"] = [label(r) for r in rows.to_dict("records")]
    series = sorted(rows.loc[rows["status"] == "ok", "series"].unique(), key=_natural_key)
    if len(series) > MAX_ASV_LINES:
        series = [series[int(i)] for i in np.linspace(0, len(series) - 1, MAX_ASV_LINES).round()]
    total = rows.loc[rows["status"] == "ok", "series"].nunique()
    rows = rows[rows["series"].isin(series)].sort_values(["date", "commit_hash"]).reset_index(drop=True)
    rows.attrs["series_total"] = total
    rows.attrs["filter"] = "method=structured" if "method" in rows and "method" not in params else ""
    return rows


def _param_text(value) -> str:
    """96.0 -> 96 (a parameter column holding NaN for other benchmarks is float)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_ASV_FIXED = {"benchmark", "machine", "env_name", "commit_hash", "date", "python", "value", "q25", "q75",
              "unit", "type", "status", "series", "features_hint"}


def _natural_key(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def plot_asv_history(asv: pd.DataFrame, benchmark: str, path: Path, *, default_filter: bool = True,
                     rows: pd.DataFrame | None = None) -> str | None:
    """One asv benchmark across commits: x = commits in date order (short hash), y = value.

    One line per parameter combination (and machine/environment where several),
    at most six; error bars span asv's interquartile range where recorded.
    ``rows``: :func:`asv_history_table` of ``benchmark``, where already computed.
    """
    if rows is None:
        rows = asv_history_table(asv, benchmark, default_filter=default_filter)
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        return f"asv benchmark {benchmark} has no successful result"
    commits = asv.groupby("commit_hash")["date"].min().sort_values().index.tolist()
    pos = {c: i for i, c in enumerate(commits)}
    fig, (ax,) = _figure(1)
    for i, (series, pts) in enumerate(sorted(ok.groupby("series"), key=lambda kv: _natural_key(kv[0]))):
        x = pts["commit_hash"].map(pos)
        lower = (pts["value"] - pts["q25"]).clip(lower=0).fillna(0)
        upper = (pts["q75"] - pts["value"]).clip(lower=0).fillna(0)
        ax.errorbar(x, pts["value"], yerr=[lower, upper], marker="o", capsize=2, color=f"C{i}", label=series)
    ax.set_xticks(range(len(commits)))
    step = max(1, len(commits) // 15)
    ax.set_xticklabels([c[:8] if j % step == 0 else "" for j, c in enumerate(commits)],
                       rotation=45 if len(commits) > 4 else 0, ha="right" if len(commits) > 4 else "center",
                       fontsize=8)
    values = ok["value"]
    if values.min() > 0 and values.max() / values.min() > 30:
        ax.set_yscale("log")
    unit = ok["unit"].iloc[0] or "value"
    ax.set_xlabel("commit (oldest to newest)")
    ax.set_ylabel({"seconds": "time"}.get(unit, unit))
    if unit in ("seconds", "bytes"):
        show = _unit_formatter(unit)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: show(v) if v > 0 else "0"))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    total = rows.attrs.get("series_total", 0)
    shown = ok["series"].nunique()
    details = [rows.attrs["filter"]] if rows.attrs.get("filter") else []
    if total > shown:
        details.append(f"{shown} of {total} parameter sets")
    ax.set_title(f"asv: {benchmark}" + (f"\n({', '.join(details)})" if details else ""), fontsize=10)
    _save(fig, path)
    return None


# ---------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------

def markdown_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A GitHub markdown table; ``|`` and newlines in cells are escaped."""
    def cell(v) -> str:
        text = "—" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def format_seconds(s: float) -> str:
    if s is None or not np.isfinite(s):
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def format_flops(f: float) -> str:
    if f is None or not np.isfinite(f):
        return "—"
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if f >= scale:
            return f"{f / scale:.1f} {unit}"
    return f"{f:.0f} FLOP"


def _fmt_bytes(b) -> str:
    return format_bytes(b) if b is not None and np.isfinite(b) else "—"


def _fmt(v, spec: str) -> str:
    return format(v, spec) if v is not None and np.isfinite(v) else "—"


def _unit_formatter(unit: str):
    """How to write a value of an asv benchmark's ``unit``: seconds and bytes in their units, else 4 digits."""
    return {"seconds": format_seconds, "bytes": _fmt_bytes}.get(unit, lambda v: _fmt(v, ".4g"))


def _ratio(a, b) -> float:
    return a / b if a is not None and b and np.isfinite(a) and np.isfinite(b) else math.nan


def _status_cell(row) -> str:
    if row["status"] == "ok":
        return "ok"
    reason = str(row["reason"] or "").strip()
    if len(reason) > 90:
        reason = reason[:87] + "..."
    return f"{row['status']}: {reason}" if reason else str(row["status"])


def _environment_section(envs: dict) -> str:
    fields = []
    for label, env in envs.items():
        b, m, p = env.get("backend") or {}, env.get("machine") or {}, env.get("probe") or {}
        cpu = b.get("cpu_model") or "—"
        if b.get("cpu_cores"):
            cpu += f" ({b['cpu_cores']} cores)"
        gpu = b.get("gpu_name") or "—"
        if b.get("gpu_memory_total_bytes"):
            gpu += f" ({format_bytes(b['gpu_memory_total_bytes'])})"
        libs = ", ".join(f"{lib} {b[lib]}" for lib in ("numpy", "cupy", "torch", "array_api_strict") if b.get(lib))
        commit = str(m.get("git_commit") or "—")[:12]
        fields.append({
            "backend": f"{b.get('backend', '—')} on {b.get('device', '—')}",
            "CPU": cpu, "BLAS": b.get("blas") or "—", "GPU": gpu, "libraries": libs or "—",
            "memory": _fmt_bytes(_number(m.get("memory_total_bytes"))),
            "git commit": commit, "GEMM rate (probe)": _fmt(_number(p.get("gemm_gflops")), ".1f") + " GFLOP/s",
            "copy bandwidth (probe)": _fmt(_number(p.get("copy_gbps")), ".1f") + " GB/s",
            "measured": str(env.get("created") or "—"), "folder": f"`{env.get('folder', '—')}`",
        })
    keys = list(fields[0]) if fields else []
    rows = [[k, *[f[k] for f in fields]] for k in keys]
    return markdown_table(["", *envs], rows)


def _counts_section(df: pd.DataFrame) -> str:
    """Points per set and status; every error with its reason; the skipped ones folded away."""
    counts = df.groupby(["set", "status"], sort=False).size().unstack(fill_value=0)
    known = ("ok", "skipped", "error")
    statuses = [s for s in known if s in counts] + [s for s in counts if s not in known]
    rows = [[set_, *[int(counts.loc[set_, s]) for s in statuses], int(counts.loc[set_].sum())]
            for set_ in counts.index]
    parts = [markdown_table(["set", *statuses, "total"], rows)]
    errors = df[df["status"] == "error"]
    if not errors.empty:
        parts.append("Errors:\n\n" + "\n".join(
            f"- {r['set']}: {_point(r)}: {_one_line(r['reason']) or 'no reason recorded'}"
            for r in errors.to_dict("records")))
    skipped = df[df["status"] == "skipped"]
    if not skipped.empty:
        items = "\n".join(f"- {r['set']}: {_point(r)}: {_one_line(r['reason'])}" for r in skipped.to_dict("records"))
        parts.append(f"<details><summary>{len(skipped)} skipped point(s) and why</summary>\n\n{items}\n\n</details>")
    return "\n\n".join(parts)


def _one_line(text) -> str:
    """A reason as one markdown list item: newlines (a traceback's) become spaces."""
    return str(text or "").replace("\r\n", " ").replace("\n", " ").replace("\r", " ").strip()


def _point(r) -> str:
    return f"{r['kind']} {r['method']} B={int(r['batch'])} n={_int_text(r['features'])} k={int(r['classes'])}"


def _int_text(v) -> str:
    return str(int(v)) if v is not None and np.isfinite(v) else "?"


def lecture_rows(df_set: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """The rows of one set for the lecture's table, and the (n, k) they are at.

    At n = k = 1000 where the set has such points, else at its largest k with
    an ok point (and the largest n there): naive and naive_batched at B = 1,
    naive_batched at B = 96, structured at B = 1, 96 and the largest batch
    (each only where present, B = 1 meaning the smallest batch).
    """
    g = df_set[(df_set["kind"] == "gradient") & df_set["features"].notna()]
    if g.empty:
        return pd.DataFrame(), 0, 0
    if ((g["features"] == LECTURE_N) & (g["classes"] == LECTURE_K)).any():
        n, k = LECTURE_N, LECTURE_K
    else:
        ok = g[g["status"] == "ok"]
        pool = ok if not ok.empty else g
        k = int(pool["classes"].max())
        n = int(pool.loc[pool["classes"] == k, "features"].max())
    at = g[(g["features"] == n) & (g["classes"] == k)]
    smallest = int(at["batch"].min())
    wanted = [("naive", smallest), ("naive_batched", smallest), ("naive_batched", LECTURE_BATCH),
              ("structured", smallest), ("structured", LECTURE_BATCH), ("structured", int(at["batch"].max()))]
    picks, seen = [], set()
    for method, batch in wanted:
        rows = at[(at["method"] == method) & (at["batch"] == batch)]
        if not rows.empty and (method, batch) not in seen:
            seen.add((method, batch))
            picks.append(rows.iloc[-1])
    return pd.DataFrame(picks), n, k


def _lecture_section(df: pd.DataFrame) -> tuple[str, bool]:
    """The lecture's table per set, and whether every set shown fell back from
    n = k = 1000 to its largest k."""
    parts, fell_back = [], []
    for set_, df_set in df.groupby("set", sort=False):
        if not (df_set["kind"] == "gradient").any():
            continue
        rows, n, k = lecture_rows(df_set)
        if rows.empty:
            continue
        head = f"**{set_}**"
        fell_back.append((n, k) != (LECTURE_N, LECTURE_K))
        if (n, k) != (LECTURE_N, LECTURE_K):
            head += (f" — no n = k = {LECTURE_N} points in this set; showing its largest k instead: "
                     f"n = {n}, k = {k}.")
        else:
            head += f" — n = k = {LECTURE_N}."
        table = markdown_table(
            ["method", "B", "lecture memory (predicted)", "implementation peak (predicted)", "measured peak",
             "FLOPs (predicted)", "measured time", "status"],
            [[r["method"], int(r["batch"]), _fmt_bytes(r["predicted_lecture_bytes"]),
              _fmt_bytes(r["predicted_bytes"]), _fmt_bytes(r["peak_bytes"]) if r["status"] == "ok" else "—",
              format_flops(r["predicted_flops"]), format_seconds(r["time_median_s"]) if r["status"] == "ok" else "—",
              _status_cell(r)] for _, r in rows.iterrows()])
        parts += [head, table]
        ratios = _lecture_ratios(rows)
        if ratios:
            parts.append(markdown_table(
                ["ratio", "B", "lecture memory (predicted)", "implementation peak (predicted)", "measured peak",
                 "FLOPs (predicted)", "measured time"], ratios))
    if not parts:
        return "No gradient points, so no lecture table.", False
    return "\n\n".join(parts), all(fell_back)


def _lecture_ratios(rows: pd.DataFrame) -> list[list]:
    out = []
    structured = {int(r["batch"]): r for _, r in rows[rows["method"] == "structured"].iterrows()}
    for _, r in rows[rows["method"] != "structured"].iterrows():
        s = structured.get(int(r["batch"]))
        if s is None:
            continue
        both_ok = r["status"] == "ok" and s["status"] == "ok"

        def x(a, b, measured=False):
            v = _ratio(a, b) if (both_ok or not measured) else math.nan
            return f"{v:,.0f}x" if np.isfinite(v) and v >= 10 else _fmt(v, ".2g") + ("x" if np.isfinite(v) else "")

        out.append([f"{r['method']} / structured", int(r["batch"]),
                    x(r["predicted_lecture_bytes"], s["predicted_lecture_bytes"]),
                    x(r["predicted_bytes"], s["predicted_bytes"]),
                    x(r["peak_bytes"], s["peak_bytes"], measured=True),
                    x(r["predicted_flops"], s["predicted_flops"]),
                    x(r["time_median_s"], s["time_median_s"], measured=True)])
    return out


def _summary_section(df: pd.DataFrame) -> str:
    parts = []
    for set_, df_set in df.groupby("set", sort=False):
        g = df_set[df_set["kind"] == "gradient"]
        if g.empty:
            continue
        batch = int(g["batch"].min())
        g = g[g["batch"] == batch].copy()
        g["_order"] = g["method"].map(_method_rank)
        rows = []
        for _, r in g.sort_values(["_order", "features", "classes"]).iterrows():
            ok = r["status"] == "ok"
            rows.append([r["method"], _int_text(r["features"]), int(r["classes"]),
                         format_seconds(r["time_median_s"]) if ok else "—",
                         _fmt(r["gflops"], ".3g") if ok else "—",
                         _fmt(100 * _ratio(r["gflops"], r["gemm_gflops"]), ".1f") if ok else "—",
                         _fmt(r["gbytes_per_s"], ".3g") if ok else "—",
                         _fmt(100 * _ratio(r["gbytes_per_s"], r["copy_gbps"]), ".1f") if ok else "—",
                         _fmt_bytes(r["peak_bytes"]) if ok else "—", _fmt_bytes(r["predicted_bytes"]),
                         _fmt(_ratio(r["peak_bytes"], r["predicted_bytes"]), ".2f") if ok else "—",
                         _status_cell(r)])
        parts.append(f"**{set_}**, B = {batch}:")
        parts.append(markdown_table(["method", "n", "k", "time", "GFLOP/s", "% GEMM peak", "GB/s",
                                     "% copy bandwidth", "measured peak", "predicted peak",
                                     "measured / predicted", "status"], rows))
    return "\n\n".join(parts) if parts else "No gradient points."


def _slopes_section(df: pd.DataFrame) -> str:
    slopes = loglog_slopes(df)
    slopes = slopes[slopes["points"] >= 2]
    if slopes.empty:
        return "No method has ok points at two or more k, so no slopes."
    batches = sorted(slopes["batch"].unique())
    rows = []
    for (set_, method, n), g in slopes.groupby(["set", "method", "features"], sort=False):
        by_batch = dict(zip(g["batch"], g["slope_time"]))
        rows.append([set_, method, n, *[_fmt(by_batch.get(b, math.nan), ".2f") for b in batches]])
    rows.sort(key=lambda r: (r[0], _method_rank(r[1]), r[2]))
    return ("Fitted exponent p of time ~ k^p (ok points only; lecture: 2 for naive, 1 for structured):\n\n"
            + markdown_table(["set", "method", "n", *[f"B = {b}" for b in batches]], rows))


def _throughput_section(df: pd.DataFrame) -> str:
    table = throughput_table(df)
    epochs = table[table["source"] == "epoch"]
    if epochs.empty:
        return ""
    pivot = epochs.pivot_table(index="batch", columns="set", values="samples_per_s", aggfunc="max")
    sets = list(pivot.columns)
    several = len(sets) > 1
    rows = []
    for batch, r in pivot.iterrows():
        row = [int(batch), *[_fmt(r[s], ",.0f") for s in sets]]
        if several:
            row.append(r.idxmax() if r.notna().any() else "—")
        rows.append(row)
    headers = ["B", *[f"{s} (samples/s)" for s in sets]] + (["fastest"] if several else [])
    return "Whole-epoch throughput:\n\n" + markdown_table(headers, rows)


def _asv_section(asv: pd.DataFrame, benchmark: str, asv_dir: Path, rows: pd.DataFrame) -> str:
    """What the asv folder holds, and the chosen benchmark (``rows``: its
    :func:`asv_history_table`) at its first and latest commit."""
    machines = ", ".join(sorted(asv["machine"].unique()))
    commits = asv["commit_hash"].nunique()
    lines = [f"asv results from `{asv_dir}`: {asv['benchmark'].nunique()} benchmark(s), {commits} commit(s), "
             f"machine(s): {machines}."]
    problems = asv.attrs.get("problems") or []
    if problems:
        lines.append("Files left out: " + "; ".join(problems))
    ok = rows[rows["status"] == "ok"].sort_values("date")
    if not ok.empty:
        show = _unit_formatter(ok["unit"].iloc[0] or "")
        table = []
        for series, g in ok.groupby("series", sort=False):
            first, last = g.iloc[0], g.iloc[-1]
            change = 100 * (_ratio(last["value"], first["value"]) - 1)
            table.append([series, first["commit_hash"][:8], show(first["value"]), last["commit_hash"][:8],
                          show(last["value"]), _fmt(change, "+.1f") + (" %" if np.isfinite(change) else "")])
        lines.append(f"`{benchmark}`" + (f" ({rows.attrs['filter']})" if rows.attrs.get("filter") else "")
                     + ", first and latest commit with a result:")
        lines.append(markdown_table(["series", "first commit", "value", "latest commit", "value", "change"], table))
    return "\n\n".join(lines)


_CAPTIONS = {
    "time_vs_classes.png": ("Gradient time vs k", "Time of one gradient call against the number of classes, "
                            "log-log, at fixed B and n; the legend gives each line's fitted slope. The lecture "
                            "predicts slope 2 for naive (a k × nk Jacobian per example) and 1 for structured."),
    "memory_vs_classes.png": ("Peak memory vs k", "Measured peak memory above the inputs (markers) over the cost "
                              "model's prediction (lines); crosses are points not run, at their predicted peak."),
    "ratio_vs_classes.png": ("Naive / structured vs k", "How many times slower and bigger naive is; dashed: the "
                             "lecture's ratio k, dotted: the cost model's ratio."),
    "throughput_vs_batch.png": ("Throughput vs batch size", "Samples per second of whole SGD epochs (solid) and "
                                "single structured gradient calls (dashed) per result set; where a GPU set "
                                "crosses a CPU set, the GPU starts to pay off."),
    "asv_history.png": ("asv benchmark across commits", "One asv benchmark per commit, oldest to newest; "
                        "error bars span asv's interquartile range."),
}


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------

def make_report(dirs: Iterable[str | os.PathLike] | None, out: str | os.PathLike, *,
                asv_dir: str | os.PathLike | None = None, asv_benchmark: str | None = None) -> Path:
    """Write ``out/report.md`` and its PNG plots from sweep folders and/or asv results.

    Parameters
    ----------
    dirs : list of paths
        Sweep result folders (each with results.csv and environment.json);
        may be empty when ``asv_dir`` is given.
    out : path
        Output folder, created if needed (may be a sweep folder itself).
    asv_dir : path, optional
        asv results folder (``results_dir`` of asv.conf.json).  Its mappable
        benchmarks join the scaling plots as set ``asv:<machine>`` (latest
        commit), and ``asv_history.png`` shows ``asv_benchmark`` across commits.
    asv_benchmark : str, optional
        Full name or unique part of an asv benchmark name (default: the
        structured gradient time benchmark).

    Returns
    -------
    Path
        ``out/report.md``.

    Raises
    ------
    ValueError
        Nothing to report, or bad input (see :func:`load_results`,
        :func:`load_asv_results`, :func:`pick_asv_benchmark`).
    """
    dirs = _as_paths(dirs)
    if not dirs and asv_dir is None:
        raise ValueError("nothing to report: give sweep result folders and/or an asv results folder")
    df, envs = _load_sets(dirs) if dirs else (_empty_results(), {})
    asv = benchmark = None
    if asv_dir is not None:
        asv = load_asv_results(asv_dir)
        benchmark = pick_asv_benchmark(asv, asv_benchmark)
        asv_rows, asv_envs = asv_to_sweep(asv)
        if not asv_rows.empty:
            df = pd.concat([df, asv_rows], ignore_index=True) if len(df) else asv_rows
            envs.update(asv_envs)
    history = None if asv is None else asv_history_table(asv, benchmark, default_filter=asv_benchmark is None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    drawn, not_drawn = _draw_plots(df, out, asv, benchmark, history)
    text = _report_text(df, envs, drawn, not_drawn, asv, benchmark, asv_dir, dirs, history)
    path = out / "report.md"
    atomic_write_text(path, text)
    return path


def _draw_plots(df, out: Path, asv, benchmark, history) -> tuple[list[str], dict]:
    """Draw every plot the data allow; remove any plot of :data:`PLOT_FILES` not drawn
    this time (an old one would not match this report)."""
    plots = {"time_vs_classes.png": lambda p: plot_time_vs_classes(df, p),
             "memory_vs_classes.png": lambda p: plot_memory_vs_classes(df, p),
             "ratio_vs_classes.png": lambda p: plot_ratio_vs_classes(df, p),
             "throughput_vs_batch.png": lambda p: plot_throughput_vs_batch(df, p)}
    if asv is not None:
        plots["asv_history.png"] = lambda p: plot_asv_history(asv, benchmark, p, rows=history)
    drawn, not_drawn = [], {}
    for name, draw in plots.items():
        if df.empty and name != "asv_history.png":
            reason = "no sweep results"
        else:
            reason = draw(out / name)
        if reason is None:
            drawn.append(name)
        else:
            not_drawn[name] = reason
    for name in PLOT_FILES:
        if name not in drawn:
            (out / name).unlink(missing_ok=True)
    return drawn, not_drawn


def _report_text(df, envs, drawn, not_drawn, asv, benchmark, asv_dir, dirs, history) -> str:
    now = _now()
    sources = [f"sweep folder(s) {', '.join(f'`{d}`' for d in dirs)}"] if dirs else []
    sources += [f"asv results `{asv_dir}`"] if asv_dir else []
    parts = ["# softmax-bench report",
             f"Generated {now} from {' and '.join(sources)}. Predictions come from `softmax_core.costmodel`; "
             "memory is in decimal units (1 GB = 10⁹ bytes)."]
    if envs:
        parts += ["## Where it ran", _environment_section(envs)]
    if not df.empty:
        lecture, fell_back = _lecture_section(df)
        heading = f"## The lecture's table at n = k = {LECTURE_N}" + (" (or the largest k measured)" if fell_back else "")
        parts += ["## Points measured", _counts_section(df), heading,
                  "The lecture's memory is the one array that defines each approach (the Jacobian, or the "
                  "gradient); the implementation peak is every temporary this code holds at its worst moment. "
                  "Points not run show their predicted values and why they were skipped.",
                  lecture]
    if drawn or not_drawn:
        parts.append("## Plots")
    for name in drawn:
        title, caption = _CAPTIONS[name]
        if name == "asv_history.png":
            caption += f" Benchmark: `{benchmark}`."
        parts += [f"### {title}", f"![{title}]({name})", caption]
        if name == "time_vs_classes.png":
            parts.append(_slopes_section(df))
        if name == "throughput_vs_batch.png":
            parts.append(_throughput_section(df))
    if not_drawn:
        parts += ["### Plots not drawn", "\n".join(f"- `{name}`: {why}" for name, why in not_drawn.items())]
    if not df.empty:
        parts += ["## Summary at the smallest batch",
                  "GFLOP/s and GB/s use the cost model's FLOPs and traffic over the measured time; % of peak is "
                  "against the sweep's probe (a square float32 GEMM, a large copy).", _summary_section(df)]
    if asv is not None:
        parts += ["## asv", _asv_section(asv, benchmark, Path(asv_dir), history)]
    return "\n\n".join(p for p in parts if p) + "\n"


__all__ = [
    "load_results", "load_asv_results", "asv_to_sweep", "make_report", "fit_loglog_slope", "loglog_slopes",
    "throughput_table", "ratio_table", "lecture_rows", "pick_asv_benchmark", "asv_history_table",
    "markdown_table", "format_seconds", "format_flops", "plot_time_vs_classes", "plot_memory_vs_classes",
    "plot_ratio_vs_classes", "plot_throughput_vs_batch", "plot_asv_history", "PLOT_FILES",
]
