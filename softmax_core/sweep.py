"""The sweep: measure every case of a grid, guard each point, append each result.

``DIR/results.csv`` gets one row per point as soon as the point is done
(flushed and fsynced), so a kill loses at most the point in flight;
``resume=True`` runs only the points not yet in the file and drops a
half-written last line.  ``DIR/environment.json`` records where it ran.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import sys
import time
import uuid
from pathlib import Path

from ._io import atomic_write_text
from .backend import Backend
from .cases import Case, Grid, Guard, default_memory_budget
from .measure import machine_description, peak_memory, probe_machine, time_call

COLUMNS = (
    "run_id", "timestamp", "backend", "device", "kind", "method", "batch", "features", "classes",
    "dtype", "status", "reason", "time_median_s", "time_iqr_s", "time_min_s", "repeats",
    "host_time_median_s", "peak_bytes", "predicted_bytes", "predicted_lecture_bytes",
    "predicted_flops", "predicted_traffic_bytes", "predicted_time_s", "samples", "samples_per_s",
    "gflops", "gbytes_per_s",
)
#: A point runs once untraced for peak memory, then at least MIN_REPEATS timed calls.
MIN_REPEATS = 3
CALLS_PER_POINT = 1 + MIN_REPEATS
TIMING_BUDGET_S = 0.3


def run_sweep(grid: Grid, backend: Backend, out_dir: str | os.PathLike, *, resume: bool = False,
              memory_budget: int | None = None, data_dir: str | os.PathLike | None = None,
              progress: bool | None = None) -> Path:
    """Run ``grid`` on ``backend``, writing ``out_dir/results.csv`` and ``environment.json``.

    Parameters
    ----------
    grid : Grid
        The points to measure (:data:`softmax_core.cases.DEFAULT_GRID` by default in the CLI).
    backend : Backend
        Where to run.
    out_dir : path
        Results folder; created if needed.  An existing ``results.csv`` is an
        error unless ``resume`` is set, so no result is ever overwritten.
    resume : bool
        Keep the rows already in ``results.csv`` and measure only the rest.
    memory_budget : int, optional
        Bytes a point may plan to use (default: :func:`default_memory_budget`).
    data_dir : path, optional
        MNIST folder, needed when ``grid.epochs_on == "mnist"``.
    progress : bool, optional
        Show a progress bar on stderr (default: when stderr is a terminal).

    Returns
    -------
    Path
        ``out_dir``.
    """
    out = Path(out_dir)
    results = out / "results.csv"
    if results.exists() and not resume:
        raise ValueError(f"{results} already exists; fix: pass --resume to continue it, "
                         "or choose another --out")
    if memory_budget is not None and memory_budget <= 0:
        raise ValueError(f"memory budget must be positive, got {memory_budget}")
    epoch_data = _epoch_data(grid, data_dir)
    out.mkdir(parents=True, exist_ok=True)
    kept = _rows_to_keep(results) if resume else []
    done = {case.key for case, _ in kept}
    env = _environment(out, backend, resume)
    guard = Guard(memory_budget or default_memory_budget(backend), grid.time_budget_s,
                  env["probe"]["gemm_gflops"] * 1e9, env["probe"]["copy_gbps"] * 1e9)
    for case, row in kept:  # the time guard learns from the points already measured here
        if row.get("status") == "ok" and row.get("device") == backend.device_kind:
            guard.record(case, float(row["time_median_s"]))
    todo = [c for c in grid.cases() if c.key not in done]
    run_id = uuid.uuid4().hex[:12]
    bar = _Progress(len(todo), sys.stderr, enabled=progress)
    with open(results, "a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        if fh.tell() == 0:
            writer.writeheader()
        for case in todo:
            bar.update(case.label())
            row = _measure_point(case, backend, guard, epoch_data if case.kind == "epoch" else None)
            row.update(run_id=run_id, timestamp=_now(), backend=backend.name, device=backend.device_kind)
            writer.writerow(row)
            fh.flush()
            os.fsync(fh.fileno())
    bar.close()
    return out


def _measure_point(case: Case, backend: Backend, guard: Guard, data) -> dict:
    cost = case.cost
    row = {"kind": case.kind, "method": case.method, "batch": case.batch, "features": case.features,
           "classes": case.classes, "dtype": case.dtype, "samples": case.samples,
           "predicted_bytes": int(cost.peak_bytes), "predicted_lecture_bytes": int(cost.lecture_bytes),
           "predicted_flops": int(cost.flops), "predicted_traffic_bytes": int(cost.traffic_bytes),
           "predicted_time_s": guard.predicted_time_s(case)}
    reason = guard.skip_reason(case, calls=CALLS_PER_POINT)
    if reason:
        return {**row, "status": "skipped", "reason": reason}
    try:
        fn, args = case.prepare(backend, data)
        peak = peak_memory(fn, *args, backend=backend)  # doubles as the warm-up call
        timing = time_call(fn, *args, backend=backend, warmup=0, min_repeats=MIN_REPEATS,
                           time_budget_s=TIMING_BUDGET_S)
        del fn, args
    except Exception as exc:  # one failing point (even out of memory) must not end the sweep
        return {**row, "status": "error", "reason": f"{type(exc).__name__}: {exc}".replace("\n", " ")}
    guard.record(case, timing.median)
    t = timing.median
    return {**row, "status": "ok", "reason": "", "time_median_s": t, "time_iqr_s": timing.iqr,
            "time_min_s": timing.min, "repeats": timing.repeats, "host_time_median_s": timing.host_median,
            "peak_bytes": peak, "samples_per_s": case.samples / t, "gflops": cost.flops / t / 1e9,
            "gbytes_per_s": cost.traffic_bytes / t / 1e9}


def _epoch_data(grid: Grid, data_dir):
    if grid.epochs_on != "mnist":
        return None
    from .data import load_mnist

    mnist = load_mnist(data_dir)
    return mnist.X_train, mnist.y_train


def _environment(out: Path, backend: Backend, resume: bool) -> dict:
    path = out / "environment.json"
    if resume and path.exists():
        env = json.loads(path.read_text(encoding="utf-8"))
        if env.get("backend", {}).get("label") not in (None, backend.label):
            raise ValueError(f"{out} holds results of {env['backend']['label']}, not {backend.label}; "
                             "fix: resume with the same backend, or choose another --out")
        if "probe" in env:
            return env
    env = {"created": _now(), "backend": backend.describe(), "machine": machine_description(),
           "probe": probe_machine(backend), "columns": list(COLUMNS)}
    atomic_write_text(path, json.dumps(env, indent=2, default=str) + "\n")
    return env


def read_results(path: str | os.PathLike) -> list[dict]:
    """Rows of a results.csv, ignoring a half-written last line."""
    text = Path(path).read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text)))


def _rows_to_keep(results: Path) -> list[tuple[Case, dict]]:
    """(case, row) of each intact row of ``results``, after truncating a half-written
    last line in place; a damaged row is left out, so its point is measured again."""
    if not results.exists():
        return []
    with open(results, "rb+") as fh:
        data = fh.read()
        if data and not data.endswith(b"\n"):
            fh.truncate(data.rfind(b"\n") + 1)
    kept = []
    for row in read_results(results):
        case = Case.from_row(row)
        ok_time = row.get("status") != "ok" or _is_number(row.get("time_median_s"))
        if case is not None and ok_time:
            kept.append((case, row))
    return kept


def _is_number(text) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class _Progress:
    """A one-line progress bar with ETA on a terminal; silent otherwise."""

    def __init__(self, total: int, stream, enabled: bool | None = None):
        self.total, self.stream, self.done = total, stream, -1
        self.active = bool(stream) and (enabled or (enabled is None and stream.isatty()))
        self.t0 = time.monotonic()

    def update(self, label: str) -> None:
        self.done += 1
        if not self.active:
            return
        elapsed = time.monotonic() - self.t0
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        eta_text = "--:--" if eta != eta else f"{int(eta) // 60:02d}:{int(eta) % 60:02d}"
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                          f"ETA {eta_text}  {label[:60]:<60}")
        self.stream.flush()

    def close(self) -> None:
        if self.active:
            self.stream.write(f"\r{' ' * 110}\r")
            self.stream.flush()


__all__ = ["COLUMNS", "CALLS_PER_POINT", "run_sweep", "read_results"]
