"""Loading sweep folders: valid rows only, one row per point, machine ceilings beside each row.

A row is valid when :func:`softmax_core.runs.resultformat.row_case` accepts it: the
one definition the sweep's ``--resume`` uses too.  Rows of the same point
(the :data:`~softmax_core.runs.resultformat.KEY_COLUMNS`, which keep dtype and data
source apart) are deduplicated, the last one written winning.  Result sets of
format 1 (without the CI and stability columns) are read: their points are drawn
without intervals, and :class:`ResultSets` says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..runs import envfile
from ..runs.cases import threads_text
from ..runs.resultformat import (
    CI_COLUMNS,
    COLUMNS,
    KEY_COLUMNS,
    NUMERIC_COLUMNS,
    TEXT_COLUMNS,
    parse_stable,
    read_results,
    row_case,
)

#: Columns the loader adds: the set, its folder, device kind and machine ceilings, stability,
#: and derived rates with their intervals.
EXTRA_COLUMNS = tuple(
    "set folder device_kind gemm_gflops copy_gbps stability samples_per_s_low samples_per_s_high "
    "gflops_low gflops_high intensity".split()
)


@dataclass
class ResultSets:
    """Rows of every set (``frame``), each set's environment.json, and what the reader
    must be told about the data (``notes``: old formats, duplicates, damaged rows)."""

    frame: pd.DataFrame
    environments: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def as_paths(dirs) -> list[Path]:
    if dirs is None:
        return []
    if isinstance(dirs, (str, os.PathLike)):
        dirs = [dirs]
    return [Path(d) for d in dirs]


def set_folder(where: str | os.PathLike) -> Path:
    """The folder of a result set, given it or its results.csv, with links resolved."""
    path = Path(where).resolve()
    return path.parent if path.is_file() else path


def shown(folder: str | os.PathLike) -> str:
    """``folder`` as given, and the run it leads to where it is a link (``out/sweep/latest``)."""
    folder = Path(folder)
    return f"{folder} ({folder.resolve().name})" if folder.is_symlink() else str(folder)


def load_results(dirs: str | os.PathLike | Iterable[str | os.PathLike]) -> ResultSets:
    """Every valid row of the ``results.csv`` of each sweep folder in ``dirs``.

    Numeric columns are numbers (NaN where empty); ``stable`` is a bool (False
    where not recorded) and ``stability`` says ``stable``, ``unstable`` or
    ``unknown``.  Added columns: see :data:`EXTRA_COLUMNS`.

    Raises ValueError (naming a fix) for no folder, a folder without results,
    a file that is not a results file, or one whose every row is damaged.
    """
    paths = as_paths(dirs)
    if not paths:
        raise InputError(
            "no sweep result folders given; fix: pass the folder written by "
            "`softmax-bench sweep --out DIR`"
        )
    named = {}
    for p in paths:  # one set given twice would be drawn as two runs that agree exactly
        if set_folder(p) in named:
            raise InputError(
                f"{p} and {named[set_folder(p)]} are the same result set; fix: name each set once"
            )
        named[set_folder(p)] = p
    loaded = [(read_set(p), set_environment(p)) for p in paths]
    labels = unique_labels(
        paths, [_label(rows, env, p) for p, ((rows, _), env) in zip(paths, loaded)]
    )
    frames, envs, notes = [], {}, []
    for folder, label, ((frame, set_notes), env) in zip(paths, labels, loaded):
        gemm, copy, _ = envfile.probe_rates(env) or (float("nan"),) * 3
        where = shown(folder)
        frame = frame.assign(
            set=label,
            folder=where,
            device_kind=_device_kind(frame, env),
            gemm_gflops=gemm,
            copy_gbps=copy,
        )
        notes += [f"{label}: {n}" for n in set_notes]
        for name, threads, part in _by_threads(frame, label):
            frames.append(part.assign(set=name))
            with_threads = {"threads": threads} if threads else {}
            envs[name] = {**env, "folder": where, **with_threads}
    return ResultSets(derive(pd.concat(frames, ignore_index=True)), envs, notes)


def _by_threads(frame: pd.DataFrame, label: str):
    """``(set name, thread count, rows)``: one set per BLAS thread count where a folder holds
    several (the sweep's threads axis), so every table and plot shows them side by side; rows
    that do not say their count make a set of their own."""
    counts = sorted(frame["threads"].dropna().unique())
    if len(counts) < 2:  # the rows' count, where they say it, over environment.json's BLAS record
        one = frame["threads"].notna().all() and len(counts) == 1
        return [(label, int(counts[0]) if one else None, frame)]
    sets = [
        (f"{label} ({threads_text(int(t))})", int(t), frame[frame["threads"] == t]) for t in counts
    ]
    unknown = frame[frame["threads"].isna()]
    return sets + ([(f"{label} (threads not recorded)", None, unknown)] if len(unknown) else [])


def read_set(folder: Path) -> tuple[pd.DataFrame, list[str]]:
    """The valid rows of ``folder/results.csv``, typed, one per point, and notes for the reader;
    ValueError (naming a fix) for a missing, empty or wholly damaged file."""
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise InputError(
            f"{folder} {what}; fix: pass a folder written by `softmax-bench sweep --out DIR`"
        )
    path = folder / "results.csv"
    if path.exists() and not path.is_file():
        raise InputError(f"{path} is not a regular file; fix: pass the folder of a result set")
    if not path.is_file():
        raise InputError(
            f"no results.csv in {folder}; fix: run `softmax-bench sweep --out {folder}` "
            "first, or pass the folder that holds results.csv"
        )
    found = read_results(path)
    rows = found.rows
    if not rows:
        raise InputError(
            f"{path} holds no results (it is empty or has only a header); fix: run or "
            f"resume the sweep: `softmax-bench sweep --resume --out {folder}`"
        )
    valid = [row for row in rows if row_case(row) is not None]
    if not valid:
        raise InputError(
            f"{path}: every row is damaged (sizes, kind, method, dtype, status or times "
            f"unreadable); fix: re-run the sweep into a new --out folder, or delete {path}"
        )
    notes = list(found.notes)  # a half-written last line, left out
    if len(valid) < len(rows):
        notes.append(
            f"{len(rows) - len(valid)} damaged row(s) of {path} left out (the sweep's --resume "
            "measures them again)"
        )
    if found.version < 2:
        notes.append(
            f"{path} predates the confidence-interval and stability columns: its times are "
            "drawn without intervals and its points as not marked stable (hollow); re-run the "
            "sweep to get intervals"
        )
    frame = pd.DataFrame(valid).reindex(columns=list(COLUMNS))
    frame = _typed(frame)
    before = len(frame)
    frame = frame.drop_duplicates(subset=list(KEY_COLUMNS), keep="last").reset_index(drop=True)
    if len(frame) < before:
        notes.append(
            f"{before - len(frame)} repeated row(s) of the same point in {path}: the last one "
            "written is kept"
        )
    return frame, notes


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for col in NUMERIC_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    for col in TEXT_COLUMNS:
        frame[col] = frame[col].astype(object).where(frame[col].notna(), "").astype(str)
    frame["dtype"] = frame["dtype"].replace("", "float32")
    # the case's own key: an old epoch row without a data source ran on synthetic data, an
    # old row without workers or chunks in this process on X whole
    cases = [row_case(r) for r in frame.to_dict("records")]
    for col in ("data", "samples", "workers", "chunk_rows"):
        frame[col] = [getattr(c, col) for c in cases]
    raw = frame["stable"]
    frame["stability"] = np.where(
        raw.isna() | (raw.astype(str).str.strip() == ""),
        "unknown",
        np.where(raw.map(parse_stable), "stable", "unstable"),
    )
    frame["stable"] = frame["stability"] == "stable"
    return frame


def derive(frame: pd.DataFrame) -> pd.DataFrame:
    """Fill the predicted columns from the cost model where empty, and add rates with intervals:
    samples/s and GFLOP/s at the median and at both ends of the time's CI, and the arithmetic
    intensity (predicted FLOPs per predicted byte of traffic)."""
    frame = frame.copy()
    cost_columns = {
        "predicted_bytes": "peak_bytes",
        "predicted_lecture_bytes": "lecture_bytes",
        "predicted_flops": "flops",
        "predicted_traffic_bytes": "traffic_bytes",
    }
    missing = frame[list(cost_columns)].isna().any(axis=1) | frame["samples"].isna()
    for i in frame.index[missing]:
        case = row_case(frame.loc[i].to_dict())
        if case is None:
            continue
        cost = case.cost
        for col, attr in cost_columns.items():
            if pd.isna(frame.at[i, col]):
                frame.at[i, col] = getattr(cost, attr)
        if pd.isna(frame.at[i, "samples"]):
            frame.at[i, "samples"] = case.samples
    t, lo, hi = frame["time_median_s"], frame["time_ci_low_s"], frame["time_ci_high_s"]
    ok = frame["status"] == "ok"
    frame["samples_per_s"] = frame["samples_per_s"].fillna(frame["samples"] / t).where(ok)
    frame["gflops"] = frame["gflops"].fillna(frame["predicted_flops"] / t / 1e9).where(ok)
    frame["gbytes_per_s"] = (
        frame["gbytes_per_s"].fillna(frame["predicted_traffic_bytes"] / t / 1e9).where(ok)
    )
    frame["samples_per_s_low"] = (frame["samples"] / hi).where(ok)
    frame["samples_per_s_high"] = (frame["samples"] / lo).where(ok)
    frame["gflops_low"] = (frame["predicted_flops"] / hi / 1e9).where(ok)
    frame["gflops_high"] = (frame["predicted_flops"] / lo / 1e9).where(ok)
    frame["intensity"] = frame["predicted_flops"] / frame["predicted_traffic_bytes"]
    return frame


def set_environment(folder: Path) -> dict:
    """A set's environment.json, with what a report's reader can do about a damaged one."""
    return envfile.read_environment(
        folder, "delete it to report without the machine facts, or re-run the sweep"
    )


def _label(frame: pd.DataFrame, env: dict, folder: Path) -> str:
    label = (env.get("backend") or {}).get("label")
    if label:
        return str(label)
    first = frame.iloc[0]
    if first["backend"] and first["device"]:
        return f"{first['backend']}-{first['device']}"
    return folder.name or str(folder)


def _device_kind(frame: pd.DataFrame, env: dict) -> str:
    """``cpu`` or ``gpu``: environment.json's backend device, else the rows' device column."""
    device = str((env.get("backend") or {}).get("device") or "").lower()
    if not device:
        devices = frame["device"].str.lower()
        device = devices.mode().iloc[0] if not devices.empty else ""
    return (
        "gpu"
        if device.startswith(("gpu", "cuda"))
        else "cpu"
        if device.startswith("cpu")
        else device
    )


def unique_labels(dirs: Sequence[Path], labels: list[str]) -> list[str]:
    """Labels made unique: the folder's name is appended to shared ones, then a counter."""
    out = [
        f"{lab} ({d.resolve().name})" if labels.count(lab) > 1 else lab
        for d, lab in zip(dirs, labels)
    ]
    seen: dict[str, int] = {}
    for i, lab in enumerate(out):
        seen[lab] = seen.get(lab, 0) + 1
        if seen[lab] > 1:
            out[i] = f"{lab} #{seen[lab]}"
    return out


def empty_frame() -> pd.DataFrame:
    """A results table with no rows and every column (for a report of asv results only)."""
    columns = {c: pd.Series(dtype=float if c in NUMERIC_COLUMNS else object) for c in COLUMNS}
    columns.update(
        {
            c: pd.Series(
                dtype=object if c in ("set", "folder", "device_kind", "stability") else float
            )
            for c in EXTRA_COLUMNS
        }
    )
    columns["stable"] = pd.Series(dtype=bool)
    return pd.DataFrame(columns)


__all__ = [
    "ResultSets",
    "load_results",
    "read_set",
    "derive",
    "empty_frame",
    "unique_labels",
    "as_paths",
    "CI_COLUMNS",
    "EXTRA_COLUMNS",
]
