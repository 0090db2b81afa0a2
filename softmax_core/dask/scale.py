"""``softmax-bench scale``: the Dask backend measured as it scales, NumPy as the baseline.

Every point is one *computed* call (see :mod:`softmax_core.dask.cluster`) on synthetic
data from :mod:`softmax_core.dask.chunked` (the same rows for NumPy and Dask):

* ``gradient``: the full-batch gradient over m rows; ``epoch``: one epoch of
  large-batch SGD (``--batch``, default 80000: 4 chunks a step) over them;
* ``memory``: X and y in the workers' memory (persisted before timing);
  ``stream``: X generated chunk by chunk inside the call, never whole (the
  larger-than-memory case; the time includes making the rows);
* against the number of workers (one LocalCluster of w single-threaded worker
  processes per w, all held at once, or the cluster at ``--scheduler``), m and the
  chunk size.

The NumPy baseline is the same call in this one process (``memory``: on the whole
X; ``stream``: :func:`softmax_core.dask.chunked.reference_gradient`, chunk by chunk),
with one BLAS thread and with all of them.  All engines of one (kind, data, m) are
timed by :func:`softmax_core.measure.engine.measure_side_by_side`, in alternating rounds,
so that load from other processes hits them alike, and their ratios (speedup over
NumPy, parallel efficiency) are taken round by round, with intervals.  After
timing, one more call per Dask engine measures each worker's peak memory, and one
more records the engine's statistics (tasks, compute and overhead per task).
Rows go to ``DIR/scaling.csv`` one by one; ``--out-of-core ROWS`` instead runs
the larger-than-memory gradient once, with memory watched, against the chunked
NumPy reference (``DIR/out_of_core.json``).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import functools
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_text
from .chunked import DEFAULT_CHUNK_ROWS, reference_gradient, synthetic, synthetic_dask

COLUMNS = (
    "run_id",
    "timestamp",
    "engine",
    "kind",
    "data",
    "rows",
    "features",
    "classes",
    "dtype",
    "chunk_rows",
    "batch",
    "workers",
    "threads",
    "status",
    "reason",
    "time_median_s",
    "time_ci_low_s",
    "time_ci_high_s",
    "time_min_s",
    "time_iqr_s",
    "time_first_s",
    "repeats",
    "loops",
    "rounds",
    "stable",
    "host_time_median_s",
    "others_cpu",
    "samples_per_s",
    "gbytes_per_s",
    "peak_worker_bytes",
    "peak_worker_above_bytes",
    "peak_client_bytes",
    "peak_source",
    "tasks",
    "task_compute_s",
    "task_transfer_s",
    "compute_per_task_s",
    "overhead_per_task_s",
    "speedup_numpy_1t",
    "speedup_numpy_1t_low",
    "speedup_numpy_1t_high",
    "parallel_eff",
    "parallel_eff_low",
    "parallel_eff_high",
)
KINDS, DATA = ("gradient", "epoch"), ("memory", "stream")
#: Share of the free memory (the cluster's, or this process's for NumPy) a ``memory`` point
#: may fill.
MEMORY_SHARE = 0.5


@dataclass(frozen=True)
class ScaleConfig:
    workers: tuple = ()  # empty: 1..cores
    rows: tuple = (100_000, 1_000_000)
    chunk_rows: tuple = (DEFAULT_CHUNK_ROWS,)
    features: int = 784
    classes: int = 10
    dtype: str = "float32"
    data: tuple = DATA
    kinds: tuple = ("gradient", "epoch")
    batch: int = 80_000  # 4 default chunks: every step spans the workers
    lr: float = 0.1
    seed: int = 0
    max_time_s: float = 20.0  # sampling cap of a point's side-by-side rounds
    rounds: int = 5  # least rounds of a point
    scheduler: str | None = None
    numpy: bool = True
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])


def _theta0(cfg) -> np.ndarray:
    return (
        0.01 * np.random.default_rng(cfg.seed).standard_normal((cfg.features, cfg.classes))
    ).astype(cfg.dtype)


def _row(cfg, **kw) -> dict:
    row = {c: "" for c in COLUMNS}
    row.update(
        run_id=cfg.run_id,
        timestamp=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        features=cfg.features,
        classes=cfg.classes,
        dtype=cfg.dtype,
        status="ok",
    )
    row.update(kw)
    return row


def _throughput(row: dict, m: int, cfg) -> None:
    t = row["time_median_s"]
    row["samples_per_s"] = m / t
    row["gbytes_per_s"] = (
        m * cfg.features * np.dtype(cfg.dtype).itemsize / t / 1e9
    )  # X's bytes per second


class _Writer:
    """Rows appended to DIR/scaling.csv one at a time, flushed and fsynced."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists() or path.stat().st_size == 0
        self.fh = open(path, "a", encoding="utf-8", newline="")
        self.writer = csv.DictWriter(
            self.fh, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore"
        )
        if fresh:
            self.writer.writeheader()

    def write(self, row: dict) -> None:
        self.writer.writerow(row)
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


