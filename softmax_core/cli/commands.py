"""The command line's commands: each turns parsed arguments into calls of the package."""

from __future__ import annotations

import csv
import io
import json
import sys
import tempfile
import time
from pathlib import Path

from ..backends import get_backend
from ..data import fetch_mnist, load_mnist
from ..errors import InputError
from ..fileio import atomic_write_text
from ..model.sgd import train
from ..model.softmax import get_gradient
from ..units import NA, si
from .arguments import (
    EXIT_USAGE,
)
from .gate import run as _cmd_gate
from .parser import RENAMED
from .scale import run as _cmd_scale
from .sweep import run as _cmd_sweep

EPOCH_COLUMNS = ("epoch", "train_loss", "train_err", "test_loss", "test_err", "seconds")


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
    if above is not None:  # its folders and file made there after the work, or an error now
        try:
            tempfile.TemporaryFile(dir=above).close()
        except OSError as exc:
            raise InputError(
                f"{option} {path}: cannot write in {above} ({exc.strerror}); fix: give a path "
                "in a folder you can write"
            ) from None
    if ours is not None and (path.exists() or path.is_symlink()):
        head = ""
        if path.is_file():
            with open(path, "rb") as fh:
                head = fh.read(4096).decode("utf-8", errors="replace")
        empty = path.is_file() and not head  # nothing in it to lose
        if not empty and not ours(head):
            raise InputError(
                f"{option} {path} exists and was not written by this command; fix: move it "
                f"away, or choose another {option}"
            )


def _check_train_memory(args, backend, m: int, n: int, k: int) -> None:
    """The epochs' working memory, predicted by the cost model, against the sweep's budget (a
    safe share of what the device can allocate now): refused before any epoch, not a
    MemoryError in the middle of one."""
    from ..model.cost import epoch_cost
    from ..runs.guard import default_memory_budget

    need = epoch_cost(args.grad, m, n, k, args.batch, args.dtype).peak_bytes
    budget = default_memory_budget(backend)
    if need > budget:
        raise InputError(
            f"--grad {args.grad} at --batch {args.batch} needs {si(need, 'B')} a step, over the "
            f"{si(budget, 'B')} this machine can spare now; fix: a smaller --batch, or --grad "
            "structured"
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
    _check_train_memory(args, backend, *data.X_train.shape, int(data.y_train.max()) + 1)
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
            f"{row['epoch']:>5} {_loss(row['train_loss']):>10} {row['train_err']:>9.5f} "
            f"{_loss(row['test_loss']):>9} {row['test_err']:>8.5f} {row['seconds']:>8.3f}{cold}",
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


def _loss(value: float) -> str:
    """A loss in its column: five decimals, or a power of ten where it grew (a diverging lr)."""
    return f"{value:.5f}" if abs(value) < 1e4 else f"{value:.3e}"


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
        "git_changes": info["git_changes"],
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
