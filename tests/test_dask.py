"""The Dask backend: the model unchanged on Dask arrays, its cluster, its measurements.

Runs on one small in-process LocalCluster (2 workers of 1 thread, processes=False),
reached through ``SOFTMAX_DASK_SCHEDULER`` like any existing cluster; chunks of 64
rows so that every array has several.  Skipped where dask is not installed, except
the test of the one-line error that says how to install it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import types
import warnings

import numpy as np
import pytest
from report_sets import grid_rows, write_set

from softmax_core import BackendError, get_backend
from softmax_core.dask.chunked import (
    BLOCK_ROWS,
    chunk_bounds,
    reference_gradient,
    rows,
    synthetic,
    synthetic_dask,
)
from softmax_core.errors import InputError
from softmax_core.model.sgd import sgd_epoch, train
from softmax_core.model.softmax import grad_naive, grad_structured

# reports here are read, not looked at: they are not rendered
pytestmark = pytest.mark.usefixtures("unrendered_plots")

CHUNK = 64


def test_missing_dask_is_one_line_with_the_fix(monkeypatch):
    monkeypatch.setitem(
        sys.modules, "dask.array", None
    )  # `import dask.array` now raises ImportError
    with pytest.raises(BackendError) as err:
        get_backend("cpu", "dask")
    msg = str(err.value)
    assert (
        "\n" not in msg
        and "cannot be imported" in msg
        and "pip install 'softmax-bench[dask]'" in msg
    )


def test_dask_is_cpu_only():
    with pytest.raises(ValueError, match="SOFTMAX_DEVICE=cpu"):
        get_backend("gpu", "dask")


# --------------------------------------------------------------------------- chunked synthetic data


def test_synthetic_is_the_same_however_chunked():
    pytest.importorskip("dask.array")
    import dask

    X, y = synthetic(2 * BLOCK_ROWS + 345, 9, 4, seed=3)
    assert X.dtype == np.float32 and y.dtype == np.int64 and set(np.unique(y)) == {0, 1, 2, 3}
    for chunk in (1, 999, BLOCK_ROWS, 1500, 10**6):
        Xd, yd = synthetic_dask(X.shape[0], 9, 4, seed=3, chunk_rows=chunk)
        # rows of one chunk each: those around the first block boundary (each chunk makes its
        # generation block, so all of them would take seconds)
        part = slice(BLOCK_ROWS - 5, BLOCK_ROWS + 5) if chunk == 1 else slice(None)
        Xc, yc = dask.compute(Xd[part], yd[part], scheduler="sync")
        np.testing.assert_array_equal(Xc, X[part])
        np.testing.assert_array_equal(yc, y[part])
    X2, y2 = synthetic(1200, 9, 4, seed=3)  # a prefix: the same rows for a smaller m
    np.testing.assert_array_equal(X2, X[:1200])
    Xr, yr = rows(3, 1500, 2100, 9, 4)  # any range, across blocks
    np.testing.assert_array_equal(Xr, X[1500:2100])
    assert not np.array_equal(synthetic(100, 9, 4, seed=4)[0], X[:100])


def test_reference_gradient_is_the_sum_over_chunks():
    theta = 0.1 * np.random.default_rng(0).standard_normal((9, 4)).astype(np.float32)
    X, y = synthetic(2500, 9, 4, seed=1)
    ref = reference_gradient(theta, 2500, 4, seed=1, chunk_rows=700)
    np.testing.assert_allclose(ref, grad_structured(X, y, theta), rtol=1e-5, atol=1e-7)
    assert [b - a for a, b in chunk_bounds(2500, 700)] == [700, 700, 700, 400]


# ------------------------------------------------------------------------- the backend on a cluster


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("dask.array")
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None, silence_logs=50
    ) as c:
        yield c
        from softmax_core.dask.cluster import close_all

        close_all()  # the backend's client, before its cluster goes


@pytest.fixture
def dask_b(cluster, monkeypatch):
    monkeypatch.setenv("SOFTMAX_DASK_SCHEDULER", cluster.scheduler_address)
    monkeypatch.setenv("SOFTMAX_DASK_CHUNK_ROWS", str(CHUNK))
    return get_backend("cpu", "dask")


@pytest.fixture
def problem():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((300, 20)).astype(np.float32)
    y = rng.integers(0, 5, 300)
    theta = (0.1 * rng.standard_normal((20, 5))).astype(np.float32)
    return X, y, theta


def test_backend_uses_the_existing_cluster(dask_b, cluster):
    assert dask_b.label == "dask-cpu" and not dask_b.is_gpu
    assert dask_b.session.address == cluster.scheduler_address and not dask_b.session.started_here
    info = dask_b.describe()
    assert info["cluster"] == "existing" and info["workers"] == 2 and info["chunk_rows"] == CHUNK
    assert dask_b.free_memory_bytes() > 0


def test_the_machine_probe_computes_on_whole_arrays_whatever_the_chunk_rows(dask_b, monkeypatch):
    """Chunks of one row made the probe's 1024x1024 GEMM a graph of a million tasks (the sweep
    hung in its probe), and a probe that timed the building of a graph read thousands of GFLOP/s:
    its arrays are one chunk each, and what it times is computed."""
    from softmax_core.measure import engine

    dask_b.chunk_rows = 1
    made = []
    real_whole = dask_b.whole_array

    def whole(a, dtype=None):
        made.append(real_whole(a, dtype).numblocks)
        return real_whole(a, dtype)

    monkeypatch.setattr(dask_b, "whole_array", whole)
    probe = engine.probe_machine(dask_b, copy_bytes=2**20)
    assert made == [(1, 1), (1,)]
    numpy_probe = engine.probe_machine(get_backend("cpu", "numpy"), copy_bytes=2**20)
    assert probe["gemm_gflops"] < 3 * numpy_probe["gemm_gflops"]  # a GEMM's rate, not a graph's
    assert dask_b.chunk_rows == 1  # the backend's own chunks are as they were


def test_asarray_row_chunks_in_worker_memory(dask_b, problem):
    import dask.array as da

    X, y, theta = problem
    Xd, yd, td = (
        dask_b.asarray(X, "float32"),
        dask_b.asarray(y),
        dask_b.asarray(theta, dask_b.xp.float64),
    )
    assert isinstance(Xd, da.Array) and Xd.chunks == ((64, 64, 64, 64, 44), (20,))
    assert (
        yd.chunks == ((64, 64, 64, 64, 44),)
        and td.chunks == ((20,), (5,))
        and td.dtype == np.float64
    )
    np.testing.assert_array_equal(dask_b.to_numpy(Xd), X)
    held = dask_b.client.who_has()
    assert len(held) >= 5  # the chunks are futures in the workers, not in the graph


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("grad", [grad_structured, grad_naive], ids=["structured", "naive"])
def test_gradient_equals_numpy(dask_b, problem, grad, dtype):
    X, y, theta = (a.astype(dtype) if a.dtype.kind == "f" else a for a in problem)
    n = 300 if grad is grad_structured else 12  # naive: ~10 lazy ops per example
    X, y = X[:n], y[:n]
    g = grad(dask_b.asarray(X, dtype), dask_b.asarray(y), dask_b.asarray(theta, dtype))
    assert not isinstance(g, np.ndarray)  # lazy until computed
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(dask_b.to_numpy(g), grad(X, y, theta), rtol=tol, atol=tol)


@pytest.mark.slow
def test_scattering_waits_for_a_worker_and_says_when_none_comes(dask_b, monkeypatch):
    """A scheduler that has no worker at the moment (one gone, the next not yet joined) is
    waited for; one that gets none is one line, never a None future in a Dask graph."""
    from softmax_core.backends import dask as dask_backend

    real, views = dask_b.session.workers, []
    monkeypatch.setattr(
        dask_b.session, "workers", lambda: views.append(1) or ({} if len(views) == 1 else real())
    )
    x = np.arange(12.0).reshape(6, 2)
    np.testing.assert_array_equal(dask_b.to_numpy(dask_b.asarray(x)), x)
    monkeypatch.setattr(dask_b.session, "workers", dict)
    monkeypatch.setattr(dask_backend, "WORKER_WAIT_S", 0.1)
    with pytest.raises(InputError, match="has had no workers for 0.1 s; fix: start workers"):
        dask_b.asarray(x)


def test_sgd_epoch_equals_numpy(dask_b, problem):
    from softmax_core.dask import epoch as dd

    X, y, theta = problem
    X, y = X[:150], y[:150]  # 5 steps of 32 (the last of 22), across chunks of 64
    Xd, yd, td = dask_b.asarray(X), dask_b.asarray(y), dask_b.asarray(theta)
    want = sgd_epoch(X, y, theta, 0.5, 32)
    assert not np.array_equal(want, theta)
    # the model itself on Dask arrays: every step's new theta is carried on (no in-place -= on Dask)
    np.testing.assert_allclose(
        dask_b.to_numpy(sgd_epoch(Xd, yd, td, 0.5, 32)), want, rtol=1e-5, atol=1e-6
    )
    # the same epoch computed in segments of 3 batches
    got = dd.sgd_epoch(Xd, yd, td, 0.5, 32, segment_steps=2)
    np.testing.assert_allclose(dask_b.to_numpy(got), want, rtol=1e-5, atol=1e-6)
    shuffled = dd.sgd_epoch(Xd, yd, td, 0.5, 32, seed=4, segment_steps=3)
    np.testing.assert_allclose(
        dask_b.to_numpy(shuffled), sgd_epoch(X, y, theta, 0.5, 32, seed=4), rtol=1e-5, atol=1e-6
    )


def test_streamed_gradient_equals_the_chunked_numpy_reference(dask_b):
    theta = (0.1 * np.random.default_rng(2).standard_normal((30, 6))).astype(np.float32)
    X, y = synthetic_dask(5000, 30, 6, seed=9, chunk_rows=700)
    g = dask_b.to_numpy(grad_structured(X, y, dask_b.asarray(theta), check=False))
    np.testing.assert_allclose(
        g, reference_gradient(theta, 5000, 6, seed=9, chunk_rows=700), rtol=1e-5, atol=1e-7
    )


def test_a_measured_call_is_computed(dask_b, problem):
    import dask

    from softmax_core.dask.cluster import computed, materialize
    from softmax_core.measure.engine import measure

    X, y, theta = problem
    args = dask_b.asarray(X), dask_b.asarray(y), dask_b.asarray(theta)
    call = computed(functools.partial(grad_structured, check=False))
    out = call(*args)
    assert dask.is_dask_collection(out) and out.numblocks == (1, 1)  # θ-sized, in memory
    np.testing.assert_allclose(
        dask_b.to_numpy(out), grad_structured(X, y, theta), rtol=1e-5, atol=1e-7
    )
    m = measure(call, *args, backend=dask_b, max_time_s=0.2, min_samples=3)
    assert m.repeats >= 3 and m.median > 0
    assert materialize((out, 3))[1] == 3
    # the timer waits for persisted work before it stops
    fut = (args[0] * 2).sum().persist()
    timer = dask_b.timer()
    timer.start()
    timer.stop()
    assert all(s.done() for s in dask_b.client.futures.values())
    del fut


@pytest.mark.parametrize(
    "case",
    [
        dict(kind="gradient", method="structured", batch=500),
        dict(kind="gradient", method="structured", batch=500, data="stream", chunk_rows=CHUNK),
        dict(kind="epoch", method="structured", batch=100, data="synthetic", samples=300),
    ],
    ids=["gradient", "stream", "epoch"],
)
def test_a_sweep_point_on_dask_times_the_computation_not_the_graph(dask_b, case):
    import dask

    from softmax_core.runs.cases import Case

    point = Case(features=8, classes=3, **case)
    for chunked in (point, dataclasses.replace(point, workers=2, chunk_rows=CHUNK)):
        if chunked.data == "stream" and chunked is point:
            chunked = dataclasses.replace(point, workers=2)
        fn, args = chunked.prepare(dask_b)
        out = fn(*args)
        assert not dask.is_dask_collection(out) or len(out.__dask_graph__()) == 1  # computed
        numpy_fn, numpy_args = chunked.prepare(get_backend("cpu", "numpy"))
        if chunked.chunk_rows:  # the same rows in NumPy: the same result
            np.testing.assert_allclose(
                dask_b.to_numpy(out), numpy_fn(*numpy_args), rtol=1e-4, atol=1e-6
            )


def test_points_on_two_clusters_held_at_once_each_compute_on_their_own():
    """``scale`` holds a cluster per worker count: a point's value check and its calls run on
    its cluster, not on the process's default client (the cluster started last)."""
    pytest.importorskip("distributed")
    from softmax_core.backends.dask import session
    from softmax_core.runs.cases import Case

    with session(None, 1, processes=False) as first, session(None, 2, processes=False) as last:
        for b in (first, last):
            case = Case("gradient", "structured", 300, 8, 3, workers=b.workers, chunk_rows=CHUNK)
            fn, args = case.prepare(b)
            assert b.to_numpy(fn(*args)).shape == (8, 3)


