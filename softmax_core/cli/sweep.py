"""The ``sweep`` command: the grid measured into a run folder (a new one per run, with
``out/sweep/latest`` pointing at it), or a run begun before continued with ``--resume`` at
its own grid, threads and rounds."""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import sys
from pathlib import Path

from ..backends import get_backend
from ..errors import InputError, is_whole
from .arguments import COMPLETE, DEFAULT_SWEEP_ROOT, begun, nothing_measured, stopped_in

#: The link to the latest sweep's folder.
LATEST = DEFAULT_SWEEP_ROOT / "latest"


def run(args) -> int:
    try:
        return _sweep(args)
    except KeyboardInterrupt as stopped:  # what the one line says after 'interrupted'
        if str(stopped):
            raise
        raise type(stopped)(nothing_measured(args.resume)) from None


def _sweep(args) -> int:
    from ..runs.cases import Grid
    from ..runs.sweep import run_sweep

    backend = get_backend(args.device, args.backend)
    if args.thread_axis and backend.name == "dask":
        raise InputError(
            "--threads sets this process's BLAS threads, and Dask computes in its workers; "
            "fix: leave --threads out (SOFTMAX_DASK_WORKERS sets the workers)"
        )
    # a resumed run's folder first (it holds the grid), a new run's once its grid is valid
    out = _sweep_folder(args.out, True, backend.label) if args.resume else None
    if out is not None and not begun(out):
        raise InputError(
            f"nothing to resume in {out}: it holds no results.csv or environment.json (no "
            "sweep began there); fix: run without --resume, or give the --out of the sweep"
        )
    given = {  # Grid takes lists as tuples
        name: value
        for name, value in (
            ("methods", args.methods),
            ("batches", args.batch),
            ("classes", args.classes),
            ("features", args.features),
            ("dtype", args.dtype),
            ("epochs_on", args.epochs_on),
            ("time_budget_s", args.time_budget),
        )
        if value is not None
    }
    recorded = _begun_with(out) if out else {}
    rounds = resumed_rounds(out, recorded, args.rounds)
    threads = _resumed_threads(out, recorded, args.thread_axis)
    sizes = {"methods", "batches", "classes", "features"}
    if out is not None and not recorded and not sizes & set(given):  # not the default grid
        raise InputError(
            f"{out} keeps no record of the grid it began with (its environment.json is missing "
            "or holds none); fix: give the grid's sizes with --resume (--methods, --batch, "
            "--classes, --features), or choose another --out"
        )
    try:  # the grid the run began with, less what is given now
        grid = Grid(**{**recorded, **given}, threads=threads)
    except (ValueError, TypeError) as exc:
        if not recorded:
            raise
        raise InputError(
            f"{out / 'environment.json'}: its grid: {str(exc).split('; fix:')[0]}; fix: give that "
            "option with --resume, or choose another --out"
        ) from None
    new = args.out is None and not args.resume
    previous = Path(os.readlink(LATEST)) if new and LATEST.is_symlink() else None
    try:
        out = out or _sweep_folder(args.out, False, backend.label)
        if new:
            _point_latest(out)  # from its start: a killed run is the one --resume continues
        if not args.no_report:  # a report.md or plot of someone else's: refused before, not after
            from ..report import check_claim

            check_claim(out)
        print(f"sweep: measuring into {out}", flush=True)
        run_sweep(
            grid,
            backend,
            out,
            resume=args.resume,
            memory_budget=args.memory_budget,
            data_dir=args.data_dir,
            rounds=rounds,
            progress=args.progress,
        )
    except InputError:
        if out is not None:
            _drop_if_empty(out, new, previous)
        raise
    except KeyboardInterrupt as stopped:
        if out is None:
            raise  # before its folder: run says that nothing was measured
        if not begun(out):
            _drop_if_empty(out, new, previous)
        raise type(stopped)(stopped_in(out, args.resume)) from None
    try:
        print(f"sweep: {run_sweep.last_summary.text()}")
        if not args.no_report:
            from ..report import make_report

            print(f"report: {make_report([out], out)}")
    except KeyboardInterrupt as stopped:
        raise type(stopped)(COMPLETE.format(out)) from None
    return 0


