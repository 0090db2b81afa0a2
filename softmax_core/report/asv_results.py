"""asv's results read with asv's own API: one row per benchmark, commit and parameter set.

A file asv cannot load, or whose commit or date is not what asv writes, is left out with a
note; a time that is no measurement (not positive, outside asv's own interval) is marked
damaged.
"""

from __future__ import annotations

import ast
import itertools
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..measure.stats import STABLE_REL_CI

#: The columns of asv's rows that are not a benchmark's parameters.
FIXED = tuple(
    "benchmark machine env_name commit_hash date value low high stable unit type status "
    "series".split()
)


def load_asv_results(asv_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per benchmark x parameter combination x commit x machine x environment.

    Columns: benchmark, machine, env_name, commit_hash, date (UTC), value, low and high (asv's
    99% confidence interval, else its interquartile range), stable, unit, type, status (``ok``;
    ``skipped`` where asv stored NaN; ``failed`` where it stored null), and one column per
    parameter name with the parameter's value (``'naive'`` -> ``naive``, ``'96'`` -> 96).
    ``attrs["machines"]`` holds each machine's description.

    Raises InputError for a folder that does not exist or holds no asv results, and when asv
    is not installed.
    """
    try:
        from asv import results as asv_results
        from asv import util as asv_util
        from asv.benchmarks import Benchmarks
        from asv.machine import Machine
    except ImportError:
        raise InputError("reading asv results needs asv; fix: pip install asv") from None
    root = Path(asv_dir)
    if not root.is_dir():
        raise InputError(
            f"asv results folder {root} does not exist; fix: run `asv run` first, or pass "
            "the folder named by results_dir in asv.conf.json (e.g. results/asv)"
        )
    path = root / "benchmarks.json"
    try:
        benchmarks = (
            asv_util.load_json(str(path), api_version=Benchmarks.api_version)
            if path.is_file()  # not a FIFO, which would be read without end
            else {}
        )
    except (asv_util.UserError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(
            f"cannot read {path} ({exc}); fix: `asv run --bench just-discover`"
        ) from None
    if not isinstance(benchmarks, dict):
        raise InputError(
            f"{path} holds no benchmarks (a {type(benchmarks).__name__}); fix: `asv run --bench "
            "just-discover`"
        )
    rows, machines, unread = [], {}, []
    for file, result in _results(root, asv_results, unread):
        try:  # a file asv loads may still hold what asv never writes: left out, said so
            machine = str(result.params.get("machine", ""))
            found = [
                row
                for name in result.get_all_result_keys()
                for row in _rows(result, name, _object(benchmarks.get(name)), machine)
            ]
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
            unread.append(_left_out(file, exc))
            continue
        rows += found
        if machine not in machines:
            try:
                if not (root / machine / "machine.json").is_file():
                    raise OSError("not a regular file")
                machines[machine] = asv_util.load_json(
                    str(root / machine / "machine.json"), api_version=Machine.api_version
                )
            except (asv_util.UserError, OSError):
                machines[machine] = {}
        machines[machine] = {**_object(machines[machine]), **result.params}
    if not rows:
        raise InputError(
            f"no asv results in {root}; fix: run `asv run` (results go to "
            "<results_dir>/<machine>/), or pass the folder that holds the machine folders"
        )
    df = pd.DataFrame(rows)
    df["date"] = pd.to_datetime(df["date"], unit="ms", utc=True)
    df.attrs["machines"] = machines
    df.attrs["notes"] = unread
    return df


#: The largest asv result file read (asv writes a few hundred kB per commit).
MAX_RESULT_BYTES = 64 * 2**20


def _results(root: Path, asv_results, unread: list):
    """(path, asv's Results) of each file under ``root/<machine>/``; a file asv cannot load, or one
    whose commit or date is not what asv writes, is left out with a note in ``unread``."""
    for path in sorted(root.glob("*/*.json")):
        if path.name == "machine.json":
            continue
        try:
            if not path.is_file():  # a FIFO or device would be read without end
                raise ValueError("not a regular file")
            if path.stat().st_size > MAX_RESULT_BYTES:
                raise ValueError(f"{path.stat().st_size / 2**20:.0f} MiB")
            result = asv_results.Results.load(str(path))
            if not isinstance(result.commit_hash, str) or not _a_date(result.date):
                raise ValueError("its commit or date is not asv's")
        except Exception as exc:  # whatever a damaged file raises: it is left out, said so
            unread.append(_left_out(path, exc))
            continue
        yield path, result


#: asv's dates are milliseconds since 1970; a date past this one (the year 2262) is none.
LAST_DATE_MS = 9.2e12


def _a_date(value) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (0 < value < LAST_DATE_MS)
    )


def _left_out(path, exc: Exception) -> str:
    return f"{path}: left out, not an asv result ({type(exc).__name__}: {str(exc)[:120]})"


def _object(value) -> dict:
    return value if isinstance(value, dict) else {}


def _a_time(value: float, low: float, high: float) -> bool:
    """A positive time within its interval (where asv stored one)."""
    if not value > 0:
        return False
    return not (math.isfinite(low) and math.isfinite(high)) or 0 < low <= value <= high


def _rows(result, name: str, bench: dict, machine: str) -> list[dict]:
    params = result.get_result_params(name) or []
    values = result.get_result_value(name, params)
    stats = result.get_result_stats(name, params)
    names = list(bench.get("param_names") or [])
    names += [f"param{i + 1}" for i in range(len(names), len(params))]
    combos = list(itertools.product(*params))
    values = values if isinstance(values, list) else [values]
    stats = stats if isinstance(stats, list) else [stats] * len(combos)
    rows = []
    for combo, value, stat in zip(combos, values, stats):
        stat = stat or {}
        low, high = stat.get("ci_99_a", stat.get("q_25")), stat.get("ci_99_b", stat.get("q_75"))
        status = "failed" if value is None else "skipped" if not math.isfinite(value) else "ok"
        value, low, high = (float(v) if v is not None else math.nan for v in (value, low, high))
        if status == "ok" and bench.get("unit") == "seconds" and not _a_time(value, low, high):
            status = "damaged"  # no measurement of a call: never drawn or tabled as one
        rows.append(
            {
                "benchmark": name,
                "machine": machine,
                "env_name": result.env_name,
                "commit_hash": result.commit_hash,
                "date": result.date,
                "value": value,
                "low": low,
                "high": high,
                "stable": bool(
                    status == "ok"
                    and np.isfinite(high - low)
                    # the sweep's rule, applied to asv's own interval
                    and (high - low) / 2 <= STABLE_REL_CI * value
                ),
                "unit": bench.get("unit") or "",
                "type": bench.get("type") or "",
                "status": status,
                **{p: _literal(v) for p, v in zip(names, combo)},
            }
        )
    return rows


def _literal(text):
    """asv stores parameter values as reprs: ``"'naive'"`` -> ``'naive'``, ``"96"`` -> 96."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


__all__ = ["load_asv_results", "FIXED"]