# --------------------------------------------------------------------------- the points


def _call(kind: str, cfg, engine: str, client=None):
    from ..model.softmax import grad_structured, sgd_epoch

    if kind == "gradient":
        return functools.partial(grad_structured, check=False)
    if engine == "dask":
        from .epoch import sgd_epoch as dask_epoch

        return functools.partial(dask_epoch, lr=cfg.lr, batch=cfg.batch, check=False, client=client)
    return functools.partial(sgd_epoch, lr=cfg.lr, batch=cfg.batch, check=False)


def _limited(fn, threads: int):
    """``fn`` run with ``threads`` BLAS threads (threadpoolctl; ~10 µs a call)."""
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()

    def call(*args):
        with controller.limit(limits=threads):
            return fn(*args)

    return call


def _fits(need: int, available: int) -> bool:
    return need <= MEMORY_SHARE * available


def measure_group(cfg, backends: dict, kind: str, data: str, m: int) -> list[dict]:
    """One (kind, data, m): NumPy (1 thread, all cores) and Dask (each cluster x chunk size)
    measured side by side in alternating rounds, so that a burst of load from other
    processes hits every engine alike; then each Dask call's peaks and engine statistics."""
    from distributed import wait

    from ..backends import get_backend, host_available_bytes
    from ..measure.engine import measure_side_by_side
    from ..measure.host_memory import release_retained_memory
    from .cluster import computed
    from .metrics import cluster_threads, engine_stats, worker_peaks

    # what the NumPy baseline of earlier groups kept (host_memory) goes back before the
    # checks below read the free memory, and the workers get it
    release_retained_memory()
    nb = get_backend("cpu", "numpy")
    theta = _theta0(cfg)
    need = m * cfg.features * np.dtype(cfg.dtype).itemsize
    common = dict(kind=kind, data=data, rows=m, batch=cfg.batch if kind == "epoch" else "")
    calls, points, rows = {}, {}, []
    if cfg.numpy:
        point = dict(
            common,
            engine="numpy",
            workers=0,
            chunk_rows=cfg.chunk_rows[0] if data == "stream" else "",
        )
        if data == "memory" and not _fits(need, host_available_bytes()):
            rows.append(
                _row(
                    cfg,
                    **point,
                    status="skipped",
                    reason=f"X needs {need / 1e9:.1f} GB in one process",
                )
            )
        else:
            if data == "memory":
                X, y = synthetic(m, cfg.features, cfg.classes, cfg.seed, cfg.dtype)
                fn, args = _call(kind, cfg, "numpy"), (X, y, theta)
            else:
                fn = functools.partial(
                    reference_gradient,
                    m=m,
                    k=cfg.classes,
                    seed=cfg.seed,
                    chunk_rows=cfg.chunk_rows[0],
                    dtype=cfg.dtype,
                )
                args = (theta,)
            for threads in sorted({1, os.cpu_count() or 1}):
                calls[f"numpy {threads}T"] = (_limited(fn, threads), args)
                points[f"numpy {threads}T"] = (dict(point, threads=threads), None, fn)
    for b in backends.values():
        workers = len(b.session.workers())
        for chunk in cfg.chunk_rows:
            point = dict(
                common,
                engine="dask",
                workers=workers,
                threads=cluster_threads(b.session),
                chunk_rows=chunk,
            )
            if data == "memory" and not _fits(need, b.free_memory_bytes()):
                rows.append(
                    _row(
                        cfg,
                        **point,
                        status="skipped",
                        reason=f"X needs {need / 1e9:.1f} GB of worker memory",
                    )
                )
                continue
            X, y = synthetic_dask(m, cfg.features, cfg.classes, cfg.seed, chunk, cfg.dtype)
            if data == "memory":
                X, y = b.client.persist([X, y])
                wait([X, y])
            fn = _call(kind, cfg, "dask", b.client)
            name = f"dask {workers}w {chunk}"
            calls[name] = (computed(fn, b.client), (X, y, b.asarray(theta)))
            points[name] = (point, b, fn)
    if not calls:
        return rows
    sbs = measure_side_by_side(calls, backend=nb, min_rounds=cfg.rounds, max_time_s=cfg.max_time_s)
    for name, meas in sbs.measurements.items():
        point, b, fn = points[name]
        row = _row(cfg, **point, **meas.row())
        _throughput(row, m, cfg)
        if "numpy 1T" in calls:
            r = sbs.ratio("numpy 1T", name)
            row.update(
                speedup_numpy_1t=r.median,
                speedup_numpy_1t_low=r.ci[0],
                speedup_numpy_1t_high=r.ci[1],
            )
        one = f"dask 1w {point['chunk_rows']}"
        if b is not None and one in calls:
            r, w = sbs.ratio(one, name), point["workers"]
            row.update(
                parallel_eff=r.median / w,
                parallel_eff_low=r.ci[0] / w,
                parallel_eff_high=r.ci[1] / w,
            )
        args = calls[name][1]
        if b is None:
            row.update(peak_worker_above_bytes=nb.peak_bytes(fn, *args), peak_source="tracemalloc")
        else:
            peaks, _ = worker_peaks(b.session, fn, *args)
            row.update(
                peak_worker_bytes=peaks.max_peak,
                peak_worker_above_bytes=peaks.max_above,
                peak_client_bytes=peaks.client_peak,
                peak_source=peaks.source + (" (shared)" if peaks.shared else ""),
            )
            stats = engine_stats(b, fn, *args)
            row.update(
                {
                    k: stats[k]
                    for k in (
                        "tasks",
                        "task_compute_s",
                        "task_transfer_s",
                        "compute_per_task_s",
                        "overhead_per_task_s",
                    )
                }
            )
        rows.append(row)
    calls.clear()  # drop the persisted chunks before the next group
    return rows