def _drop_if_empty(out: Path, new: bool, previous: Path | None) -> None:
    """Remove a new run's folder that holds nothing yet (a sweep refused or stopped before it
    began), and point out/sweep/latest back at the run before it: no empty run is left behind."""
    if new and not any(p.name != ".lock" for p in out.iterdir()):
        shutil.rmtree(out)
        if previous is not None:
            _point_latest(DEFAULT_SWEEP_ROOT / previous)
        else:
            LATEST.unlink(missing_ok=True)


def _begun_with(out: Path) -> dict:
    """The settings of the grid a run began with (environment.json's ``grid``) and its
    ``rounds``, so that ``--resume`` alone finishes that run; {} where the set kept none."""
    from ..runs.envfile import GRID_RECORD, read_environment

    record = read_environment(out, "delete it to probe the machine again, or choose another --out")
    record = record.get("grid") or {}
    return {name: record[name] for name in (*GRID_RECORD, "rounds") if name in record}


def resumed_rounds(out: Path, recorded: dict, given: int | None) -> int:
    """``--rounds`` of a run: as given, else as the run began, else the default; InputError for
    rounds other than those a resumed run began with (its rows are pooled from them)."""
    from ..runs.guard import DEFAULT_ROUNDS
    from ..runs.sweep import MAX_ROUNDS

    began = recorded.pop("rounds", None)
    if not is_whole(began) or began > MAX_ROUNDS:  # none, or damaged: the rows decide
        return DEFAULT_ROUNDS if given is None else given  # (check_same_run)
    if given not in (None, began):
        raise InputError(
            f"{out} is a run begun with --rounds {began}, not {given}; fix: resume without "
            "--rounds, or choose another --out"
        )
    return began


def _resumed_threads(out: Path, recorded: dict, given: list | None) -> tuple:
    """``--threads`` of a run: as given, else as the run began (None: the BLAS's own count);
    InputError where a resumed run's counts are not all given (adding one adds an axis value,
    as adding a batch size does)."""
    began = recorded.pop("threads", None)
    if not isinstance(began, list) or not began or not all(t is None or is_whole(t) for t in began):
        return tuple(given or (None,))  # none, or damaged: the rows decide (check_same_run)
    cores = os.cpu_count() or 1
    if max((t for t in began if t), default=1) > cores:
        raise InputError(
            f"{out} is a run begun with --threads {','.join(map(str, began))}, more than this "
            f"machine's {cores} cores; fix: resume it on a machine with as many cores, or choose "
            "another --out"
        )
    if given and not set(began) <= set(given):
        what = "no --threads" if None in began else f"--threads {','.join(map(str, began))}"
        raise InputError(
            f"{out} is a run begun with {what}, not --threads {','.join(map(str, given))}; "
            "fix: resume without --threads, or choose another --out"
        )
    return tuple(given or began)


def _sweep_folder(out: Path | None, resume: bool, label: str) -> Path:
    """--out as given; else, to resume, the latest run; else a new folder per run."""
    if out is not None:
        return out
    if LATEST.exists() and not LATEST.is_symlink():
        raise InputError(
            f"{LATEST} is not the link softmax-bench keeps to the latest run; fix: move it "
            "away, or pass --out DIR"
        )
    if resume:
        if not LATEST.exists():
            raise InputError(
                f"nothing to resume: {LATEST} does not exist; fix: pass --out DIR of the "
                "sweep to continue, or run without --resume"
            )
        return LATEST.resolve()
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    DEFAULT_SWEEP_ROOT.mkdir(parents=True, exist_ok=True)
    for suffix in range(1, 1000):  # made here, atomically: two runs in one second get two
        folder = DEFAULT_SWEEP_ROOT / (f"{stamp}-{label}" + (f"-{suffix}" if suffix > 1 else ""))
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise InputError(f"a thousand sweeps began in {DEFAULT_SWEEP_ROOT} this second; fix: --out DIR")


def _point_latest(folder: Path) -> None:
    """Make ``out/sweep/latest`` point at ``folder``, atomically; say so when it cannot, since a
    ``--resume`` without ``--out`` would then continue another run."""
    tmp = DEFAULT_SWEEP_ROOT / f".latest.{os.getpid()}"
    try:
        os.symlink(folder.name, tmp)
        os.replace(tmp, LATEST)
    except OSError as exc:
        if tmp.is_symlink():
            tmp.unlink()
        print(
            f"softmax-bench sweep: warning: {LATEST} still points at another run ({exc}); "
            f"resume this one with --resume --out {folder}",
            file=sys.stderr,
        )


__all__ = ["run", "LATEST"]
