"""The sweep: measure every case of a grid, guard each point, append each result.

``DIR/results.csv`` (columns: :mod:`softmax_core.runs.resultformat`) gets each point's row,
fsynced, after its last round; ``DIR/environment.json`` records where it ran
(:mod:`softmax_core.measure.environment`), the machine probe and the fitted time model.  Rounds,
``--resume`` and the folder's lock: docs/measurement.md, "Rounds" and "The sweep".
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ..backends import Backend
from ..errors import InputError, is_whole
from ..measure.engine import Measurement, measure, probe_machine
from ..measure.environment import record
from ..measure.session import MeasurementSession, blas_threads, thread_limit
from ..measure.timemodel import TimeModel
from .cases import Case, Grid
from .envfile import (
    GRID_RECORD,
    check_same_machine,
    probe_rates,
    read_environment,
    write_environment,
)
from .folder import check_same_run, folder_lock, rows_to_keep
from .guard import (
    DEFAULT_ROUNDS,
    LONG_CALL_S,
    Guard,
    calls_per_point,
    check_memory_budget,
    default_memory_budget,
)
from .point import POINT_TIME_SHARE, measure_point, skipped_row  # noqa: F401 (re-exported)
from .progress import Progress
from .resultformat import (
    ResultWriter,
    SchemaError,
    check_appendable,
)

#: Most rounds a sweep takes: each round takes every point's minimum samples again.
MAX_ROUNDS = 20


@dataclass
class SweepSummary:
    """What a sweep did: counts by outcome, wall time, where its files are."""

    out: Path
    counts: dict = field(default_factory=lambda: {"ok": 0, "skipped": 0, "error": 0, "unstable": 0})
    wall_s: float = 0.0
    damaged_rows: list = field(default_factory=list)
    #: points measured by an earlier run and kept by --resume
    kept: int = 0

    def text(self) -> str:
        c = self.counts
        if not any(c[k] for k in ("ok", "skipped", "error")):
            return f"nothing left to measure: every point is in {self.out / 'results.csv'}"
        kept = f" ({self.kept} ok measured before, kept)" if self.kept else ""
        return (
            f"{c['ok']} ok ({c['unstable']} not stable), {c['skipped']} skipped, "
            f"{c['error']} error "
            f"in {self.wall_s:.0f} s{kept}; results: {self.out / 'results.csv'}"
        )


def check_out_folder(out_dir: str | Path, resume: bool) -> Path:
    """``out_dir`` as a Path, once it can take a new run (or, with ``resume``, holds one to go
    on with); else an :class:`InputError` that says why.  Reads, writes nothing: a command
    asks it before work of its own (``scale``'s parallelism probe)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; fix: give a folder")
    results = out / "results.csv"
    for path in (results, out / "environment.json"):
        if path.exists() and not resume:  # a run's, or a file of someone else's
            ran = results.exists() or (out / ".lock").exists()
            raise InputError(
                f"{path} already exists; fix: "
                + ("pass --resume to continue the run there" if ran else "move it away")
                + ", or choose another --out"
            )
    if resume and not any((out / name).exists() for name in ("results.csv", ".lock")):
        # no sweep ever started here (one killed before its first row leaves its lock file)
        raise InputError(
            f"nothing to resume in {out}: no sweep ran there; fix: pass the --out folder "
            "of the sweep to continue, or run without --resume"
        )
    if resume and results.exists():  # both read before anything is written or locked
        check_appendable(results)
        read_environment(out, "delete it to probe the machine again, or choose another --out")
    return out


def run_sweep(
    grid: Grid,
    backend: Backend,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    memory_budget: float | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
    rounds: int = DEFAULT_ROUNDS,
    log: TextIO | None = None,
    measure: Callable[..., Measurement] = measure,
    probe: Callable[[Backend], dict] = probe_machine,
    clock: Callable[[], float] = time.monotonic,
    clusters: dict[int, Backend] | None = None,
    settings: dict | None = None,
) -> Path:
    """Run ``grid`` on ``backend``, writing ``out_dir/results.csv`` and ``environment.json``;
    returns ``out_dir``, and the :class:`SweepSummary` is ``run_sweep.last_summary``.

    ``out_dir`` is created if needed; a ``results.csv`` in it is an error unless ``resume``
    (keep its valid rows, measure the rest).  ``memory_budget``: bytes a point may plan to use
    (default :func:`default_memory_budget`; refused above what the device can allocate now).
    ``data_dir``: the MNIST folder, for ``grid.epochs_on == "mnist"``.  ``progress``: a bar on
    stderr (default: when stderr is a terminal; plain lines every 15 s otherwise); False:
    none.  ``rounds``: how many times the grid is measured, interleaved.  ``log``: where
    damaged rows and progress lines go (default: stderr).

    ``measure``, ``probe`` and ``clock`` are what the sweep measures with, apart from
    what it does with the numbers: tests and library users pass fakes to test the
    orchestration (lock, resume, guards, rows, summary, reports) in milliseconds,
    without the seconds that real sampling and the machine probe take.

    measure : callable
        Takes each point's samples; called as
        :func:`~softmax_core.measure.engine.measure` (the default) is, and returns a
        :class:`~softmax_core.measure.engine.Measurement`.
    probe : callable
        ``probe(backend)`` gives the machine's ceilings for ``environment.json`` and the
        time model: the dict of :func:`~softmax_core.measure.engine.probe_machine` (the
        default), with ``gemm_gflops``, ``copy_gbps``, ``probe_gemm_size``,
        ``probe_copy_bytes`` and ``probe_version``.
    clock : callable
        Seconds of a monotonic clock (default: :func:`time.monotonic`), for the sweep's
        wall time and its progress lines.
    clusters : dict, optional
        The Dask backend of each worker count of ``grid.workers`` above 0, opened by the
        caller (``softmax-bench scale``); its points run there, the others on ``backend``.
        On a Dask ``backend`` every point runs on its cluster.
    settings : dict, optional
        More of the run's settings for ``environment.json`` (``scale``'s), before any point.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= MAX_ROUNDS:
        raise InputError(
            f"rounds must be a whole number from 1 to {MAX_ROUNDS}, got {rounds!r}; fix: "
            "more rounds only repeat the minimum samples of every point, use at most "
            f"{MAX_ROUNDS}"
        )
    out = check_out_folder(out_dir, resume)
    results = out / "results.csv"
    budget = (
        check_memory_budget(memory_budget, backend)
        if memory_budget is not None
        else default_memory_budget(backend)
    )
    epoch_data = _epoch_data(grid, data_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = log or sys.stderr
    tools = _Instruments(measure, probe, clock)
    where = _Where(backend, dict(clusters or {}), budget)
    missing = sorted(set(w for w in grid.workers if w) - set(where.clusters))
    if missing:
        raise InputError(f"the grid's workers {missing} have no cluster: pass clusters=")
    with folder_lock(out), MeasurementSession(backend):
        if results.exists() and not resume:  # made by a sweep that held the lock until now
            raise InputError(f"{results} already exists; fix: pass --resume to continue it")
        summary = _run_locked(
            grid, where, out, resume, epoch_data, progress, rounds, log, tools, settings or {}
        )
    run_sweep.last_summary = summary
    return out


@dataclass
class _Where:
    """Where each point runs, and the memory it may plan to use there."""

    backend: Backend
    clusters: dict
    budget: int

    def __post_init__(self):
        self.budgets = {w: default_memory_budget(b) for w, b in self.clusters.items()}
        self.own_workers = self.backend.workers if self.backend.name == "dask" else 0
        if self.own_workers:  # a Dask sweep: every point on its cluster
            self.clusters[self.own_workers] = self.backend
            self.budgets[self.own_workers] = self.budget

    def placed(self, case: Case) -> Case:
        """``case`` with the cluster and chunks it runs with where a Dask sweep leaves them open
        (the cluster's size asked once: each ask is a round trip to its scheduler)."""
        if self.own_workers and not case.workers:
            chunks = self.backend.chunk_rows
            return dataclasses.replace(case, workers=self.own_workers, chunk_rows=chunks)
        return case

    def of(self, case: Case) -> Backend:
        return self.clusters[case.workers] if case.workers else self.backend

    def label_of(self, case: Case) -> str | None:
        """The label of the backend ``case`` runs on here; None where there is none for it."""
        if case.workers and case.workers not in self.clusters:
            return None
        return self.of(case).label

    def budget_of(self, case: Case) -> int:
        return self.budgets[case.workers] if case.workers else self.budget

    def describe(self) -> dict:
        return {str(w): b.describe() for w, b in self.clusters.items()}


@dataclass(frozen=True)
class _Instruments:
    """What a sweep measures with: the measuring loop, the machine probe, the clock."""

    measure: Callable[..., Measurement]
    probe: Callable[[Backend], dict]
    clock: Callable[[], float]


def _run_locked(
    grid, where, out, resume, epoch_data, progress, rounds, log, tools, settings
) -> SweepSummary:
    backend = where.backend
    t_start = tools.clock()
    results = out / "results.csv"
    summary = SweepSummary(out)
    if resume and results.exists():
        # before rows_to_keep repairs anything
        check_same_run(results, rounds, grid.dtype, grid.threads, where.label_of)
    kept, summary.damaged_rows = rows_to_keep(results, log) if resume else ([], [])
    if grid.threads == (None,) and kept:
        # a resumed run keeps the thread counts it was measured with, unless told others
        counts = tuple(sorted({c.threads for c, _ in kept if c.threads is not None}))
        grid = dataclasses.replace(grid, threads=counts or (None,))
    for line, reason in summary.damaged_rows:
        print(
            f"{results}:{line}: damaged row dropped ({reason}); its point is measured again",
            file=log,
        )
    # the probe's rates feed the time model: taken at the fewest threads the grid asks for,
    # they never make a point look faster than it runs
    with thread_limit(min((t for t in grid.threads if t), default=None)):
        env = _environment(out, backend, resume, tools.probe, grid, rounds)
    if where.clusters or settings:  # recorded before any point runs: a killed run's set too
        env.update(settings, **({"dask_clusters": where.describe()} if where.clusters else {}))
        write_environment(out, env)
    model = TimeModel(
        env["probe"]["gemm_gflops"] * 1e9, env["probe"]["copy_gbps"] * 1e9, backend.device_kind
    )
    guard = Guard(where.budget, grid.time_budget_s, model)
    done, retry = set(), {}
    for case, row in kept:
        if row["status"] == "ok":
            done.add(case.key)
            model.record(case, float(row["time_median_s"]))  # the model learns from what is here
        else:
            retry[case.key] = row["status"]
    todo = [c for c in _with_threads(map(where.placed, grid.cases())) if c.key not in done]
    summary.kept = len(done)
    pooled: dict[tuple, Measurement] = {}
    spent: dict[tuple, float] = {}  # each point's seconds so far, against its time budget
    # each point's predicted seconds, made before its first round
    predicted: dict[tuple, float] = {}
    run_id = uuid.uuid4().hex[:12]

    def calls(seconds: float) -> int:
        return calls_per_point(rounds, long=seconds >= LONG_CALL_S)

    weights = [t * calls(t) / rounds for t in map(model.predict, todo)]
    bar = Progress(weights * rounds, log, progress, tools.clock)
    with ResultWriter(results) as writer:
        for r in range(rounds):
            last = r == rounds - 1
            for case in todo:
                label = case.label() + (f" (round {r + 1}/{rounds})" if rounds > 1 else "")
                if r == 0:
                    predicted[case.key] = model.predict(case)
                    reason = guard.skip_reason(
                        case, calls(predicted[case.key]), where.budget_of(case)
                    )
                    bar.advance(label + (": skipped" if reason else ""))
                    if reason:
                        pooled[case.key] = None
                        if retry.get(case.key) != "skipped":  # skipped before and still: no new row
                            skipped = skipped_row(case, predicted[case.key], reason)
                            _write(writer, skipped, run_id, where.of(case))
                        summary.counts["skipped"] += 1
                        continue
                elif pooled.get(case.key) is None:
                    bar.advance(label + ": skipped")
                    continue
                else:
                    bar.advance(label)
                row = measure_point(
                    case,
                    where.of(case),
                    guard,
                    epoch_data if case.kind == "epoch" else None,
                    pooled,
                    rounds,
                    last,
                    predicted[case.key],
                    tools.measure,
                    spent,
                )
                if row is not None:
                    _write(writer, row, run_id, where.of(case))
                    status = row["status"]
                    summary.counts[status] += 1
                    summary.counts["unstable"] += status == "ok" and not row["stable"]
    bar.close()
    env["time_model"] = model.to_dict()
    write_environment(out, env)
    summary.wall_s = tools.clock() - t_start
    return summary


def _with_threads(cases) -> list[Case]:
    """The grid's points with the pools' thread count where the grid leaves it open, so that
    every row records the threads it ran with."""
    now = blas_threads()
    return [c if c.threads is not None else dataclasses.replace(c, threads=now) for c in cases]


def _write(writer: ResultWriter, row: dict, run_id: str, backend: Backend) -> None:
    row.update(run_id=run_id, timestamp=_now(), backend=backend.name, device=backend.device_kind)
    writer.write(row)


def _epoch_data(grid: Grid, data_dir):
    if grid.epochs_on != "mnist":
        return None
    from ..data import load_mnist

    mnist = load_mnist(data_dir)
    return mnist.X_train, mnist.y_train


def _environment(
    out: Path, backend: Backend, resume: bool, probe: Callable, grid: Grid, rounds: int
) -> dict:
    if resume:
        env = read_environment(out, "delete it to probe the machine again, or choose another --out")
        label = (
            env.get("backend", {}).get("label") if isinstance(env.get("backend"), dict) else None
        )
        if label not in (None, backend.label):
            raise InputError(
                f"{out} holds results of {label}, not {backend.label}; "
                "fix: resume with the same backend, or choose another --out"
            )
        check_same_machine(out, env, backend)
        began = env.get("grid")
        counts = began.get("threads") if isinstance(began, dict) else None
        whole = isinstance(counts, list) and all(map(is_whole, counts))
        if whole and set(grid.threads) - set(counts):
            env = {**env, "grid": {**began, "threads": list(grid.threads)}}  # the axis grown
            write_environment(out, env)
        if probe_rates(env) is not None:
            return env
        if env:  # its probe missing or no rates: probed again, the rest of the record kept
            env = {**env, "probe": probe(backend)}
            write_environment(out, env)
            return env
    env = {"created": _now(), **record(backend), "probe": probe(backend)}
    env["grid"] = {**{name: getattr(grid, name) for name in GRID_RECORD}, "rounds": rounds}
    write_environment(out, env)
    return env


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


run_sweep.last_summary = None

__all__ = [
    "run_sweep",
    "check_out_folder",
    "SweepSummary",
    "SchemaError",
]
