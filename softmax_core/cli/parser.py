"""The command line's parser: every command, option and default in one place."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import __version__
from ..backends import DEVICES
from ..baseline import sidebyside as sbs
from ..data import DEFAULT_MIRRORS, default_data_dir
from ..model.softmax import GRADIENTS
from .arguments import (
    DEFAULT_SWEEP_ROOT,
    PROGRESS_HELP,
    Parser,
    add_backend_args,
    bytes_size,
    class_counts,
    fraction,
    int_list,
    name_list,
    nonnegative_int,
    positive_float,
    positive_int,
    rounds,
    seconds,
    thread_count,
)

#: What ``softmax-bench --help`` says first.
DESCRIPTION = "softmax-bench: what softmax regression really costs on your hardware."


def _listed(values) -> str:
    return ",".join(map(str, values))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="softmax-bench", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"softmax-bench {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, parser_class=Parser, metavar="COMMAND"
    )

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
        type=positive_int,
        default=10,
        help="passes over the data (default: %(default)s)",
    )
    p.add_argument(
        "--lr", type=positive_float, default=0.2, help="learning rate (default: %(default)s)"
    )
    p.add_argument(
        "--batch", type=positive_int, default=100, help="minibatch size (default: %(default)s)"
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
        type=nonnegative_int,
        help="shuffle each epoch with this seed (default: no shuffling, the reference recipe)",
    )
    p.add_argument(
        "--metrics-out", type=Path, help="also write the per-epoch table as CSV to this file"
    )
    add_backend_args(p)

    p = sub.add_parser(
        "sweep",
        help="measure time and memory across methods, batch sizes and class counts",
        description="Measure every point of the grid (guarded by memory and time budgets) "
        "and write results.csv, environment.json and the report.",
    )
    from ..runs.cases import DEFAULT_GRID, METHODS
    from ..runs.guard import DEFAULT_ROUNDS
    from ..runs.sweep import MAX_ROUNDS

    p.add_argument(
        "--methods",
        type=name_list(METHODS),
        help=f"gradient methods, comma-separated (default: {_listed(DEFAULT_GRID.methods)})",
    )
    p.add_argument(
        "--batch",
        type=int_list,
        help=f"batch sizes B (default: {_listed(DEFAULT_GRID.batches)})",
    )
    p.add_argument(
        "--classes",
        type=class_counts,
        help=f"class counts k, each >= 2 (default: {_listed(DEFAULT_GRID.classes)})",
    )
    p.add_argument(
        "--features",
        type=int_list,
        help=f"feature counts n (default: {_listed(DEFAULT_GRID.features)})",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        help=f"(default: {DEFAULT_GRID.dtype})",
    )
    p.add_argument(
        "--epochs-on",
        choices=("mnist", "synthetic", "none"),
        help="data for the whole-epoch points: real MNIST (needs --data-dir), "
        f"MNIST-shaped synthetic data, or none (default: {DEFAULT_GRID.epochs_on})",
    )
    p.add_argument("--data-dir", type=Path, help="MNIST folder for --epochs-on mnist")
    p.add_argument(
        "--memory-budget",
        type=bytes_size,
        help="skip points predicted to need more, e.g. 8GB (default: half the free RAM, "
        "80%% of a GPU's free memory; refused above what the device can allocate)",
    )
    p.add_argument(
        "--time-budget",
        type=seconds,
        help="seconds one point may take (points predicted to take longer are skipped; "
        f"sampling stops after a tenth of it) (default: {DEFAULT_GRID.time_budget_s:g})",
    )
    p.add_argument(
        "--rounds",
        type=rounds,
        help=f"measure the grid this many times (at most {MAX_ROUNDS}), interleaved, pooling "
        "each point's samples, so a drift of the machine's speed between rounds widens the point's "
        f"interval; a point's row is written after its last round (default: {DEFAULT_ROUNDS}; "
        "with --resume, the run's own)",
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
        "measuring only the missing points of the grid it began with (a grid option given "
        "here replaces that setting)",
    )
    p.add_argument(
        "--no-report", action="store_true", help="do not write the report after the sweep"
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=PROGRESS_HELP,
    )
    add_backend_args(p, threads_axis=True)

    p = sub.add_parser(
        "report",
        help="tables and plots from sweep results and/or asv results",
        description="Write report.md and its plots from sweep result folders and/or asv results.",
    )
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
        type=fraction,
        default=0.05,
        help="a change smaller than this fraction counts as SAME (default: %(default)s)",
    )
    p.add_argument("--out", type=Path, help="also write the comparison as markdown to this file")

    p = sub.add_parser(
        "info",
        help="print the environment record: machine, BLAS, device, versions",
        description="Print the environment record a sweep keeps in environment.json: the "
        "machine, its BLAS and threads, the device and the libraries' versions. It changes "
        "nothing.",
    )
    add_backend_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("data", help="manage data sets", description="Manage data sets.")
    dsub = p.add_subparsers(
        dest="data_command", metavar="fetch", required=True, parser_class=Parser
    )
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
        type=seconds,
        default=60.0,
        help="seconds a read may stall (default: %(default)s)",
    )
    _add_reference_set_parsers(sub)
    from .gate import add_parser as add_gate_parser
    from .scale import add_parser as add_scale_parser

    add_scale_parser(sub)
    add_gate_parser(sub)
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
        type=seconds,
        help=f"seconds for the measurements (default: {sbs.TIME_BUDGET_S:g}, "
        f"{sbs.QUICK_TIME_BUDGET_S:g} with --quick)",
    )
    p.add_argument(
        "--out", type=Path, help="also write sidebyside.json and sidebyside.md into this folder"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small synthetic workloads (a smoke test; no MNIST)",
    )
    p.add_argument("--device", choices=DEVICES, help="cpu or gpu (default: $SOFTMAX_DEVICE or cpu)")
    p.add_argument(
        "--threads", type=thread_count, help="BLAS threads (default: the BLAS's own choice)"
    )
