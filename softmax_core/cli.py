"""softmax-bench: what softmax regression really costs on your hardware.

Commands: train, sweep, report, compare, sidebyside, scale, info, data fetch.  Every
failure the user can fix (bad arguments, missing data, no GPU) ends in one line
on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import io
import json
import math
import os
import sys
from pathlib import Path

from . import __version__
from .backends import BACKENDS, DEVICES, BackendError, get_backend
from .data import DEFAULT_MIRRORS, DataError, default_data_dir, fetch_mnist, load_mnist
from .fileio import atomic_write_text
from .measure.session import thread_limit
from .model.softmax import GRADIENTS, get_gradient, train

EPOCH_COLUMNS = ("epoch", "train_loss", "train_err", "test_loss", "test_err", "seconds")
EXIT_ERROR = 1
EXIT_USAGE = 2
DEFAULT_SWEEP_ROOT = Path("out/sweep")


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, naming the problem and where help is."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _thread_count(text: str) -> int:
    value = _positive_int(text)
    cores = os.cpu_count() or 1
    if value > cores:
        raise argparse.ArgumentTypeError(
            f"{value} threads on {cores} cores would time the scheduler, "
            f"not the math; use at most {cores}"
        )
    return value


def _rounds(text: str) -> int:
    from .runs.sweep import MAX_ROUNDS

    value = _positive_int(text)
    if value > MAX_ROUNDS:
        raise argparse.ArgumentTypeError(f"at most {MAX_ROUNDS} rounds, got {value}")
    return value


def _fraction(text: str) -> float:
    value = _positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1, got {text}")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {value}")
    return value


def _int_list(text: str) -> list[int]:
    return [_positive_int(part) for part in _split(text)]


def _name_list(choices):
    def parse(text: str) -> list[str]:
        names = _split(text)
        bad = [n for n in names if n not in choices]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(bad)}: choose from {', '.join(choices)}"
            )
        return names

    return parse


def _split(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected a comma-separated list, got nothing")
    return parts


def _bytes(text: str) -> int:
    """``12e9``, ``12GB``, ``512MiB`` -> bytes."""
    units = {
        "": 1,
        "b": 1,
        "kb": 1e3,
        "mb": 1e6,
        "gb": 1e9,
        "tb": 1e12,
        "kib": 2**10,
        "mib": 2**20,
        "gib": 2**30,
        "tib": 2**40,
    }
    t = text.strip().lower()
    number = t.rstrip("kmgtib")
    unit = t[len(number) :]
    try:
        value = float(number) * units[unit]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(
            f"expected a size such as 8e9, 8GB or 8GiB, got {text!r}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a positive finite size such as 8GB, got {text!r}"
        )
    return int(value)


def _thread_counts(text: str) -> list[int]:
    return [_thread_count(part) for part in _split(text)]


def _add_backend_args(p: argparse.ArgumentParser, threads_axis: bool = False) -> None:
    p.add_argument("--device", choices=DEVICES, help="cpu or gpu (default: $SOFTMAX_DEVICE or cpu)")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        help="array library (default: $SOFTMAX_BACKEND, else numpy on cpu, cupy on gpu)",
    )
    if threads_axis:
        p.add_argument(
            "--threads",
            type=_thread_counts,
            help="BLAS threads, an axis of the grid: e.g. 1,2 measures each point at 1 and at 2 "
            "threads, side by side, each at most the cores (default: the BLAS's own choice, "
            "usually one per core); recorded in every row",
        )
        return
    p.add_argument(
        "--threads",
        type=_thread_count,
        help="BLAS threads of this process, at most the cores (default: the BLAS's own choice, "
        "usually one per core)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="softmax-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"softmax-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser(
        "train",
        help="train softmax regression on MNIST and print per-epoch metrics",
        description="Train on MNIST (X/255, theta = 0) and print loss, error and seconds per "
        "epoch.",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help=f"folder with the MNIST IDX files (default: {default_data_dir()})",
    )
    p.add_argument(
        "--epochs",
        type=_positive_int,
        default=10,
        help="passes over the data (default: %(default)s)",
    )
    p.add_argument(
        "--lr", type=_positive_float, default=0.2, help="learning rate (default: %(default)s)"
    )
    p.add_argument(
        "--batch", type=_positive_int, default=100, help="minibatch size (default: %(default)s)"
    )
    p.add_argument(
        "--grad",
        choices=tuple(GRADIENTS),
        default="structured",
        help="how the gradient is computed (default: %(default)s)",
    )
    p.add_argument(
        "--dtype", choices=("float32", "float64"), default="float32", help="(default: %(default)s)"
    )
    p.add_argument(
        "--seed",
        type=_nonnegative_int,
        help="shuffle each epoch with this seed (default: no shuffling, the reference recipe)",
    )
    p.add_argument(
        "--metrics-out", type=Path, help="also write the per-epoch table as CSV to this file"
    )
    _add_backend_args(p)

    p = sub.add_parser(
        "sweep",
        help="measure time and memory across methods, batch sizes and class counts",
        description="Measure every point of the grid (guarded by memory and time budgets) "
        "and write results.csv, environment.json and the report.",
    )
    from .runs.cases import DEFAULT_GRID, DEFAULT_ROUNDS, METHODS
    from .runs.sweep import MAX_ROUNDS

    p.add_argument(
        "--methods",
        type=_name_list(METHODS),
        default=list(DEFAULT_GRID.methods),
        help="gradient methods, comma-separated (default: %(default)s)",
    )
    p.add_argument(
        "--batch",
        type=_int_list,
        default=list(DEFAULT_GRID.batches),
        help="batch sizes B (default: %(default)s)",
    )
    p.add_argument(
        "--classes",
        type=_int_list,
        default=list(DEFAULT_GRID.classes),
        help="class counts k, each >= 2 (default: %(default)s)",
    )
    p.add_argument(
        "--features",
        type=_int_list,
        default=list(DEFAULT_GRID.features),
        help="feature counts n (default: %(default)s)",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=DEFAULT_GRID.dtype,
        help="(default: %(default)s)",
    )
    p.add_argument(
        "--epochs-on",
        choices=("mnist", "synthetic", "none"),
        default="synthetic",
        help="data for the whole-epoch points: real MNIST (needs --data-dir), "
        "MNIST-shaped synthetic data, or none (default: %(default)s)",
    )
    p.add_argument("--data-dir", type=Path, help="MNIST folder for --epochs-on mnist")
    p.add_argument(
        "--memory-budget",
        type=_bytes,
        help="skip points predicted to need more, e.g. 8GB (default: half the free RAM, "
        "80%% of a GPU's free memory; refused above what the device can allocate)",
    )
    p.add_argument(
        "--time-budget",
        type=_positive_float,
        default=DEFAULT_GRID.time_budget_s,
        help="seconds one point may take (points predicted to take longer are skipped; "
        "sampling stops after a tenth of it) (default: %(default)s)",
    )
    p.add_argument(
        "--rounds",
        type=_rounds,
        default=DEFAULT_ROUNDS,
        help=f"measure the grid this many times (at most {MAX_ROUNDS}), interleaved, pooling "
        "each point's samples, so a drift of the machine's speed between rounds widens the point's "
        "interval; a point's row is written after its last round (default: %(default)s)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help=f"results folder (default: a new folder "
        f"{DEFAULT_SWEEP_ROOT}/<time>-<library>-<device> per run, "
        f"with {DEFAULT_SWEEP_ROOT}/latest pointing at it)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help=f"continue the results in --out (default: {DEFAULT_SWEEP_ROOT}/latest), "
        "measuring only missing points",
    )
    p.add_argument(
        "--no-report", action="store_true", help="do not write the report after the sweep"
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    _add_backend_args(p, threads_axis=True)

    p = sub.add_parser("report", help="tables and plots from sweep results and/or asv results")
    p.add_argument(
        "dirs", nargs="*", type=Path, help="sweep result folders (each with results.csv)"
    )
    p.add_argument("--asv", type=Path, help="asv results folder (e.g. results/asv)")
    p.add_argument(
        "--benchmark",
        help="asv benchmark to plot across commits (default: structured gradient time)",
    )
    p.add_argument("--out", type=Path, help="output folder (default: the first DIR, or out/report)")

    p = sub.add_parser(
        "compare",
        help="compare two result sets point by point (SAME / FASTER / SLOWER / UNSURE)",
        description="Ratio B/A of each point's median with its interval, a verdict, and a summary.",
    )
    p.add_argument("a", type=Path, help="the baseline sweep folder (A)")
    p.add_argument("b", type=Path, help="the sweep folder compared with it (B)")
    p.add_argument(
        "--threshold",
        type=_fraction,
        default=0.05,
        help="a change smaller than this fraction counts as SAME (default: %(default)s)",
    )
    p.add_argument("--out", type=Path, help="also write the comparison as markdown to this file")

    p = sub.add_parser("info", help="print the environment record: machine, BLAS, device, versions")
    _add_backend_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("data", help="manage data sets")
    dsub = p.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    f = dsub.add_parser("fetch", help="download MNIST with checksum verification")
    f.add_argument(
        "--dir", type=Path, help=f"where to put the files (default: {default_data_dir()})"
    )
    f.add_argument(
        "--mirror",
        action="append",
        help="base URL to try (repeatable; default: $SOFTMAX_MNIST_MIRRORS or "
        f"{', '.join(DEFAULT_MIRRORS)})",
    )
    f.add_argument(
        "--timeout",
        type=_positive_float,
        default=60.0,
        help="seconds a read may stall (default: %(default)s)",
    )
    _add_reference_set_parsers(sub)
    from .dask.scale import add_parser as add_scale_parser

    add_scale_parser(sub)
    return parser


#: Commands that have a new spelling: each only says so, in one line, with exit status 2.
RENAMED = {
    "suite": "tools/reference-set.sh OUT [BUDGET_S] (see docs/gpu.md)",
    "overhead": "'softmax-bench sidebyside': its numpy and numpy-lecture rows are the plain "
    "NumPy loops, measured beside softmax-bench",
}


def _add_reference_set_parsers(sub) -> None:
    """The ``sidebyside`` command (:mod:`softmax_core.baseline.sidebyside`), and the renamed
    commands (:data:`RENAMED`)."""
    for name in RENAMED:
        # prefix_chars NUL: no argument can start with it, so every word after the command is
        # the REMAINDER's and the command prints its one line, whatever options follow
        p = sub.add_parser(name, add_help=False, prefix_chars="\0")
        p.add_argument("args", nargs=argparse.REMAINDER)

    p = sub.add_parser(
        "sidebyside",
        help="softmax-bench against plain NumPy and plain PyTorch doing the same arithmetic",
        description="The MNIST recipe's epoch and the structured gradient at B = 1024, "
        "n = k = 1000: softmax-bench on the device's library and on torch, beside hand-written "
        "NumPy loops (on the CPU), hand-written PyTorch and autograd, measured side by side "
        "in alternating rounds, with launches per step against the bound.",
    )
    p.add_argument("--data-dir", type=Path, help=f"MNIST folder (default: {default_data_dir()})")
    p.add_argument(
        "--time-budget",
        type=_positive_float,
        default=120.0,
        help="seconds for the measurements (default: %(default)s)",
    )
    p.add_argument(
        "--out", type=Path, help="also write sidebyside.json and sidebyside.md into this folder"
    )
    p.add_argument(
        "--quick", action="store_true", help="small synthetic workloads (a smoke test; no MNIST)"
    )
    p.add_argument("--device", choices=DEVICES, help="cpu or gpu (default: $SOFTMAX_DEVICE or cpu)")
    p.add_argument(
        "--threads", type=_thread_count, help="BLAS threads (default: the BLAS's own choice)"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        threads = getattr(args, "threads", None)  # the sweep's is an axis of its grid
        with thread_limit(None if isinstance(threads, list) else threads):
            code = _COMMANDS[args.command](args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # the reader went away (`softmax-bench info | head -1`): not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (ValueError, TypeError, BackendError, DataError, OSError) as exc:
        print(f"softmax-bench {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        hint = (
            "; the rows of finished points are kept: add --resume to go on"
            if args.command == "sweep"
            else ""
        )
        print(f"softmax-bench {args.command}: interrupted{hint}", file=sys.stderr)
        return 130


def _cmd_train(args) -> int:
    import functools

    from .measure.engine import Measurement, time_once
    from .measure.session import MeasurementSession

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
        )
    if len(rows) >= 3:  # the first epoch is cold (compilation, first touch): kept apart
        warm = Measurement.from_samples(
            [r["seconds"] for r in rows[1:]], first_s=rows[0]["seconds"]
        )
        print(
            f"# epoch time: {warm} over epochs 2-{len(rows)}; "
            f"epoch 1 (cold) {rows[0]['seconds']:.3f} s"
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
    from .measure.environment import blas_summary, record

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
        print(f"{key:<{width}}  {value}")
    return 0


def _cmd_data(args) -> int:
    path = fetch_mnist(args.dir, args.mirror, timeout=args.timeout)
    print(f"MNIST verified in {path}")
    return 0


def _cmd_sweep(args) -> int:
    from .runs.cases import Grid
    from .runs.sweep import run_sweep

    backend = get_backend(args.device, args.backend)
    grid = Grid(
        methods=tuple(args.methods),
        batches=tuple(args.batch),
        classes=tuple(args.classes),
        features=tuple(args.features),
        dtype=args.dtype,
        epochs_on=args.epochs_on,
        time_budget_s=args.time_budget,
        threads=tuple(args.threads or (None,)),
    )
    out = _sweep_folder(args.out, args.resume, backend.label)
    run_sweep(
        grid,
        backend,
        out,
        resume=args.resume,
        memory_budget=args.memory_budget,
        data_dir=args.data_dir,
        rounds=args.rounds,
        progress=args.progress,
    )
    if args.out is None:
        _point_latest(out)
    print(f"sweep: {run_sweep.last_summary.text()}")
    if not args.no_report:
        from .report import make_report

        print(f"report: {make_report([out], out)}")
    return 0


def _sweep_folder(out: Path | None, resume: bool, label: str) -> Path:
    """--out as given; else, to resume, the latest run; else a new folder per run."""
    if out is not None:
        return out
    latest = DEFAULT_SWEEP_ROOT / "latest"
    if latest.exists() and not latest.is_symlink():
        raise ValueError(
            f"{latest} is not the link softmax-bench keeps to the latest run; fix: move it "
            "away, or pass --out DIR"
        )
    if resume:
        if not latest.exists():
            raise ValueError(
                f"nothing to resume: {latest} does not exist; fix: pass --out DIR of the "
                "sweep to continue, or run without --resume"
            )
        return latest.resolve()
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = DEFAULT_SWEEP_ROOT / f"{stamp}-{label}"
    suffix = 1
    while folder.exists():  # two runs in the same second
        suffix += 1
        folder = DEFAULT_SWEEP_ROOT / f"{stamp}-{label}-{suffix}"
    return folder


def _point_latest(folder: Path) -> None:
    """Make ``out/sweep/latest`` point at ``folder``, atomically."""
    link = DEFAULT_SWEEP_ROOT / "latest"
    tmp = DEFAULT_SWEEP_ROOT / f".latest.{os.getpid()}"
    try:
        os.symlink(folder.name, tmp)
        os.replace(tmp, link)
    except OSError:
        if tmp.is_symlink():
            tmp.unlink()


def _cmd_compare(args) -> int:
    from .report.compare import compare, format_comparison

    if args.out is not None and args.out.is_dir():
        raise ValueError(
            f"--out {args.out} is a folder; fix: give a file name, e.g. {args.out / 'compare.md'}"
        )
    table, summary = compare(args.a, args.b, threshold=args.threshold)
    text = format_comparison(table, summary, args.a, args.b)
    if args.out:
        atomic_write_text(args.out, text)
    print(text, end="")
    return 0


def _cmd_report(args) -> int:
    from .report import make_report

    if not args.dirs and args.asv is None:
        raise ValueError("nothing to report: give sweep result folders and/or --asv results/asv")
    out = args.out or (args.dirs[0] if args.dirs else Path("out/report"))
    print(f"report: {make_report(args.dirs, out, asv_dir=args.asv, asv_benchmark=args.benchmark)}")
    return 0


_COMMANDS = {
    "train": _cmd_train,
    "info": _cmd_info,
    "data": _cmd_data,
    "sweep": _cmd_sweep,
    "report": _cmd_report,
    "compare": _cmd_compare,
}


def _cmd_scale(args) -> int:
    from .dask.scale import run

    return run(args)


_COMMANDS["scale"] = _cmd_scale


def _cmd_renamed(args) -> int:
    print(f"softmax-bench: '{args.command}' is now {RENAMED[args.command]}", file=sys.stderr)
    return EXIT_USAGE


def _cmd_sidebyside(args) -> int:
    import time

    from .baseline import sidebyside as sbs

    start = time.monotonic()
    workloads = None
    if args.quick:
        workloads = [
            (
                sbs.Workload(
                    "mnist_epoch",
                    "small epoch (synthetic 2000 x 784, k = 10, batch 100)",
                    2000,
                    784,
                    10,
                    100,
                    lr=0.2,
                ),
                None,
            ),
            (
                sbs.Workload(
                    "gradient", "small gradient (B = 256, n = k = 100)", 256, 100, 100, 256
                ),
                None,
            ),
        ]
    else:
        data = load_mnist(args.data_dir)
        workloads = [(sbs.MNIST_EPOCH, (data.X_train, data.y_train)), (sbs.GRADIENT, None)]
    budget = max(
        args.time_budget - (time.monotonic() - start), 0.1 * args.time_budget
    )  # less the data's loading
    result = sbs.run_sidebyside(
        args.device,
        workloads=workloads,
        time_budget_s=budget,
        log=lambda s: print(s, file=sys.stderr, flush=True),
        on_workload=(lambda r: sbs.write(r, args.out)) if args.out else None,
    )
    print(sbs.markdown(result), end="")
    return 0


_COMMANDS.update(sidebyside=_cmd_sidebyside, **dict.fromkeys(RENAMED, _cmd_renamed))


if __name__ == "__main__":
    sys.exit(main())