def test_peak_memory_per_worker(dask_b, problem):
    from softmax_core.dask.metrics import engine_stats, worker_peaks

    X, y, theta = problem
    args = dask_b.asarray(X), dask_b.asarray(y), dask_b.asarray(theta)
    fn = functools.partial(grad_structured, check=False)
    # as --out-of-core watches its first call: the peaks inside the task stream
    stats, (peaks, g) = engine_stats(dask_b, worker_peaks, dask_b.session, fn, *args)
    assert (
        set(peaks.peak) == set(dask_b.session.workers()) and peaks.shared
    )  # threads of this process
    assert all(peaks.peak[w] >= peaks.before[w] > 0 for w in peaks.peak)
    assert isinstance(dask_b.peak_bytes(fn, *args), int)
    assert stats["tasks"] >= 5 and stats["task_compute_s"] > 0 and stats["threads"] == 2


def test_engine_stats_computes_a_lazy_call(dask_b, problem):
    """A call that returns a lazy array is computed inside the task stream, not only built."""
    from softmax_core.dask.metrics import engine_stats

    X, y, theta = problem
    args = dask_b.asarray(X), dask_b.asarray(y), dask_b.asarray(theta)
    stats, g = engine_stats(dask_b, functools.partial(grad_structured, check=False), *args)
    assert stats["tasks"] >= 5 and stats["task_compute_s"] > 0
    want = grad_structured(X, y, theta)
    np.testing.assert_allclose(dask_b.to_numpy(g), want, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_train_on_mnist_matches_numpy(dask_b, mnist):
    """The Dask backend's epoch computes θ as it goes: the table is NumPy's, and θ comes back
    computed, so evaluating it does not redo the epoch's graph."""
    import dask

    from softmax_core.measure.engine import time_once

    host = (mnist.X_train[:500], mnist.y_train[:500], mnist.X_test[:300], mnist.y_test[:300])
    arrays = [dask_b.asarray(a) for a in host]
    theta, got = train(
        *arrays,
        epochs=2,
        timer=functools.partial(time_once, backend=dask_b),
        run_epoch=dask_b.sgd_epoch,
    )
    assert not dask.is_dask_collection(theta) or len(theta.__dask_graph__()) == 1
    _, want = train(
        *host, epochs=2, timer=functools.partial(time_once, backend=get_backend("cpu", "numpy"))
    )
    for g, w in zip(got, want):
        for key in ("train_loss", "train_err", "test_loss", "test_err"):
            assert f"{g[key]:.5f}" == f"{w[key]:.5f}", (g["epoch"], key)


def test_info_command_describes_the_cluster(dask_b, capsys):
    from softmax_core.cli import main

    assert main(["info", "--backend", "dask", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backend"]["backend"] == "dask" and info["backend"]["workers"] == 2


def test_parallelism_probe():
    from softmax_core.dask.metrics import parallelism

    probe = parallelism(2, blocks=3, repeats=1)
    assert probe["processes"] == 2 and probe["speedup"] > 0


@pytest.mark.slow
def test_scale_is_a_grid_of_the_sweep_on_the_existing_cluster(
    dask_b, tmp_path, capsys, monkeypatch, fake_measuring
):
    """Each point's inputs are made and its call computed on its cluster (or in this process)
    once a round; the numbers come from the fake measuring loop, the peaks from real calls."""
    from softmax_core.cli import main
    from softmax_core.dask import metrics as dask_metrics
    from softmax_core.runs.envfile import read_environment
    from softmax_core.runs.resultformat import COLUMNS, read_results
    from softmax_core.runs.sweep import run_sweep

    for name, fake in fake_measuring.items():
        monkeypatch.setitem(run_sweep.__kwdefaults__, name, fake)

    monkeypatch.setattr(
        dask_metrics,
        "parallelism",
        lambda: {"processes": 2, "speedup": 1.5, "speedups": [1.5], "load_average_1min": 0.0},
    )
    argv = "scale --rows 3000 --chunk-rows 1000 --features 16 --classes 3 --batch 2000 --rounds 1"
    # a budget a loaded machine's Dask epoch (its inputs made for real) fits in
    assert main([*argv.split(), "--time-budget", "20", "--out", str(tmp_path)]) == 0
    found = read_results(tmp_path / "results.csv")  # the one result format
    assert found.header == list(COLUMNS)
    ok = [r for r in found.rows if r["status"] == "ok"]
    where = {(r["backend"], r["kind"], r["data"], r["threads"], r["workers"]) for r in ok}
    cores = str(max(1, __import__("os").cpu_count()))
    assert where >= {
        ("numpy", "gradient", "", "1", "0"),
        ("numpy", "gradient", "stream", cores, "0"),
        ("dask", "gradient", "", "1", "2"),
        ("dask", "gradient", "stream", "1", "2"),
        ("dask", "epoch", "synthetic", "1", "2"),
        ("numpy", "epoch", "synthetic", "1", "0"),
    }
    assert {r["samples"] for r in ok} == {"3000"}
    assert {(r["features"], r["classes"]) for r in ok} == {("16", "3")}  # the epochs' too
    # each Dask row has its workers' peak (a rise of peak RSS: 0 where the peak was reached before)
    assert all(float(r["peak_bytes"]) >= 0 for r in ok if r["backend"] == "dask")
    report = (tmp_path / "report.md").read_text()
    assert "Full-batch gradient" in report and "should not exceed 0.75 here" in report
    opening = report.split("## What this hardware does\n\n")[1].split("\n")[0]  # before the tables
    assert opening.startswith(
        "The full-batch gradient over m = 3,000 rows (n = 16, k = 3, float32) in memory takes "
    )
    assert opening.endswith("on NumPy with all its threads: Dask is 1.0x as fast."), opening
    assert "vs NumPy 1T" in report and "reads low" not in report
    assert "| 3,000 | – | NumPy" in report  # NumPy's rows are not chunked
    env = read_environment(tmp_path, "")
    assert env["dask_clusters"]["2"]["workers"] == 2 and env["parallelism"]["speedup"] == 1.5
    assert env["scale"]["rows"] == [3000] and env["scale"]["batch"] == 2000  # what --resume reads
    # a second run into the folder is refused, as the sweep's is; --resume finds nothing left
    assert main([*argv.split(), "--out", str(tmp_path)]) == 1
    assert main([*argv.split(), "--time-budget", "20", "--resume", "--out", str(tmp_path)]) == 0
    assert "nothing left to measure" in capsys.readouterr().out
    # a set of Dask points alone (--no-numpy) is still a scaling set, drawn without warnings
    lines = (tmp_path / "results.csv").read_text().splitlines(keepends=True)
    only = tmp_path / "dask-only"
    only.mkdir()
    only.joinpath("results.csv").write_text(
        "".join(lines[:1] + [x for x in lines[1:] if ",dask," in x])
    )
    only.joinpath("environment.json").write_text((tmp_path / "environment.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["report", str(only)]) == 0
    assert (only / "report.md").read_text().startswith("# Dask scaling")


@pytest.mark.parametrize("record", [None, "[1]", '{"bad', '{"rows": 5}', '{"dask": 5}'])
def test_a_report_of_an_out_of_core_run_alone_or_of_a_damaged_record(
    tmp_path, cli_run, unrendered_plots, record
):
    """results/dask's out-of-core record alone is a report; one damaged is one line."""
    from pathlib import Path

    ref = Path(__file__).parents[1] / "results" / "dask"
    for name in ("out_of_core.json", "environment.json"):
        (tmp_path / name).write_text((ref / name).read_text())
    if record is not None:
        (tmp_path / "out_of_core.json").write_text(record)
    code, _, err = cli_run("report", tmp_path)
    if record is None:
        assert code == 0 and "## Larger than memory" in (tmp_path / "report.md").read_text()
    else:
        assert code == 1 and len(err.splitlines()) == 1 and "not an out-of-core run's" in err


def test_a_dask_point_is_set_against_numpy_at_its_own_shape():
    """A resumed scale run may hold two class counts: each Dask row's speedup is over NumPy's
    point of the same features, classes and dtype."""
    import pandas as pd

    from softmax_core.report.scaling import efficiencies

    def row(engine, classes, t, workers=0, threads=1):
        return dict(
            kind="gradient", data="", rows=2000, batch=2000, features=16, classes=classes,
            dtype="float32", engine=engine, workers=workers, chunk_rows=1000 if workers else 0,
            threads=threads, time_median_s=t, time_ci_low_s=t, time_ci_high_s=t,
        )  # fmt: skip

    df = pd.DataFrame(
        [row("numpy", 10, 1.0), row("numpy", 20, 3.0), row("dask", 20, 6.0, workers=1)]
    )
    assert efficiencies(df)["speedup_numpy_1t"].tolist() == [0.5]


def test_the_reference_scaling_report_opens_with_what_the_machine_does(
    tmp_path, cli_run, unrendered_plots
):
    """results/dask redrawn: its report opens, before any table, with the best Dask gradient
    against NumPy, the parallel efficiencies and the out-of-core gradient, in plain words."""
    import shutil
    from pathlib import Path

    shutil.copytree(Path(__file__).parents[1] / "results" / "dask", tmp_path / "set")
    code, _, err = cli_run("scale", "--report-only", "--out", tmp_path / "set")
    assert code == 0, err
    text = (tmp_path / "set" / "report.md").read_text()
    opening = text.split("## What this hardware does\n\n")[1].split("\n")[0]
    assert text.index(opening) < text.index("|")
    assert opening.startswith("The full-batch gradient over m = 300,000 rows (n = 784, k = 10, ")
    assert "NumPy is 2.6x as fast" in opening and "keeps 0.59 to 0.86 of" in opening
    assert "over X of 31.4 GB (RAM: 25.3 GB) takes 197 s on 2 workers." in opening


def test_a_parallelism_probe_that_points_exceed_is_said_to_read_low():
    """The probe runs once, before the points: taken on a busier machine than theirs, the
    ceiling it gives is below what they measure, and the report says so instead of stating a
    ceiling its own table contradicts."""
    import pandas as pd

    from softmax_core.report.scaling import parallelism_text

    probe = {"processes": 2, "speedup": 0.9, "load_average_1min": 1.2}
    eff = pd.DataFrame({"workers": [1, 2], "parallel_eff": [1.0, 0.57]})
    for low, read_low in ((0.47, True), (0.4, False)):
        text = parallelism_text(probe, eff.assign(parallel_eff_low=[1.0, low]))
        assert "should not exceed 0.45 here" in text
        assert ("1 point(s) measured above it (up to 0.57)" in text) is read_low
    assert "reads low" not in parallelism_text(probe, None)


@pytest.mark.parametrize(
    "argv, code, needle",
    [
        (["--workers", "100000"], 1, "more than this machine's"),
        (["--max-time", "3"], 2, "--time-budget"),
        (["--seed", "1"], 2, "leave it out"),
        (["--classes", "1"], 2, "at least 2 classes"),
        (["--kinds", "epoch", "--data", "stream"], 1, "add --data memory"),
        (["--resume"], 1, "nothing to resume in"),
        (["--rows", "1" + "0" * 21, "--workers", "1"], 2, "--rows: must be at most 10^18"),
    ],
)
def test_scale_refuses_bad_arguments_in_one_line_before_it_starts(
    cli_run, tmp_path, argv, code, needle
):
    got, out, err = cli_run("scale", *argv, "--out", tmp_path / "s")
    assert got == code and needle in err and len(err.splitlines()) == 1
    assert out == "" and not (tmp_path / "s").exists()  # before the probe, nothing written


def test_scale_resumes_only_a_scale_run_and_leaves_a_sweep_as_it_was(
    cli_run, tmp_path, monkeypatch
):
    from softmax_core.dask import metrics as dask_metrics

    monkeypatch.setattr(dask_metrics, "parallelism", lambda: pytest.fail("probed"))
    sweep = write_set(tmp_path / "sweep", grid_rows(batches=(1,), classes=(10,), epochs=()))
    before = {p.name: p.read_bytes() for p in sweep.iterdir()}
    code, out, err = cli_run("scale", "--resume", "--workers", "1", "--out", sweep)
    assert code == 1 and "holds a sweep, not a scale run" in err and len(err.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in sweep.iterdir()} == before and out == ""


@pytest.mark.parametrize(
    "folder_has, needle",
    [
        ("environment.json", "already exists; fix: move it away"),
        ("report.md", "was not written by softmax-bench report"),
    ],
)
def test_scale_into_a_folder_of_someone_elses_files_is_refused_before_it_probes(
    cli_run, tmp_path, monkeypatch, folder_has, needle
):
    from softmax_core.dask import metrics as dask_metrics

    monkeypatch.setattr(dask_metrics, "parallelism", lambda: pytest.fail("probed"))
    (tmp_path / folder_has).write_text("someone else's")
    code, out, err = cli_run("scale", "--workers", "1", "--out", tmp_path)
    assert code == 1 and needle in err and len(err.splitlines()) == 1 and out == ""
    assert (tmp_path / folder_has).read_text() == "someone else's"


@pytest.mark.parametrize("device", ["gpu", "tpu"])
def test_scale_on_another_device_is_refused_in_one_line(cli_run, tmp_path, monkeypatch, device):
    """scale measures Dask, and NumPy beside it, on the CPU: SOFTMAX_DEVICE=gpu is refused, not
    ignored."""
    monkeypatch.setenv("SOFTMAX_DEVICE", device)
    for argv in ([], ["--out-of-core", "1000"]):
        got, out, err = cli_run("scale", *argv, "--workers", "1", "--out", tmp_path / "s")
        assert got == 1 and f"SOFTMAX_DEVICE is '{device}'" in err and len(err.splitlines()) == 1
        assert out == "" and not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "stage, said",
    [
        ("probe", "interrupted; nothing was measured yet"),
        ("points", "interrupted; nothing was measured yet: add --resume to go on"),
        ("report", "interrupted; the results are complete: `softmax-bench report {out}` draws"),
    ],
)
def test_scale_stopped_says_what_its_folder_holds(monkeypatch, cli_run, tmp_path, stage, said):
    """Ctrl-C in the parallelism probe, among the points or in the report: one line that says
    what is kept and how to go on, as a sweep's does."""
    import contextlib

    from softmax_core.backends import dask as dask_backend
    from softmax_core.dask import metrics as dask_metrics
    from softmax_core.runs import sweep

    def stop_at(here):
        if here == stage:
            raise KeyboardInterrupt

    def probe():
        stop_at("probe")
        return {"processes": 2, "speedup": 1.5, "speedups": [1.5], "load_average_1min": 0.0}

    def points(grid, backend, out, **_):
        (out / "results.csv").write_text("header\n")
        (out / "environment.json").write_text("{}")
        stop_at("points")

    points.last_summary = types.SimpleNamespace(text=lambda: "2 points")

    def report(folders, out):
        stop_at("report")
        return out / "report.md"

    monkeypatch.setattr(dask_metrics, "parallelism", probe)
    monkeypatch.setattr(dask_backend, "session", lambda *a: contextlib.nullcontext(object()))
    monkeypatch.setattr(sweep, "run_sweep", points)
    monkeypatch.setattr("softmax_core.report.make_report", report)
    out = tmp_path / "s"
    out.mkdir()
    code, _, err = cli_run("scale", "--workers", "1", "--out", out)
    assert code == 130 and err.startswith(f"softmax-bench scale: {said.format(out=out)}"), err
    assert len(err.splitlines()) == 1


def test_scale_into_a_finished_run_is_refused_before_it_probes(cli_run, tmp_path, monkeypatch):
    from softmax_core.dask import metrics as dask_metrics

    monkeypatch.setattr(dask_metrics, "parallelism", lambda: pytest.fail("probed"))
    (tmp_path / "results.csv").write_text("kind\n")
    code, out, err = cli_run("scale", "--out", tmp_path)
    assert code == 1 and "results.csv already exists; fix: pass --resume" in err and out == ""


@pytest.mark.parametrize("argv", [["--features", "10" + "0" * 11], ["--classes", "10" + "0" * 9]])
def test_an_out_of_core_chunk_larger_than_memory_is_one_line(cli_run, tmp_path, argv):
    """A chunk's gradient that cannot fit in this host's memory is refused before anything is
    made, in one line, not a MemoryError traceback."""
    code, _, err = cli_run("scale", "--out-of-core", "1000", *argv, "--workers", "1",
                           "--out", tmp_path / "o")  # fmt: skip
    assert code == 1 and len(err.splitlines()) == 1 and "this host has available" in err, err
    assert "fix: fewer --chunk-rows" in err and not (tmp_path / "o").exists()


def test_an_out_of_core_run_of_more_chunks_than_a_run_may_have_is_one_line(cli_run, tmp_path):
    """Refused before anything is made, in one line: 10^15 rows are more chunks than a graph
    holds, and listing their bounds alone would fill the memory."""
    code, _, err = cli_run("scale", "--out-of-core", "9" * 15, "--out", tmp_path / "o")
    assert code == 1 and len(err.splitlines()) == 1 and "more than the 10,000" in err, err
    assert "fix: at most 200,000,000 rows" in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--chunk-rows", "5000,100"], "fix: give one --chunk-rows"),
        (["--resume"], "fix: leave --resume out"),
        (["--workers", "100000"], "fix: give at most"),
    ],
)
def test_an_out_of_core_run_takes_one_chunk_size_and_this_machines_cores(
    cli_run, tmp_path, argv, needle
):
    code, out, err = cli_run("scale", "--out-of-core", "1000", *argv, "--out", tmp_path / "o")
    assert code == 1 and needle in err and len(err.splitlines()) == 1 and out == "", err
    assert not (tmp_path / "o").exists()


def test_a_second_out_of_core_run_does_not_overwrite_the_first(cli_run, tmp_path):
    (tmp_path / "out_of_core.json").write_text("{}")
    code, _, err = cli_run("scale", "--out-of-core", "1000", "--out", tmp_path)
    assert code == 1 and "out_of_core.json exists" in err and len(err.splitlines()) == 1
    assert (tmp_path / "out_of_core.json").read_text() == "{}"


@pytest.mark.parametrize("answer", [None, b"\xff" * 64], ids=["silent", "garbage"])
def test_a_scheduler_that_accepts_but_is_no_scheduler_is_one_line_within_the_deadline(
    monkeypatch, cli_run, answer
):
    """A server that accepts the connection and never answers, or answers with garbage, is
    refused in one line within the connect deadline, never a hang or a traceback."""
    pytest.importorskip("distributed")
    import socket
    import threading
    import time

    from softmax_core.dask import cluster

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            if answer:
                conn.sendall(answer * 1000)

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setattr(cluster, "CONNECT_DEADLINE_S", 0.5)
    monkeypatch.setenv("SOFTMAX_DASK_SCHEDULER", f"tcp://127.0.0.1:{server.getsockname()[1]}")
    start = time.monotonic()
    code, _, err = cli_run("info", "--backend", "dask")
    assert time.monotonic() - start < 12
    assert code == 1 and len(err.splitlines()) == 1 and "cannot reach the Dask scheduler" in err
    server.close()
    for conn in held:
        conn.close()


@pytest.mark.slow
def test_ctrl_c_during_a_dask_point_is_one_line(tmp_path):
    """Ctrl-C while a point computes on a Dask cluster ends in the one 'interrupted' line: the
    client's background tasks, cut short, log nothing; the worker processes, which a terminal's
    Ctrl-C reaches too (it goes to the whole process group), print nothing; a second Ctrl-C
    while the command closes its cluster is ignored."""
    pytest.importorskip("distributed")
    import os
    import signal
    import subprocess
    import time

    # Ctrl-C is Python's KeyboardInterrupt there even where pytest itself ignores SIGINT (a
    # background job of a shell), which its children inherit; the machine's parallelism probe
    # (seconds of busy processes, before the measuring) is not what is tested
    cli = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from softmax_core.dask import metrics; "
        "metrics.parallelism = lambda: {'processes': 1, 'speedup': 1.0, 'load_average_1min': 0}; "
        "sys.argv[0] = 'softmax-bench'; runpy.run_module('softmax_core.cli', run_name='__main__')"
    )
    argv = [sys.executable, "-c", cli, "scale", "--rows", "400000", "--workers", "1"]
    argv += ["--no-numpy", "--kinds", "gradient", "--data", "stream", "--rounds", "20"]
    argv += ["--time-budget", "600"]  # never skipped, even where a loaded machine predicts slow
    proc = subprocess.Popen(
        [*argv, "--out", str(tmp_path / "s")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a process group of its own, as a terminal's command has
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "s" / "environment.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # the sweep has begun measuring
    time.sleep(1)  # well inside a point's calls, each gathering 400,000 streamed rows
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert proc.returncode == 130 and lines[-1].startswith("softmax-bench scale: interrupted")
    assert "Traceback" not in err.decode() and "exception" not in err.decode().lower()


def test_ctrl_c_while_a_local_cluster_starts_waits_for_it_then_closes_it(monkeypatch):
    """A Ctrl-C that lands while a LocalCluster starts is held until it has started, then the
    cluster is closed and the interrupt goes on: a cluster cut short half-way leaves distributed's
    exit hook a traceback to print."""
    distributed = pytest.importorskip("distributed")
    import os
    import signal

    from softmax_core.dask.cluster import start_session

    events = []

    class Starting:
        def __init__(self, **settings):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, half-way through the start-up
            events.append("started")

        def close(self):
            events.append("cluster closed")

    class Client:
        def __init__(self, cluster, **settings):
            events.append("client")

        def close(self):
            events.append("client closed")

    monkeypatch.setattr(distributed, "LocalCluster", Starting)
    monkeypatch.setattr(distributed, "Client", Client)
    monkeypatch.setattr("softmax_core.dask.cluster._cores", lambda: 2)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in the command
    try:
        with pytest.raises(KeyboardInterrupt):
            start_session(None, 1)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert events == ["started", "client", "client closed", "cluster closed"]


@pytest.mark.slow
def test_a_command_closes_the_clusters_it_started_and_no_other(monkeypatch, cli_run):
    """Before it returns, while a Ctrl-C is still the command's: at exit a Ctrl-C cut
    distributed's closing short (a traceback, exit 0); a session its caller had open stays."""
    import signal

    from softmax_core.cli import commands
    from softmax_core.dask import cluster

    closed = []

    class Session:
        def __init__(self, name):
            self.name = name

        def close(self):
            closed.append((self.name, signal.getsignal(signal.SIGINT).__name__))
            cluster._SESSIONS.pop(self.name)

    monkeypatch.setattr(cluster, "_SESSIONS", {"callers": Session("callers")})

    def info(args):
        cluster._SESSIONS["command's"] = Session("command's")
        return 0

    monkeypatch.setitem(commands.COMMANDS, "info", info)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in the command
    try:
        assert cli_run("info")[0] == 0
    finally:
        signal.signal(signal.SIGINT, previous)
    assert closed == [("command's", "stop")] and list(cluster._SESSIONS) == ["callers"]


def test_a_second_signal_while_a_cluster_starts_is_not_held(monkeypatch):
    """A start that does not end can still be stopped: the second Ctrl-C (or SIGTERM) is taken
    at once, as the command takes it, and the handlers are those before."""
    import signal

    from softmax_core.dask.cluster import ctrl_c_held

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), ctrl_c_held() as held:
            take = signal.getsignal(signal.SIGINT)  # what a Ctrl-C runs now
            take(signal.SIGINT, None)
            assert held == [signal.SIGINT]
            take(signal.SIGINT, None)
            raise AssertionError("the second signal was held")
        assert len(held) == 2 and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_processes_started_while_ctrl_c_is_held_do_not_take_it(tmp_path):
    """Worker processes started under :func:`ctrl_c_held` (a LocalCluster's, a pool's) keep
    running on a Ctrl-C, which their parent alone takes, and a Ctrl-C that lands meanwhile is
    held, not lost; in a fresh process, where starting multiprocessing's resource tracker
    unblocks SIGINT in the thread that starts it."""
    import subprocess

    script = """
import multiprocessing as mp, os, signal, sys, time
from softmax_core.dask.cluster import ctrl_c_held

if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with ctrl_c_held() as held:
        child = mp.get_context("spawn").Process(target=time.sleep, args=(30,))
        child.start()
        os.kill(os.getpid(), signal.SIGINT)
    time.sleep(1)  # the child is up
    os.kill(child.pid, signal.SIGINT)
    time.sleep(0.5)
    print(held == [signal.SIGINT], child.is_alive(), signal.getsignal(signal.SIGINT).__name__)
    child.terminate()
"""
    (tmp_path / "held.py").write_text(script)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "held.py")], capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.split() == ["True", "True", "default_int_handler"], proc.stderr