# --------------------------------------------------------------------------- the run


def run_scale(cfg: ScaleConfig, out: Path, say=print) -> Path:
    """Measure the grid into ``out/scaling.csv`` (appending), then write the report.

    One cluster per worker count, all started first and held together, so that
    every engine of a point is measured in the same rounds.
    """
    import contextlib

    from ..backends.dask import session

    out = Path(out)
    writer = _Writer(out / "scaling.csv")
    cores = os.cpu_count() or 1
    workers = (None,) if cfg.scheduler else (cfg.workers or tuple(range(1, cores + 1)))
    groups = [
        (kind, data, m)
        for kind in cfg.kinds
        for data in cfg.data
        for m in cfg.rows
        if not (kind == "epoch" and data == "stream")
    ]  # SGD on streamed rows remakes a chunk per step
    clusters = {}
    from .metrics import parallelism

    probe = parallelism()  # the ceiling of any parallel efficiency on this machine, now
    say(f"machine: {probe['processes']} busy processes run {probe['speedup']:.2f}x as fast as one")
    try:
        with contextlib.ExitStack() as stack:
            backends = {
                w: stack.enter_context(session(cfg.scheduler, w, processes=True)) for w in workers
            }
            clusters = {str(w or "existing"): b.describe() for w, b in backends.items()}
            for kind, data, m in groups:
                for row in _safely(
                    lambda: measure_group(cfg, backends, kind, data, m),
                    cfg,
                    engine="",
                    kind=kind,
                    data=data,
                    rows=m,
                ):
                    writer.write(row)
                    say(_line(row))
    finally:
        writer.close()
        _write_environment(out, cfg, clusters, probe)
    from ..report.scaling import write_report

    return write_report(out)


def _safely(make_rows, cfg, **point) -> list[dict]:
    """``make_rows()``, or one ``error`` row naming the failure (the run goes on)."""
    try:
        return make_rows()
    except (MemoryError, OSError, ValueError, RuntimeError, TimeoutError) as exc:
        return [_row(cfg, **point, status="error", reason=f"{type(exc).__name__}: {exc}"[:300])]


def _line(row: dict) -> str:
    who = {"dask": f"dask w={row['workers']}", "numpy": f"numpy {row['threads']}T"}.get(
        row["engine"], "all"
    )
    what = f"{row['kind']} {row['data']} m={row['rows']} chunk={row['chunk_rows'] or '-'}"
    if row["status"] != "ok":
        return f"{who:<12} {what}: {row['status']} ({row['reason']})"
    return (
        f"{who:<12} {what}: {row['time_median_s']:.4g} s "
        f"[{row['time_ci_low_s']:.4g}, {row['time_ci_high_s']:.4g}]"
        f" {row['samples_per_s']:.3g} samples/s{'' if row['stable'] else ' UNSTABLE'}"
    )


def _write_environment(
    out: Path, cfg: ScaleConfig, clusters: dict, probe: dict | None = None
) -> None:
    from ..backends import get_backend
    from ..measure.environment import record

    path = out / "environment.json"
    runs = json.loads(path.read_text()).get("scale_runs", []) if path.exists() else []
    env = record(get_backend("cpu", "numpy"))
    env["parallelism"] = probe  # the latest run's; each run's is in scale_runs
    env["scale_runs"] = runs + [
        {
            "run_id": cfg.run_id,
            "config": asdict(cfg),
            "dask_clusters": clusters,
            "parallelism": probe,
        }
    ]
    atomic_write_text(path, json.dumps(env, indent=2, default=str) + "\n")


# --------------------------------------------------------------------------- the command line


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(float(p)) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated whole numbers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive whole numbers, got {text!r}")
    return values


