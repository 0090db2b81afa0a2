"""The larger-than-memory gradient, once, with memory watched:
``softmax-bench scale --out-of-core ROWS`` (:func:`run_out_of_core`).

X is the lazy synthetic array of :func:`softmax_core.dask.chunked.synthetic_dask`
(ROWS x n, e.g. 10,000,000 x 784 float32 = 31 GB): each chunk is made by the
task that needs it and dropped once both of its uses (Xθ and Xᵀ(...)) are done,
so X never exists at once.
"""

from __future__ import annotations

import functools
import json
import threading
from pathlib import Path

import numpy as np

from ..backends.base import host_available_bytes
from ..dask.chunked import reference_gradient, synthetic_dask
from ..errors import InputError
from ..fileio import atomic_write_text
from ..units import si

#: The Dask gradient equals the chunked NumPy reference to this (float32 sums in another order).
RTOL, ATOL = 1e-4, 1e-6
#: The most chunks of X: a graph of a few tasks per chunk that a scheduler holds at ease, and
#: a run of minutes to hours (200,000,000 rows at the default 20,000 a chunk, 627 GB at n=784).
MAX_CHUNKS = 10_000


def read_out_of_core(folder) -> dict | None:
    """``folder/out_of_core.json`` (None where there is none); InputError naming the file for
    one that is no JSON object."""
    path = Path(folder) / "out_of_core.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        data = exc
    if not isinstance(data, dict):
        raise InputError(
            f"{path} is not an out-of-core run's record ({str(data)[:120]}); fix: move it away, "
            "or run `softmax-bench scale --out-of-core` into another --out"
        )
    return data