def test_a_local_cluster_of_more_workers_than_cores_is_refused(monkeypatch, cli_run):
    pytest.importorskip("distributed")
    monkeypatch.delenv("SOFTMAX_DASK_SCHEDULER", raising=False)
    monkeypatch.setenv("SOFTMAX_DASK_WORKERS", "1000")
    code, _, err = cli_run("info", "--backend", "dask")
    assert code == 1 and "more than this machine's" in err and len(err.splitlines()) == 1


def test_scale_resume_goes_on_at_the_runs_own_rounds_and_refuses_others_before_it_probes(
    cli_run, tmp_path, monkeypatch
):
    """A scale run begun with --rounds 5: ``--resume`` alone measures at 5, ``--rounds 3`` is
    refused in one line before the parallelism probe's seconds."""
    import contextlib
    import json

    from softmax_core.backends import dask as dask_backend
    from softmax_core.dask import metrics as dask_metrics
    from softmax_core.errors import InputError
    from softmax_core.runs import sweep
    from softmax_core.runs.resultformat import COLUMNS

    env = {"dask_clusters": {"1": {"workers": 1}}, "grid": {"rounds": 5}, "git_commit": "0" * 40}
    (tmp_path / "environment.json").write_text(json.dumps(env))
    (tmp_path / "results.csv").write_text(",".join(COLUMNS) + "\n")  # stopped before a row
    monkeypatch.setattr(dask_metrics, "parallelism", lambda: pytest.fail("probed"))
    code, out, err = cli_run(
        "scale", "--resume", "--rounds", "3", "--workers", "1", "--out", tmp_path
    )
    assert code == 1 and "begun with --rounds 5, not 3" in err and len(err.splitlines()) == 1
    code, out, err = cli_run("scale", "--resume", "--workers", "1", "--out", tmp_path)
    assert code == 1 and "git checkout 000000000000" in err and out == ""  # another commit's
    env.pop("git_commit")
    (tmp_path / "environment.json").write_text(json.dumps(env))

    given = []

    def run_sweep(*args, rounds, **kw):
        given.append(rounds)
        raise InputError("measured")

    monkeypatch.setattr(dask_metrics, "parallelism", lambda: {"processes": 1, "speedup": 1.0})
    monkeypatch.setattr(dask_backend, "session", lambda *a: contextlib.nullcontext(a))
    monkeypatch.setattr(sweep, "run_sweep", run_sweep)
    code, out, err = cli_run("scale", "--resume", "--workers", "1", "--out", tmp_path)
    assert given == [5] and "measured" in err


