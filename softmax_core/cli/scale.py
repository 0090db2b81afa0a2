"""``softmax-bench scale``: Dask as it scales, NumPy as the baseline, as one grid of the sweep.

One LocalCluster of w single-threaded worker processes per worker count, all held at once (or
the cluster at ``--scheduler``), beside NumPy in this process at one BLAS thread and at all of
them; :func:`softmax_core.runs.sweep.run_sweep` measures the grid (:func:`grid`) into
``DIR/results.csv`` and the report (:mod:`softmax_core.report.scaling`) draws the speedups.
``--out-of-core ROWS``: :mod:`softmax_core.runs.out_of_core`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

from ..dask.chunked import DEFAULT_CHUNK_ROWS
from ..dask.cluster import import_dask, scheduler_address
from ..errors import InputError, quoted, said
from .arguments import (
    COMPLETE,
    PROGRESS_HELP,
    class_count,
    int_list,
    name_list,
    positive_int,
    rounds,
    seconds,
    stopped_in,
)

KINDS, DATA = ("gradient", "epoch"), ("memory", "stream")
#: Seconds a point may take: a gradient over a million rows, streamed, on one worker fits.
TIME_BUDGET_S = 60.0
#: Rows of the grid's points, and the SGD batch of its epochs (4 default chunks: every step
#: spans the workers).
ROWS, BATCH = (100_000, 1_000_000), 80_000
RENAMED = {
    "--max-time": "use --time-budget (seconds a point may take)",
    "--seed": "leave it out (the synthetic rows are seed 0's, as the sweep's)",
}


def _dtype(text: str) -> str:
    if text not in ("float32", "float64"):
        raise argparse.ArgumentTypeError(f"expected float32 or float64, got {quoted(text)}")
    return text


def _flag(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {quoted(text)}")
    return text.lower() == "true"


#: The options that make scale's grid, each with its default and its type: environment.json
#: keeps them (``scale``), so that ``--resume`` alone goes on with the grid the run began with.
GRID_OPTIONS = {
    "workers": (None, int_list),  # None: 1..cores
    "rows": (list(ROWS), int_list),
    "chunk_rows": ([DEFAULT_CHUNK_ROWS], int_list),
    "features": (784, positive_int),
    "classes": (10, class_count),
    "dtype": ("float32", _dtype),
    "data": (list(DATA), name_list(DATA)),
    "kinds": (list(KINDS), name_list(KINDS)),
    "batch": (BATCH, positive_int),
    "time_budget": (TIME_BUDGET_S, seconds),
    "numpy": (True, _flag),
}


GRID_HELP = {
    "--workers": "worker counts",
    "--rows": "m",
    "--chunk-rows": "rows per chunk",
    "--features": "n",
    "--classes": "k",
    "--dtype": "float32 or float64",
    "--data": "X in the workers' memory, or streamed chunk by chunk",
    "--kinds": "gradient calls, SGD epochs",
    "--batch": "SGD batch of the epochs",
    "--time-budget": "seconds one point may take",
}


def _shown(name: str) -> str:
    default = GRID_OPTIONS[name][0]
    return ",".join(map(str, default)) if isinstance(default, list) else str(default)


def grid_options(args, out: Path, began: dict | None, cluster: str) -> dict:
    """The grid's options of this run, set on ``args``: each as given, else as the resumed run
    recorded it (``began``: its environment.json; None for a new run), else its default; with
    ``cluster`` (``local`` or ``scheduler``), the record to write.  InputError where a resumed
    run keeps no record and none is given, where its record lacks an option not given or holds
    a value its type refuses, or where it ran on another kind of cluster."""
    given = [n for n in GRID_OPTIONS if getattr(args, n) is not None]
    recorded = None if began is None else began.get("scale")
    if began is not None and not (isinstance(recorded, dict) and recorded) and not given:
        raise InputError(
            f"{out / 'environment.json'} keeps no record of the grid its scale run began with "
            "(its scale); fix: give the grid's options with --resume (--rows, --chunk-rows, "
            "--features, --classes, --kinds...), or choose another --out"
        )
    record = recorded if isinstance(recorded, dict) else {}
    ran_on = record.get("cluster")
    if ran_on is not None and ran_on != cluster:
        how = (
            "with --scheduler ADDRESS"
            if ran_on == "scheduler"
            else "without --scheduler, and $SOFTMAX_DASK_SCHEDULER unset"
        )
        raise InputError(
            f"{out} is a run measured on {CLUSTERS.get(said(ran_on), said(ran_on))}, not on "
            f"{CLUSTERS[cluster]}; fix: resume it {how}, or choose another --out"
        )
    for name, (default, parse) in GRID_OPTIONS.items():
        if name in given:
            continue
        if not record or name == "workers" and record.get(name) is None:
            setattr(args, name, default)
            continue
        setattr(args, name, _recorded(out, name, record.get(name), parse))
    return {**{name: getattr(args, name) for name in GRID_OPTIONS}, "cluster": cluster}


#: Where a scale run's Dask points run: its own LocalClusters, or the cluster at --scheduler.
CLUSTERS = {"local": "LocalClusters of its own", "scheduler": "the Dask cluster at --scheduler"}


def _recorded(out: Path, name: str, value, parse):
    """A recorded option, read as its type reads the command line's text."""
    option = "--" + name.replace("_", "-")
    try:
        if value is None:
            raise argparse.ArgumentTypeError("missing")
        return parse(",".join(map(str, value)) if isinstance(value, list) else str(value))
    except argparse.ArgumentTypeError as exc:
        fix = "--numpy or --no-numpy" if name == "numpy" else option
        raise InputError(
            f"{out / 'environment.json'}: its scale {option}: {said(exc)}; fix: give "
            f"{fix} with --resume, or choose another --out"
        ) from None


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``scale`` to the CLI's subparsers."""
    from ..runs.guard import DEFAULT_ROUNDS

    p = sub.add_parser(
        "scale",
        help="measure the Dask backend against workers, m and chunk size (NumPy as the baseline)",
        description="Full-batch gradients and large-batch SGD epochs on Dask, against the number "
        "of workers, m and the chunk size, with NumPy in this process as the baseline: a grid of "
        "the sweep, written to DIR/results.csv with environment.json, report.md and plots. "
        "--out-of-core ROWS runs the larger-than-memory gradient once instead.",
    )
    # the grid's options default to None: as given, else a resumed run's, else GRID_OPTIONS'
    for option, what in GRID_HELP.items():
        name = option[2:].replace("-", "_")
        default = "1..cores" if name == "workers" else _shown(name)
        p.add_argument(option, type=GRID_OPTIONS[name][1], help=f"{what} (default: {default})")
    p.add_argument(
        "--rounds",
        type=rounds,
        help=f"measure the grid this many times, interleaved (default: {DEFAULT_ROUNDS}; with "
        "--resume, the run's own)",
    )
    p.add_argument(
        "--scheduler",
        help="use the Dask cluster at this address (default: $SOFTMAX_DASK_SCHEDULER, "
        "else LocalClusters of each --workers count)",
    )
    p.add_argument(
        "--numpy",
        action=argparse.BooleanOptionalAction,
        help="measure the NumPy baseline, or skip it (--no-numpy) (default: measure it)",
    )
    p.add_argument(
        "--out", type=Path, default=Path("out/scale"), help="results folder (default: %(default)s)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the results in --out, with the grid's options it began with unless given",
    )
    p.add_argument("--report-only", action="store_true", help="only redraw the report of --out")
    p.add_argument(
        "--out-of-core",
        type=positive_int,
        metavar="ROWS",
        help="run the streamed full-batch gradient over ROWS rows once, memory watched, "
        "against the chunked NumPy reference (e.g. 10000000: 31 GB at n=784)",
    )
    p.add_argument(
        "--samples",
        type=positive_int,
        default=3,
        help="timed calls of --out-of-core (default: %(default)s)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=PROGRESS_HELP,
    )
    for old in RENAMED:
        p.add_argument(old, action=_Gone, help=argparse.SUPPRESS)
    return p


