"""The command line's commands: each turns parsed arguments into calls of the package."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

from ..backends import get_backend
from ..data import fetch_mnist, load_mnist
from ..errors import InputError
from ..fileio import atomic_write_text
from ..model.sgd import train
from ..model.softmax import get_gradient
from ..units import NA
from .arguments import (
    COMPLETE,
    DEFAULT_SWEEP_ROOT,
    EXIT_USAGE,
    begun,
    nothing_measured,
    stopped_in,
)
from .gate import run as _cmd_gate
from .parser import RENAMED
from .scale import run as _cmd_scale

EPOCH_COLUMNS = ("epoch", "train_loss", "train_err", "test_loss", "test_err", "seconds")
#: The link to the latest sweep's folder.
LATEST = DEFAULT_SWEEP_ROOT / "latest"


def _output_file(option: str, path: Path | None, example: str, ours=None) -> None:
    """InputError unless the output file ``path`` may be written: not a folder, in a folder,
    and absent or written by an earlier run of the command (``ours(its first 4 KiB)``): an
    output replaces only its own."""
    if path is None:
        return
    if path.is_dir():
        raise InputError(
            f"{option} {path} is a folder; fix: give a file name, e.g. {path / example}"
        )
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise InputError(f"{option} {path}: {above} is a file; fix: give a path in a folder")
    if ours is not None and (path.exists() or path.is_symlink()):
        head = ""
        if path.is_file():
            with open(path, "rb") as fh:
                head = fh.read(4096).decode("utf-8", errors="replace")
        if not ours(head):
            raise InputError(
                f"{option} {path} exists and was not written by this command; fix: move it "
                f"away, or choose another {option}"
            )


def _cmd_train(args) -> int:
    import functools

    from ..measure.engine import Measurement, time_once
    from ..measure.session import MeasurementSession

    header = ",".join(EPOCH_COLUMNS)
    _output_file("--metrics-out", args.metrics_out, "epochs.csv", lambda h: h.startswith(header))
    start = time.monotonic()
    backend = get_backend(args.device, args.backend)
    data = load_mnist(args.data_dir)
    arrays = [
        backend.asarray(a, args.dtype if a.dtype.kind == "f" else None, copy=True)
        for a in (data.X_train, data.y_train, data.X_test, data.y_test)
    ]
    print(
        f"# softmax regression on MNIST: {backend.label}, {args.dtype}, grad={args.grad}, "
        f"lr={args.lr}, batch={args.batch}, epochs={args.epochs}"
    )
    print(
        f"{'epoch':>5} {'train_loss':>10} {'train_err':>9} {'test_loss':>9} {'test_err':>8} "
        f"{'seconds':>8}"
    )
    rows = []

    def on_epoch(row: dict) -> None:
        rows.append(row)
        cold = "  (cold: first call)" if row["epoch"] == 1 else ""
        print(
            f"{row['epoch']:>5} {row['train_loss']:>10.5f} {row['train_err']:>9.5f} "
            f"{row['test_loss']:>9.5f} {row['test_err']:>8.5f} {row['seconds']:>8.3f}{cold}",
            flush=True,
        )
        if args.metrics_out:
            atomic_write_text(args.metrics_out, _csv_text(EPOCH_COLUMNS, rows))

    with MeasurementSession(backend):
        train(
            *arrays,
            lr=args.lr,
            batch=args.batch,
            epochs=args.epochs,
            grad=get_gradient(args.grad),
            seed=args.seed,
            timer=functools.partial(time_once, backend=backend),
            on_epoch=on_epoch,
            run_epoch=getattr(backend, "sgd_epoch", None),
        )
    if len(rows) >= 3:  # the first epoch is cold (compilation, first touch): kept apart
        warm = Measurement.from_samples(
            [r["seconds"] for r in rows[1:]], first_s=rows[0]["seconds"]
        )
        print(
            f"# epoch time: {warm} over epochs 2-{len(rows)}; "
            f"epoch 1 (cold) {rows[0]['seconds']:.3f} s"
        )
    wall, epochs = time.monotonic() - start, sum(r["seconds"] for r in rows)
    print(
        f"# the command took {wall:.1f} s: {epochs:.1f} s of epochs, {wall - epochs:.1f} s of "
        "loading, moving the data and evaluating"
    )
    return 0


def _csv_text(columns, rows) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _cmd_info(args) -> int:
    backend = get_backend(args.device, args.backend)
    from ..measure.environment import blas_summary, record

    info = record(backend)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    flat = {
        **info["backend"],
        **info["machine"],
        "blas": blas_summary(),
        **info["versions"],
        "git_commit": info["git_commit"],
    }
    width = max(map(len, flat))
    for key, value in flat.items():
        print(f"{key:<{width}}  {_plain(value)}")
    return 0


def _plain(value) -> str:
    """A value of the environment record as text to read, not Python's repr."""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_plain(v)}" for k, v in value.items()) or NA
    if isinstance(value, (list, tuple)):
        return ", ".join(map(_plain, value)) or NA
    return NA if value is None else str(value)