def _scale_recorded(monkeypatch):
    """scale up to its sweep, which records the grid and settings it is given and stops."""
    import contextlib

    from softmax_core.backends import dask as dask_backend
    from softmax_core.dask import metrics as dask_metrics
    from softmax_core.errors import InputError
    from softmax_core.runs import sweep

    grids, records = [], []

    def run_sweep(grid, *args, settings=None, **kw):
        grids.append(grid)
        records.append(settings)
        raise InputError("measured")

    monkeypatch.setattr(dask_metrics, "parallelism", lambda: {"processes": 1, "speedup": 1.0})
    monkeypatch.setattr(dask_backend, "session", lambda *a: contextlib.nullcontext(a))
    monkeypatch.setattr(sweep, "run_sweep", run_sweep)
    return grids, records


SCALE_SMALL = ["--rows", "3000", "--chunk-rows", "1000", "--features", "16", "--kinds", "gradient"]


def _scale_run_begun(folder, scale) -> None:
    """A scale run stopped before its first row, its record's ``scale`` as given."""
    import json

    from softmax_core.runs.resultformat import COLUMNS

    folder.mkdir(exist_ok=True)
    env = {"dask_clusters": {"1": {"workers": 1}}} | ({} if scale is None else {"scale": scale})
    (folder / "environment.json").write_text(json.dumps(env))
    (folder / "results.csv").write_text(",".join(COLUMNS) + "\n")