class _Gone(argparse.Action):
    """An option ``scale`` no longer has: one line naming what to use, exit status 2."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is gone; fix: {RENAMED[option_string]}")


def _workers(args, scheduler: str | None) -> tuple[int, ...]:
    """The worker counts of ``--workers`` (default 1..cores): InputError past the cores of
    this machine, where each is a LocalCluster here."""
    cores = os.cpu_count() or 1
    workers = tuple(dict.fromkeys(args.workers or range(1, cores + 1)))  # each count once
    if not scheduler and max(workers) > cores:
        raise InputError(
            f"--workers {max(workers)} is more than this machine's {cores} cores (each worker "
            f"is a process of one thread); fix: give at most {cores}, or --scheduler ADDRESS"
        )
    return workers


def grid(args, workers: tuple[int, ...], cores: int):
    """The sweep's grid of ``scale``'s arguments."""
    from ..runs.cases import Grid

    gradient_data = tuple(
        d for d, name in (("", "memory"), ("stream", "stream")) if name in args.data
    )
    return Grid(
        methods=("structured",) if "gradient" in args.kinds else (),
        batches=tuple(args.rows),
        classes=(args.classes,),
        features=(args.features,),
        dtype=args.dtype,
        # SGD on streamed rows would remake a chunk per step: epochs hold X in memory
        epochs_on="synthetic" if "epoch" in args.kinds and "memory" in args.data else "none",
        epoch_rows=tuple(args.rows),
        epoch_batches=(args.batch,),
        epoch_features=args.features,
        epoch_classes=args.classes,
        threads=tuple(sorted({1, cores})),
        time_budget_s=args.time_budget,
        workers=((0,) if args.numpy else ()) + workers,
        chunk_rows=tuple(args.chunk_rows),
        gradient_data=gradient_data or ("",),
    )


def run(args) -> int:
    """The ``scale`` command: 0 on success (errors are raised for the CLI to print in one line)."""
    from ..report import make_report

    if args.report_only:
        print(f"report: {make_report([args.out], args.out)}")
        return 0
    device = (os.environ.get("SOFTMAX_DEVICE") or "cpu").strip().lower()
    if device != "cpu":
        raise InputError(
            f"scale measures Dask and NumPy on the CPU, and SOFTMAX_DEVICE is {device!r}; fix: "
            "unset SOFTMAX_DEVICE, or set it to cpu"
        )
    scheduler = scheduler_address(args.scheduler)
    if args.out_of_core is not None:
        from ..runs.out_of_core import run_out_of_core

        grid_options(args, args.out, None, "scheduler" if scheduler else "local")
        _workers(args, scheduler)  # refused past the cores
        if len(args.chunk_rows) > 1:
            raise InputError("--out-of-core measures one chunk size; fix: give one --chunk-rows")
        if args.resume:
            raise InputError("--out-of-core is one run: nothing to resume; fix: leave --resume out")
        run_out_of_core(
            args.out_of_core,
            args.features,
            args.classes,
            args.chunk_rows[0],
            args.out,
            workers=args.workers[-1] if args.workers else None,
            scheduler=scheduler,
            dtype=args.dtype,
            samples=args.samples,
        )
        return 0
    from ..backends import get_backend
    from ..backends.dask import session
    from ..dask.metrics import parallelism
    from ..report import check_claim
    from ..report.scaling import PLOTS
    from ..runs.envfile import check_same_machine, read_environment, write_environment
    from ..runs.sweep import check_out_folder, run_sweep
    from .sweep import resumed_rounds

    check_out_folder(args.out, args.resume)  # before the probe's seconds
    began = read_environment(args.out, "choose another --out") if args.resume else {}
    if began and "dask_clusters" not in began:  # scale records its clusters before any point
        raise InputError(
            f"{args.out} holds a sweep, not a scale run; fix: resume it with `softmax-bench "
            "sweep --resume`, or give scale another --out"
        )
    cluster = "scheduler" if scheduler else "local"
    options = grid_options(args, args.out, began if args.resume else None, cluster)
    workers, cores = _workers(args, scheduler), os.cpu_count() or 1
    if "epoch" in args.kinds and args.data == ["stream"]:
        raise InputError(
            "--kinds epoch has no points with --data stream only (an epoch over streamed rows "
            "would make each chunk again at every step); fix: add --data memory"
        )
    try:  # the grid's sizes, checked before the probe's seconds too
        grid(args, workers, cores)
    except InputError as exc:
        raise InputError(f"{exc} (--rows are the grid's batches)") from None
    check_claim(args.out, PLOTS)
    recorded = began.get("grid") or {}
    rounds = resumed_rounds(args.out, {"rounds": recorded.get("rounds")}, args.rounds)
    import_dask()  # a missing Dask is said before the probe's seconds
    baseline = get_backend("cpu", "numpy")
    check_same_machine(args.out, began, baseline)  # and another machine's or commit's run
    try:
        probe = parallelism()  # the ceiling of any parallel efficiency on this machine, now
        print(
            f"machine: {probe['processes']} busy processes run {probe['speedup']:.2f}x as fast "
            "as one"
        )
        with contextlib.ExitStack() as stack:
            if scheduler:
                existing = stack.enter_context(session(scheduler))
                clusters = {existing.workers: existing}
            else:
                clusters = {w: stack.enter_context(session(None, w)) for w in workers}
            run_sweep(
                grid(args, tuple(clusters), cores),
                baseline,
                args.out,
                resume=args.resume,
                rounds=rounds,
                progress=args.progress,
                clusters=clusters,
                settings={"scale": options},
            )
    except KeyboardInterrupt as stopped:  # what the one line says after 'interrupted'
        raise type(stopped)(stopped_in(args.out, args.resume)) from None
    env = read_environment(args.out, "re-run scale into another --out")
    write_environment(args.out, {**env, "parallelism": probe})
    print(f"scale: {run_sweep.last_summary.text()}")
    try:
        print(f"report: {make_report([args.out], args.out)}")
    except KeyboardInterrupt as stopped:
        raise type(stopped)(COMPLETE.format(args.out)) from None
    return 0


__all__ = ["add_parser", "run", "grid"]