def _cmd_data(args) -> int:
    path = fetch_mnist(args.dir, args.mirror, timeout=args.timeout)
    print(f"MNIST verified in {path}")
    return 0


def _cmd_sweep(args) -> int:
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
    rounds = _resumed_rounds(out, recorded, args.rounds)
    threads = _resumed_threads(out, recorded, args.thread_axis)
    if out is not None and not recorded and not given:  # not the default grid into its rows
        raise InputError(
            f"{out} keeps no record of the grid it began with (its environment.json is missing "
            "or holds none); fix: give the grid's options with --resume (--methods, --batch, "
            "--classes, --features, --epochs-on, --dtype, --time-budget), or choose another --out"
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
            raise  # before its folder: _cmd_sweep says that nothing was measured
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
    from ..runs.envfile import read_environment
    from ..runs.sweep import GRID_RECORD

    record = read_environment(out, "delete it to probe the machine again, or choose another --out")
    record = record.get("grid") or {}
    return {name: record[name] for name in (*GRID_RECORD, "rounds") if name in record}


def _resumed_rounds(out: Path, recorded: dict, given: int | None) -> int:
    """``--rounds`` of a run: as given, else as the run began, else the default; InputError for
    rounds other than those a resumed run began with (its rows are pooled from them)."""
    from ..runs.guard import DEFAULT_ROUNDS

    began = recorded.pop("rounds", None)
    if not isinstance(began, int) or isinstance(began, bool):
        return DEFAULT_ROUNDS if given is None else given  # the rows decide (check_same_run)
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
    if not isinstance(began, list) or not began:
        return tuple(given or (None,))  # the rows decide (check_same_run)
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


def _cmd_compare(args) -> int:
    from ..report.compare import compare, format_comparison

    _output_file("--out", args.out, "compare.md", lambda head: head.startswith("# B = "))
    table, summary = compare(args.a, args.b, threshold=args.threshold)
    text = format_comparison(table, summary, args.a, args.b)
    if args.out:
        atomic_write_text(args.out, text)
    print(text, end="")
    return 0


def _cmd_report(args) -> int:
    from ..report import make_report

    if not args.dirs and args.asv is None:
        raise InputError(
            "nothing to report; fix: give sweep result folders (the last sweep's: "
            "out/sweep/latest) and/or asv results (--asv results/asv)"
        )
    out = args.out or (args.dirs[0] if args.dirs else Path("out/report"))
    try:
        path = make_report(args.dirs, out, asv_dir=args.asv, asv_benchmark=args.benchmark)
    except KeyboardInterrupt as stopped:  # its report.md says "(being written)"
        raise type(stopped)(
            f"the report in {out} is half drawn: run the same command again to draw it"
        ) from None
    print(f"report: {path}")
    return 0


def _cmd_renamed(args) -> int:
    print(f"softmax-bench: '{args.command}' is now {RENAMED[args.command]}", file=sys.stderr)
    return EXIT_USAGE


def _cmd_sidebyside(args) -> int:
    from ..baseline import sidebyside as sbs

    start = time.monotonic()
    if args.out is not None:  # its two files, before anything is measured
        if args.out.exists() and not args.out.is_dir():
            raise InputError(f"--out {args.out} is a file; fix: give a folder")
        for name, ours in sbs.OWN_FILES.items():
            _output_file("--out", args.out / name, name, ours)
    if args.quick:
        about = "small epoch (synthetic 2000 x 784, k = 10, batch 100)"
        epoch = sbs.Workload("mnist_epoch", about, 2000, 784, 10, 100, lr=0.2)
        about = "small gradient (B = 256, n = k = 100)"
        gradient = sbs.Workload("gradient", about, 256, 100, 100, 256)
        workloads = [(epoch, None), (gradient, None)]
    else:
        data = load_mnist(args.data_dir)
        workloads = [(sbs.MNIST_EPOCH, (data.X_train, data.y_train)), (sbs.GRADIENT, None)]
    # the budget less the data's loading
    given = args.time_budget or (sbs.QUICK_TIME_BUDGET_S if args.quick else sbs.TIME_BUDGET_S)
    budget = max(given - (time.monotonic() - start), 0.1 * given)
    result = sbs.run_sidebyside(
        args.device,
        workloads=workloads,
        time_budget_s=budget,
        log=lambda s: print(s, file=sys.stderr, flush=True),
        on_workload=(lambda r: sbs.write(r, args.out)) if args.out else None,
    )
    print(sbs.markdown(result), end="")
    return 0


COMMANDS = {
    "train": _cmd_train,
    "info": _cmd_info,
    "data": _cmd_data,
    "sweep": _cmd_sweep,
    "report": _cmd_report,
    "compare": _cmd_compare,
    "scale": _cmd_scale,
    "gate": _cmd_gate,
    "sidebyside": _cmd_sidebyside,
    **dict.fromkeys(RENAMED, _cmd_renamed),
}