def test_scale_resume_goes_on_with_the_grid_the_run_began_with(cli_run, tmp_path, monkeypatch):
    """A scale run records its grid's options: ``--resume`` alone measures that grid (not the
    default one into the same folder), an option given replaces its own."""
    import json

    grids, records = _scale_recorded(monkeypatch)
    code, _, err = cli_run("scale", *SCALE_SMALL, "--workers", "1,1", "--out", tmp_path / "new")
    assert code == 1 and "measured" in err and grids[-1].workers == (0, 1)  # each count once
    options = records[-1]["scale"]
    assert options["rows"] == [3000] and options["kinds"] == ["gradient"]
    assert options["classes"] == 10 and options["cluster"] == "local" and options["numpy"]
    _scale_run_begun(tmp_path, json.loads(json.dumps(options)))
    code, _, err = cli_run("scale", "--resume", "--out", tmp_path)
    began = grids[-1]
    assert code == 1 and "measured" in err and len(grids) == 2
    assert began.batches == (3000,) and began.features == (16,)
    assert began.chunk_rows == (1000,) and began.epochs_on == "none" and began.workers == (0, 1)
    code, _, err = cli_run("scale", "--resume", "--features", "32", "--no-numpy", "--out", tmp_path)
    assert code == 1 and "measured" in err, err
    assert grids[-1].features == (32,) and grids[-1].batches == (3000,)
    assert grids[-1].workers == (1,) and records[-1]["scale"]["features"] == 32
    _scale_run_begun(tmp_path, {**options, "numpy": "FALSE"})
    assert cli_run("scale", "--resume", "--out", tmp_path)[0] == 1 and grids[-1].workers == (1,)