def _names(choices):
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(p.strip() for p in text.split(",") if p.strip())
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}, got {text!r}")
        return names

    return parse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``scale`` to the CLI's subparsers."""
    d = ScaleConfig()
    p = subparsers.add_parser(
        "scale",
        help="measure the Dask backend against workers, m and chunk size (NumPy as the baseline)",
        description="Full-batch gradients and large-batch SGD epochs on Dask, against the number "
        "of workers, m and the chunk size, with the NumPy single-process baseline; writes "
        "scaling.csv, environment.json, report.md and plots. --out-of-core ROWS runs the "
        "larger-than-memory gradient once instead.",
    )
    p.add_argument(
        "--workers", type=_ints, default=d.workers, help="worker counts (default: 1..cores)"
    )
    p.add_argument("--rows", type=_ints, default=d.rows, help="m values (default: 100000,1000000)")
    p.add_argument(
        "--chunk-rows",
        type=_ints,
        default=d.chunk_rows,
        help="rows per chunk (default: %(default)s)",
    )
    p.add_argument("--features", type=int, default=d.features, help="n (default: %(default)s)")
    p.add_argument("--classes", type=int, default=d.classes, help="k (default: %(default)s)")
    p.add_argument("--dtype", choices=("float32", "float64"), default=d.dtype)
    p.add_argument(
        "--data", type=_names(DATA), default=d.data, help="memory,stream (default: both)"
    )
    p.add_argument(
        "--kinds", type=_names(KINDS), default=d.kinds, help="gradient,epoch (default: both)"
    )
    p.add_argument(
        "--batch",
        type=int,
        default=d.batch,
        help="SGD batch of the epoch points (default: %(default)s)",
    )
    p.add_argument(
        "--seed", type=int, default=d.seed, help="synthetic data seed (default: %(default)s)"
    )
    p.add_argument(
        "--max-time",
        type=float,
        default=d.max_time_s,
        help="sampling seconds per point, past its least rounds (default: %(default)s)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=d.rounds,
        help="least alternating rounds per point (default: %(default)s)",
    )
    p.add_argument(
        "--scheduler",
        help="use the Dask cluster at this address (default: $SOFTMAX_DASK_SCHEDULER, "
        "else LocalClusters of each --workers count)",
    )
    p.add_argument("--no-numpy", action="store_true", help="skip the NumPy baseline")
    p.add_argument(
        "--out", type=Path, default=Path("out/scale"), help="results folder (default: %(default)s)"
    )
    p.add_argument(
        "--report-only", action="store_true", help="only redraw the report from DIR/scaling.csv"
    )
    p.add_argument(
        "--out-of-core",
        type=int,
        metavar="ROWS",
        help="run the streamed full-batch gradient over ROWS rows once, memory watched, "
        "against the chunked NumPy reference (e.g. 10000000: 31 GB at n=784)",
    )
    p.add_argument(
        "--samples", type=int, default=3, help="timed calls of --out-of-core (default: %(default)s)"
    )
    return p


def run(args) -> int:
    """The ``scale`` command: 0 on success (errors are raised for the CLI to print in one line)."""
    for name in ("features", "classes", "batch", "samples", "rounds"):
        if getattr(args, name) < 1 or (name == "classes" and args.classes < 2):
            raise ValueError(
                f"--{name} must be a positive whole number (classes >= 2), "
                f"got {getattr(args, name)}"
            )
    if not args.max_time > 0:
        raise ValueError(f"--max-time must be positive, got {args.max_time}")
    scheduler = args.scheduler or os.environ.get("SOFTMAX_DASK_SCHEDULER", "").strip() or None
    if args.report_only:
        from ..report.scaling import write_report

        print(f"report: {write_report(args.out)}")
        return 0
    if args.out_of_core is not None:
        from .out_of_core import run_out_of_core

        run_out_of_core(
            args.out_of_core,
            args.features,
            args.classes,
            args.chunk_rows[0],
            args.out,
            workers=args.workers[-1] if args.workers else None,
            scheduler=scheduler,
            seed=args.seed,
            dtype=args.dtype,
            samples=args.samples,
        )
        return 0
    cfg = ScaleConfig(
        workers=args.workers,
        rows=args.rows,
        chunk_rows=args.chunk_rows,
        features=args.features,
        classes=args.classes,
        dtype=args.dtype,
        data=args.data,
        kinds=args.kinds,
        batch=args.batch,
        seed=args.seed,
        max_time_s=args.max_time,
        rounds=args.rounds,
        scheduler=scheduler,
        numpy=not args.no_numpy,
    )
    print(f"report: {run_scale(cfg, args.out)}")
    return 0


__all__ = ["ScaleConfig", "COLUMNS", "run_scale", "measure_group", "add_parser", "run"]