class MemoryWatch:
    """Samples, every ``interval`` s, the host's used memory and the RSS of this process and its
    children."""

    def __init__(self, interval: float = 0.2):
        import psutil

        self._psutil, self.interval = psutil, interval
        self.total = psutil.virtual_memory().total
        self.peak_used = self.peak_tree_rss = 0
        self.min_available = self.total
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        vm = self._psutil.virtual_memory()
        self.peak_used = max(self.peak_used, vm.total - vm.available)
        self.min_available = min(self.min_available, vm.available)
        me = self._psutil.Process()
        rss = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                rss += p.memory_info().rss
            except self._psutil.Error:  # a process that just ended
                pass
        self.peak_tree_rss = max(self.peak_tree_rss, rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> MemoryWatch:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def summary(self) -> dict:
        return {
            "host_total_bytes": self.total,
            "host_peak_used_bytes": self.peak_used,
            "host_min_available_bytes": self.min_available,
            "process_tree_peak_rss_bytes": self.peak_tree_rss,
        }


def run_out_of_core(
    rows: int,
    n: int,
    k: int,
    chunk_rows: int,
    out: Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    dtype: str = "float32",
    samples: int = 3,
) -> dict:
    """The streamed full-batch gradient over ``rows`` rows on Dask (seed 0's), against the
    chunked NumPy reference; everything goes to ``out/out_of_core.json``.

    One call is watched (each worker's peak RSS, the host's memory every 0.2 s, distributed's
    task stream), then timed with :func:`softmax_core.measure.engine.measure` (``samples``
    calls), then :func:`softmax_core.dask.chunked.reference_gradient` (the same chunks, one
    at a time, in this process) runs once and the two are compared.
    """
    from ..backends import get_backend
    from ..backends.dask import session
    from ..dask.cluster import computed
    from ..dask.metrics import engine_stats, worker_peaks
    from ..measure.engine import measure, time_once
    from ..model.softmax import grad_structured

    chunks = -(-rows // chunk_rows)
    if chunks > MAX_CHUNKS:
        raise InputError(
            f"{rows} rows in chunks of {chunk_rows} rows are {chunks:.3g} chunks, more than the "
            f"{MAX_CHUNKS:,} a run may have; fix: at most {MAX_CHUNKS * chunk_rows:,} rows, or "
            "larger chunks (--chunk-rows)"
        )
    # what one chunk's gradient holds at once (its X, logits and probabilities, θ and its
    # gradient), in each worker and in this process's reference: bounded before anything runs
    item = np.dtype(dtype).itemsize
    one = item * (min(chunk_rows, rows) * (n + 2 * k) + 2 * n * k)
    available = host_available_bytes()
    if one * ((workers or 1) + 1) > available:
        raise InputError(
            f"a chunk of {min(chunk_rows, rows):,} rows at n = {n:,}, k = {k:,} holds "
            f"{si(one, 'B')} at once, in each of {(workers or 1) + 1} processes, more than the "
            f"{si(available, 'B')} this host has available; fix: fewer --chunk-rows, "
            "--features or --classes"
        )
    if (Path(out) / "out_of_core.json").exists():
        raise InputError(
            f"{Path(out) / 'out_of_core.json'} exists; fix: move it away, or choose another --out"
        )
    x_bytes = rows * n * np.dtype(dtype).itemsize
    theta0 = (0.01 * np.random.default_rng(0).standard_normal((n, k))).astype(dtype)
    fn = functools.partial(grad_structured, check=False)
    result = {
        "rows": rows,
        "features": n,
        "classes": k,
        "dtype": dtype,
        "chunk_rows": chunk_rows,
        "chunks": chunks,
        "x_bytes": x_bytes,
        "seed": 0,
    }
    print(
        f"out-of-core: X is {rows} x {n} {dtype} = {x_bytes / 1e9:.1f} GB in "
        f"{result['chunks']} chunks, never whole"
    )
    with session(scheduler, workers) as b, MemoryWatch() as watch:
        result["cluster"] = b.describe()
        X, y = synthetic_dask(rows, n, k, 0, chunk_rows, dtype)
        theta = b.asarray(theta0)
        engine, (peaks, g) = engine_stats(b, worker_peaks, b.session, fn, X, y, theta)
        g, first = b.to_numpy(g), engine["wall_s"]
        result["first_call_s"] = first
        result["engine"] = engine
        result["worker_peak_rss_bytes"] = peaks.peak
        result["worker_rss_before_bytes"] = peaks.before
        result["peak_source"] = peaks.source
        result["client_peak_rss_bytes"] = peaks.client_peak
        print(
            f"out-of-core: first call {first:.1f} s, worker peaks "
            f"{', '.join(f'{v / 1e6:.0f} MB' for v in peaks.peak.values())} ({peaks.source})"
        )
        meas = measure(
            computed(fn, b.client),
            X,
            y,
            theta,
            backend=b,
            min_samples=samples,
            max_time_s=0.0,
            warmup_s=0.0,
            cold=False,
        )
        result["dask"] = {
            **meas.row(),
            "samples_per_s": rows / meas.median,
            "gbytes_per_s": x_bytes / meas.median / 1e9,
        }
        print(f"out-of-core: Dask gradient {meas}")
    result["dask_memory"] = watch.summary()
    with MemoryWatch() as watch:
        ref, seconds = time_once(
            reference_gradient,
            theta0,
            rows,
            k,
            0,
            chunk_rows,
            dtype,
            backend=get_backend("cpu", "numpy"),
        )
    result["numpy_reference"] = {
        "seconds": seconds,
        "samples_per_s": rows / seconds,
        **watch.summary(),
    }
    diff = np.abs(g.astype(np.float64) - ref.astype(np.float64))
    result["max_abs_diff"] = float(diff.max())
    result["max_rel_diff"] = float(diff.max() / max(np.abs(ref).max(), 1e-30))
    result["equal"] = bool(np.allclose(g, ref, rtol=RTOL, atol=ATOL))
    result["tolerance"] = {"rtol": RTOL, "atol": ATOL}
    print(
        f"out-of-core: NumPy chunked reference {seconds:.1f} s; "
        f"max |Dask - NumPy| = {result['max_abs_diff']:.3g} "
        f"(relative {result['max_rel_diff']:.3g}): {'EQUAL' if result['equal'] else 'DIFFERENT'}"
    )
    out = Path(out)
    atomic_write_text(out / "out_of_core.json", json.dumps(result, indent=2, default=float) + "\n")
    return result


__all__ = ["read_out_of_core", "MemoryWatch", "run_out_of_core"]