NO_RECORD = "keeps no record of the grid its scale run began with"


@pytest.mark.parametrize(
    "scale, needle",
    [
        (None, NO_RECORD),  # none recorded
        ("garbage", NO_RECORD),
        ({}, NO_RECORD),
        ({"features": None}, "its scale --features: missing; fix: give --features with --resume"),
        ({"rows": [0]}, "its scale --rows: must be a positive whole number, got '0'; fix:"),
        ({"features": "1" * 20 + "\n" * 3}, "its scale --features: must be at most 10^18"),
        ({"numpy": "maybe"}, "fix: give --numpy or --no-numpy with --resume"),
        ({"cluster": "scheduler"}, "measured on the Dask cluster at --scheduler, not on"),
        ({"cluster": ["x"]}, "measured on ['x'], not on LocalClusters of its own; fix: resume"),
    ],
)
def test_a_scale_run_without_a_readable_record_of_its_grid_is_not_resumed(
    cli_run, tmp_path, monkeypatch, scale, needle
):
    """A resumed scale run whose record of its grid is missing, damaged, or of another kind of
    cluster is refused in one line, before anything is measured (its default grid would be
    measured into the run's folder)."""
    grids, records = _scale_recorded(monkeypatch)
    cli_run("scale", *SCALE_SMALL, "--workers", "1", "--out", tmp_path / "new")
    if isinstance(scale, dict) and scale:  # one option of a whole record damaged
        scale = {**records[-1]["scale"], **scale}
    _scale_run_begun(tmp_path, scale)
    code, out, err = cli_run("scale", "--resume", "--out", tmp_path)
    assert code == 1 and len(err.splitlines()) == 1 and len(grids) == 1, err
    assert needle in err, err
    if needle == NO_RECORD:  # the grid given again resumes it
        code, _, err = cli_run("scale", "--resume", *SCALE_SMALL, "--out", tmp_path)
        assert "measured" in err and grids[-1].features == (16,) and grids[-1].classes == (10,)


def test_a_local_scale_run_is_not_resumed_on_the_scheduler_of_the_environment(
    cli_run, tmp_path, monkeypatch
):
    grids, records = _scale_recorded(monkeypatch)
    cli_run("scale", *SCALE_SMALL, "--workers", "1", "--out", tmp_path / "new")
    _scale_run_begun(tmp_path, records[-1]["scale"])
    monkeypatch.setenv("SOFTMAX_DASK_SCHEDULER", "tcp://127.0.0.1:1")
    code, out, err = cli_run("scale", "--resume", "--out", tmp_path)
    assert code == 1 and len(err.splitlines()) == 1 and len(grids) == 1, err
    assert "fix: resume it without --scheduler, and $SOFTMAX_DASK_SCHEDULER unset" in err


def test_scale_without_dask_says_so_before_it_probes(cli_run, tmp_path, monkeypatch):
    import sys

    from softmax_core.dask import metrics as dask_metrics

    monkeypatch.setattr(dask_metrics, "parallelism", lambda: pytest.fail("probed"))
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed: ImportError
    code, out, err = cli_run("scale", "--workers", "1", "--out", tmp_path / "s")
    assert code == 1 and "pip install -e '.[dask]'" in err and len(err.splitlines()) == 1
