"""The sweep: guard, append-as-you-go results, rounds, resume after a kill, lock, budgets.

Tests of the orchestration pass ``fake_measuring`` (tests/conftest.py): made-up samples and
probe, the same every time, in milliseconds.  A few sweeps measure for real, on tiny grids.
"""

import csv
import dataclasses
import io
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import fake_probe

from softmax_core import get_backend
from softmax_core.measure.timemodel import TimeModel
from softmax_core.runs import resultformat
from softmax_core.runs.cases import Case, Grid
from softmax_core.runs.guard import (
    CALLS_PER_POINT,
    DEFAULT_ROUNDS,
    Guard,
    default_memory_budget,
    samples_per_round,
)
from softmax_core.runs.resultformat import COLUMNS, SchemaError
from softmax_core.runs.sweep import run_sweep

# reports here are read, not looked at: they are not rendered
pytestmark = pytest.mark.usefixtures("unrendered_plots")

GB = 10**9
#: the peak memory of every point of a sweep measured through the fakes
FAKE_PEAK_BYTES = 4096


def one_point(**kw):
    """A grid of one small structured gradient point."""
    return Grid(
        **{
            "methods": ("structured",),
            "batches": (2,),
            "classes": (3,),
            "features": (5,),
            "epochs_on": "none",
            "time_budget_s": 0.5,
            **kw,
        }
    )


#: four points: two methods, two batches
TINY = one_point(methods=("structured", "naive"), batches=(1, 4))
#: two points, where the orchestration needs no more
PAIR = one_point(batches=(1, 4))
#: the command line of one small point, no report
ONE_POINT_ARGS = (
    "--no-report --methods structured --batch 2 --classes 3 --features 4 --epochs-on none"
)


@pytest.fixture
def cpu():
    return get_backend("cpu", "numpy")


@pytest.fixture
def sweep(cpu, fake_measuring, monkeypatch):
    """``sweep(grid, out, **kw)``: run_sweep on numpy, measuring through the fakes, quietly.

    The peak memory is made up too (:data:`FAKE_PEAK_BYTES`): the backend's own count
    collects the garbage of the whole test process for every point."""
    monkeypatch.setattr(cpu, "peak_bytes", lambda fn, *args: FAKE_PEAK_BYTES)

    def run(grid, out, **kw):
        kw = {"memory_budget": GB, **fake_measuring, **kw}  # progress: lines, into a log
        return run_sweep(grid, cpu, out, **kw)

    return run


@pytest.fixture
def cli(monkeypatch, fake_measuring, cli_run):
    """``cli(*argv)``: ``cli_run`` (tests/conftest.py), its sweeps measuring through the fakes."""
    for name, fake in fake_measuring.items():
        monkeypatch.setitem(run_sweep.__kwdefaults__, name, fake)
    return cli_run


def read_results(path):
    return resultformat.read_results(path).rows


def keys(rows):
    """Each row's point, less its thread count (see the threads-axis tests)."""
    return [
        (
            r["kind"],
            r["method"],
            int(r["batch"]),
            int(r["features"]),
            int(r["classes"]),
            r["dtype"],
            r["data"],
        )
        for r in rows
    ]


def model(gemm=1e9, copy=1e9, **kw):
    return TimeModel(gemm, copy, **kw)


def test_sweep_writes_one_row_per_point_and_environment(tmp_path, cpu, sweep, fake_measuring):
    out = sweep(TINY, tmp_path / "s")
    rows = read_results(out / "results.csv")
    assert sorted(keys(rows)) == sorted(c.key[:7] for c in TINY.cases())
    assert list(rows[0]) == list(COLUMNS)
    assert (out / ".lock").read_text() == ""  # released: no process id is left in it
    assert {r["status"] for r in rows} == {"ok"}
    for r in rows:
        assert float(r["time_ci_low_s"]) <= float(r["time_median_s"]) <= float(r["time_ci_high_s"])
        assert (
            int(r["repeats"]) >= 5 and int(r["loops"]) >= 1 and r["rounds"] == str(DEFAULT_ROUNDS)
        )
        assert r["stable"] in ("True", "False") and float(r["time_first_s"]) > 0
        assert float(r["predicted_time_s"]) > 0 and int(r["peak_bytes"]) == FAKE_PEAK_BYTES
        assert float(r["samples_per_s"]) == pytest.approx(
            int(r["samples"]) / float(r["time_median_s"])
        )
    env = json.loads((out / "environment.json").read_text())
    assert env["backend"]["label"] == "numpy-cpu"
    assert env["probe"] == fake_measuring["probe"](cpu)
    assert env["machine"]["cpu_model"] and env["versions"]["numpy"]
    assert any(p.get("user_api") == "blas" for p in env["blas"])
    assert "structured" in " ".join(env["time_model"]["fitted"])
    assert len(fake_measuring["measure"].calls) == len(TINY.cases()) * DEFAULT_ROUNDS


def test_existing_results_are_never_overwritten(tmp_path, sweep):
    sweep(PAIR, tmp_path)
    before = (tmp_path / "results.csv").read_bytes()
    with pytest.raises(ValueError, match="--resume"):
        sweep(PAIR, tmp_path)
    assert (tmp_path / "results.csv").read_bytes() == before


def test_memory_guard_skips_with_reason_and_prediction(tmp_path, sweep, fake_measuring):
    grid = one_point(methods=("naive_batched",), classes=(50,), features=(100,))
    sweep(grid, tmp_path, memory_budget=1_000_000)
    assert fake_measuring["measure"].calls == []  # skipped, not run
    (row,) = read_results(tmp_path / "results.csv")
    assert row["status"] == "skipped"
    assert row["reason"].startswith("needs ") and "budget 1.00 MB" in row["reason"]
    assert int(row["predicted_bytes"]) == int(
        Case("gradient", "naive_batched", 2, 100, 50).cost.peak_bytes
    )
    assert row["time_median_s"] == ""


def test_lecture_case_is_skipped_for_memory_not_run(cpu):
    guard = Guard(default_memory_budget(cpu), 20, model())
    reason = guard.skip_reason(Case("gradient", "naive_batched", 96, 1000, 1000))
    assert reason is not None and reason.startswith("needs 384 GB")


def test_time_guard_checks_the_first_point_of_a_method():
    """Defect: the guard had no estimate before a method's first point, so it ran anything."""
    guard = Guard(10**12, 1.0, model())
    first = Case("gradient", "naive", 32, 1000, 500)  # ~15 s a call on the reference machine
    reason = guard.skip_reason(first)
    assert reason is not None and "time budget 1 s" in reason


def test_time_model_learns_and_never_extrapolates_faster_than_the_largest_point():
    guard = Guard(10**12, 1.0, model())
    small, big = Case("gradient", "naive", 1, 50, 50), Case("gradient", "naive", 64, 50, 50)
    slowdown = 0.05 / guard.model.roofline_s(small)
    guard.model.record(small, seconds=0.05)
    predicted = guard.model.predict(big)
    assert predicted >= 0.9 * slowdown * guard.model.roofline_s(big)
    assert "time budget 1 s" in guard.skip_reason(big)


def test_time_model_fits_overhead_plus_work():
    m = model()
    cases = [Case("gradient", "structured", b, 100, 10) for b in (1, 8, 64, 512)]
    for c in cases:  # t = 50 µs + 3 x roofline + its array operations' least cost, exactly
        m.record(c, 5e-5 + 3 * m.roofline_s(c) + m.dispatch_s(c))
    a, b = m.params("gradient/structured")
    assert a == pytest.approx(5e-5, rel=1e-6) and b == pytest.approx(3, rel=1e-6)
    probe = Case("gradient", "structured", 4096, 100, 10)
    expected = 5e-5 + 3 * m.roofline_s(probe) + m.dispatch_s(probe)
    assert m.predict(probe) == pytest.approx(expected, rel=1e-6)


def test_one_failing_point_does_not_end_the_sweep(tmp_path, sweep, monkeypatch):
    original = Case.prepare

    def flaky(self, backend, data=None):
        if self.method == "naive" and self.batch == 4:
            raise RuntimeError("simulated failure")
        return original(self, backend, data)

    monkeypatch.setattr(Case, "prepare", flaky)
    sweep(TINY, tmp_path)
    rows = read_results(tmp_path / "results.csv")
    errors = [r for r in rows if r["status"] == "error"]
    assert len(errors) == 1 and errors[0]["reason"] == "RuntimeError: simulated failure"
    assert len(rows) == len(TINY.cases())


def test_a_call_that_fails_while_measured_is_an_error_row(tmp_path, sweep, monkeypatch):
    original = Case.prepare

    def failing_call(*args):
        raise MemoryError("simulated: the call ran out of memory")

    def prepare(self, backend, data=None):
        fn, args = original(self, backend, data)
        return (failing_call, args) if self.method == "naive" else (fn, args)

    monkeypatch.setattr(Case, "prepare", prepare)
    sweep(TINY, tmp_path)
    rows = read_results(tmp_path / "results.csv")
    assert {r["method"]: r["status"] for r in rows} == {"naive": "error", "structured": "ok"}
    reasons = {r["reason"] for r in rows if r["status"] == "error"}
    assert reasons == {"MemoryError: simulated: the call ran out of memory"}


def test_resume_drops_a_half_written_line(tmp_path, sweep):
    sweep(TINY, tmp_path)
    path = tmp_path / "results.csv"
    lines = path.read_text().splitlines(keepends=True)
    # lose the last three points, and leave half of the third-last line
    path.write_text("".join(lines[:-3]) + lines[-3][:25])
    sweep(TINY, tmp_path, resume=True)
    rows = read_results(path)
    assert Counter(keys(rows)) == Counter(c.key[:7] for c in TINY.cases())
    assert path.read_text().count("\n") == len(TINY.cases()) + 1


@pytest.mark.slow
def test_sweep_killed_midway_then_resumed_has_every_point_once(tmp_path):
    """SIGKILL the CLI sweep after a few points; --resume completes it exactly."""
    out = tmp_path / "killed"
    args = [
        sys.executable,
        "-m",
        "softmax_core.cli",
        "sweep",
        "--out",
        str(out),
        "--no-report",
        "--methods",
        "naive,structured",
        "--batch",
        "1,8,32",
        "--classes",
        "20,120",
        "--features",
        "60",
        "--epochs-on",
        "none",
        "--memory-budget",
        "2GB",
        "--time-budget",
        "1",
        "--rounds",
        "1",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.csv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if results.exists() and results.read_text().count("\n") >= 4:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(read_results(results))
    expected = 2 * 3 * 2
    assert 3 <= done_before < expected, "the kill should land mid-way"
    subprocess.run(args + ["--resume"], check=True, timeout=120, capture_output=True)
    rows = read_results(results)
    assert len(rows) == expected
    assert len(set(keys(rows))) == expected
    assert len({r["run_id"] for r in rows}) == 2


@pytest.mark.parametrize(
    "ctrl_c", [signal.default_int_handler, signal.SIG_IGN], ids=["ctrl-c", "background-job"]
)
def test_sigterm_stops_a_sweep_as_ctrl_c_does(tmp_path, cli, monkeypatch, fake_measuring, ctrl_c):
    """SIGTERM (a batch system's wall time, ``kill``) mid-way: one line, exit 143, the rows of
    the finished points kept and --resume completes the grid; also where Ctrl-C is ignored (a
    shell script's background job).  The command leaves the signal handlers as it found them."""
    measure, calls = fake_measuring["measure"], []

    def terminated_at_the_third_point(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            if not callable(signal.getsignal(signal.SIGTERM)):  # it would end pytest
                raise AssertionError("the sweep does not take SIGTERM")
            os.kill(os.getpid(), signal.SIGTERM)
        return measure(*args, **kwargs)

    monkeypatch.setitem(run_sweep.__kwdefaults__, "measure", terminated_at_the_third_point)
    argv = [*ONE_POINT_ARGS.split(), "--batch", "1,2,3,4", "--rounds", "1", "--out", tmp_path]
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, ctrl_c)  # as the command may find it
    try:
        code, _, err = cli("sweep", *argv)
        after = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    kept = "the rows of 2 finished points are kept: add --resume to go on"
    assert code == 143 and err == f"softmax-bench sweep: terminated; {kept}\n", err
    assert after == {signal.SIGINT: ctrl_c, signal.SIGTERM: handlers[signal.SIGTERM]}
    assert len(read_results(tmp_path / "results.csv")) == 2
    monkeypatch.setitem(run_sweep.__kwdefaults__, "measure", measure)
    code, _, err = cli("sweep", "--resume", "--rounds", "1", "--out", tmp_path)
    assert code == 0, err
    assert len(set(keys(read_results(tmp_path / "results.csv")))) == 4


def test_rounds_pool_samples_into_one_row_per_point(tmp_path, sweep, fake_measuring):
    grid = one_point(batches=(1, 4), time_budget_s=2)
    sweep(grid, tmp_path, rounds=3)
    rows = read_results(tmp_path / "results.csv")
    assert len(rows) == 2
    assert all(r["rounds"] == "3" and int(r["repeats"]) == 3 * samples_per_round(3) for r in rows)
    calls = fake_measuring["measure"].calls
    # interleaved: round 1 of both points, then round 2 of both, ...; only round 1 is cold
    assert [c["cold"] for c in calls] == [True, True] + [False] * 4
    assert all(c["min_samples"] == samples_per_round(3) for c in calls)


def test_resume_refuses_a_foreign_header_and_touches_nothing(tmp_path, sweep):
    sweep(PAIR, tmp_path)
    path = tmp_path / "results.csv"
    text = path.read_text()
    foreign = text.replace("time_first_s,", "", 1)  # an older version's header
    path.write_text(foreign)
    with pytest.raises(SchemaError, match="missing time_first_s"):
        sweep(PAIR, tmp_path, resume=True)
    assert path.read_text() == foreign


def test_resume_with_other_rounds_is_refused_and_touches_nothing(tmp_path, sweep):
    """Rows pooled from 1 round beside rows pooled from 3 would compare unlike with unlike."""
    sweep(PAIR, tmp_path, rounds=1)
    path = tmp_path / "results.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(
        "".join(lines[:-1]) + lines[-1][:40]
    )  # one point half-written: still to measure
    before = path.read_bytes()
    with pytest.raises(ValueError, match="--rounds 1, not 3; fix: resume with --rounds 1"):
        sweep(PAIR, tmp_path, resume=True, rounds=3)
    assert path.read_bytes() == before  # refused before the half line is repaired
    sweep(PAIR, tmp_path, resume=True, rounds=1)
    assert [r["rounds"] for r in read_results(path)] == ["1", "1"]


@pytest.mark.parametrize("value", ["", "abc", "3.0", "0"])
def test_resume_names_a_rounds_cell_that_is_not_a_whole_number(tmp_path, sweep, value):
    sweep(PAIR, tmp_path, rounds=1)
    path = tmp_path / "results.csv"
    rows = read_results(path)
    rows[1]["rounds"] = value
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    before = path.read_bytes()
    with pytest.raises(
        ValueError, match=f"results.csv:3: rounds is {value!r}, not a whole number; fix: delete"
    ):
        sweep(PAIR, tmp_path, resume=True, rounds=1)
    assert path.read_bytes() == before


def test_resume_reports_damaged_rows_and_measures_them_again(tmp_path, sweep):
    sweep(PAIR, tmp_path)
    path = tmp_path / "results.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace(",ok,", ",garbage,", 1)
    path.write_text("".join(lines))
    log = io.StringIO()
    sweep(PAIR, tmp_path, resume=True, log=log)
    assert "results.csv:3: damaged row dropped" in log.getvalue()
    ok = [r for r in read_results(path) if r["status"] == "ok"]
    assert Counter(keys(ok)) == Counter(c.key[:7] for c in PAIR.cases())


def test_a_second_sweep_on_the_same_folder_is_refused_while_the_first_runs(tmp_path, sweep):
    from softmax_core.runs.folder import folder_lock

    with folder_lock(tmp_path):
        with pytest.raises(ValueError, match=f"in use by another sweep \\(pid {os.getpid()}\\)"):
            sweep(PAIR, tmp_path, resume=True)
    assert not (tmp_path / "results.csv").exists()
    sweep(PAIR, tmp_path, resume=True)  # released
    assert len(read_results(tmp_path / "results.csv")) == len(PAIR.cases())


def test_a_killed_sweeps_lock_does_not_block(tmp_path, sweep):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from pathlib import Path\n"
                "from softmax_core.runs.folder import folder_lock\n"
                f"with folder_lock(Path({str(tmp_path)!r})):\n"
                "    print('held', flush=True); time.sleep(60)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(ValueError, match="in use"):
        sweep(PAIR, tmp_path)
    holder.kill()
    holder.wait()
    sweep(PAIR, tmp_path, resume=True)
    assert len(read_results(tmp_path / "results.csv")) == len(PAIR.cases())


def test_resume_runs_skipped_points_that_now_fit_the_budget(tmp_path, sweep):
    grid = one_point(time_budget_s=2)
    sweep(grid, tmp_path, memory_budget=1)
    sweep(grid, tmp_path, memory_budget=1, resume=True)  # still too small
    assert [r["status"] for r in read_results(tmp_path / "results.csv")] == ["skipped"]
    sweep(grid, tmp_path, resume=True)
    assert [r["status"] for r in read_results(tmp_path / "results.csv")] == ["skipped", "ok"]


def test_a_resumed_sweep_counts_the_points_it_kept(tmp_path, sweep):
    """A resume that re-checks skipped points said '0 ok', as if nothing had been measured."""
    grid = one_point(batches=(2, 4096), time_budget_s=2)
    big = Case("gradient", "structured", 4096, 5, 3)
    budget = big.cost.peak_bytes + big.input_bytes - 1  # the small point fits, the big one does not
    sweep(grid, tmp_path, memory_budget=budget)
    sweep(grid, tmp_path, memory_budget=budget, resume=True)
    text = run_sweep.last_summary.text()
    assert (
        text.startswith("0 ok (0 not stable), 1 skipped") and "(1 ok measured before, kept)" in text
    )


def test_duplicate_grid_values_are_one_point():
    grid = Grid(
        methods=("structured", "structured"),
        batches=(1, 1, 8),
        classes=(3,),
        features=(5, 5),
        epochs_on="none",
    )
    assert [c.batch for c in grid.cases()] == [1, 8]


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="classes must be >= 2"):
        Grid(classes=(1, 10))


@pytest.mark.parametrize("budget", [float("inf"), float("nan"), -1, 10**18])
def test_memory_budget_beyond_the_device_or_not_finite_is_refused(tmp_path, sweep, budget):
    with pytest.raises(ValueError, match="memory budget"):
        sweep(TINY, tmp_path, memory_budget=budget)
    assert not (tmp_path / "results.csv").exists()


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_resume_with_a_corrupt_environment_names_the_file(tmp_path, sweep, content):
    sweep(PAIR, tmp_path)
    (tmp_path / "environment.json").write_text(content)
    with pytest.raises(ValueError, match="environment.json"):
        sweep(PAIR, tmp_path, resume=True)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--batch", "0"], "--batch"),
        (["--classes", "ten"], "--classes"),
        (["--methods", "fast"], "fast"),
        (["--memory-budget", "lots"], "--memory-budget"),
        (["--time-budget", "-3"], "--time-budget"),
        (["--memory-budget", "inf"], "--memory-budget"),
        (["--memory-budget", "1e400"], "--memory-budget"),
        (["--memory-budget", "nan"], "--memory-budget"),
        (["--memory-budget", "100TB"], "memory budget"),
        (["--classes", "1"], "at least 2 classes"),
        (["--rounds", "0"], "--rounds"),
    ],
)
def test_cli_sweep_bad_arguments_one_line(tmp_path, cli, argv, needle):
    code, _, err = cli("sweep", "--out", tmp_path, *argv)
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and needle in err
    assert "Traceback" not in err
    assert not (tmp_path / "results.csv").exists()


@pytest.mark.slow
def test_cli_sweep_measures_for_real(tmp_path):
    """The real command's rows and probe (its report, drawn for real: the reference set's
    end-to-end test in tests/test_suite.py)."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "softmax_core.cli",
            "sweep",
            "--no-report",
            "--out",
            str(tmp_path),
            "--methods",
            "structured,naive",
            "--batch",
            "256",
            "--classes",
            "3,9",
            "--features",
            "8",
            "--epochs-on",
            "synthetic",
            "--time-budget",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 1 * 2 + 1
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert [int(r["samples"]) for r in epochs] == [60000]
    # on a loaded machine the guard may skip an epoch for time, or stop it at the budget:
    # then it says why
    assert all(
        float(r["samples_per_s"]) > 0
        if r["status"] == "ok"
        else r["reason"].startswith(("predicted", "stopped at its time budget"))
        for r in epochs
    )
    gradients = [r for r in rows if r["kind"] == "gradient"]
    # the naive k = 9 is predicted from the naive k = 3, which a loaded machine may slow enough
    # to put it past the budget: then it is skipped and says why
    assert all(r["status"] == "ok" for r in gradients if r["method"] == "structured"), gradients
    assert all(r["status"] == "ok" or r["reason"].startswith("predicted") for r in gradients)
    for r in (r for r in gradients if r["status"] == "ok"):  # real numbers
        assert r["rounds"] == str(DEFAULT_ROUNDS)
        assert float(r["time_ci_low_s"]) <= float(r["time_median_s"]) <= float(r["time_ci_high_s"])
        # each round takes its least samples (more where the calls are short)
        assert int(r["repeats"]) >= DEFAULT_ROUNDS * samples_per_round(DEFAULT_ROUNDS)
        assert int(r["loops"]) >= 1
        assert float(r["time_first_s"]) > 0 and float(r["others_cpu"]) >= 0
        assert int(r["peak_bytes"]) > 0
    probe = json.loads((tmp_path / "environment.json").read_text())["probe"]
    assert probe["gemm_gflops"] > 0 and probe["copy_gbps"] > 0


def test_the_sweep_command_writes_its_report(tmp_path, cli):
    """Unless --no-report: report.md and the plots beside results.csv."""
    argv = "--methods structured --batch 2 --classes 3,9 --features 4 --epochs-on none"
    code, out, err = cli("sweep", *argv.split(), "--out", tmp_path / "s")
    assert code == 0, err
    assert (tmp_path / "s" / "report.md").is_file() and f"report: {tmp_path / 's'}" in out
    assert (tmp_path / "s" / "time_vs_classes.png").is_file()


def test_a_sweep_stopped_before_it_began_leaves_no_run_and_nothing_to_resume(
    tmp_path, cli, monkeypatch, fake_measuring
):
    """Ctrl-C before a sweep wrote anything: a new run's folder goes (out/sweep/latest leads
    back to the run before it), a folder given with --out stays, and --resume there says in one
    line that there is nothing to resume: the grid the stopped run was given is not recorded."""
    monkeypatch.chdir(tmp_path)
    assert cli("sweep", *ONE_POINT_ARGS.split())[0] == 0
    latest = tmp_path / "out" / "sweep" / "latest"
    first = latest.resolve()

    def stopped(backend):
        raise KeyboardInterrupt

    monkeypatch.setitem(run_sweep.__kwdefaults__, "probe", stopped)
    for out in ([], ["--out", "mine"]):
        code, _, err = cli("sweep", *ONE_POINT_ARGS.split(), *out)
        assert code == 130, err
        assert err == "softmax-bench sweep: interrupted; nothing was measured yet\n"
    assert [p for p in latest.parent.iterdir() if not p.is_symlink()] == [first]
    assert latest.resolve() == first and [p.name for p in (tmp_path / "mine").iterdir()] == [
        ".lock"
    ]
    monkeypatch.setitem(run_sweep.__kwdefaults__, "probe", fake_measuring["probe"])
    code, out, err = cli("sweep", "--resume", "--out", "mine")
    assert code == 1 and len(err.splitlines()) == 1 and "nothing to resume in mine" in err, err
    assert "run without --resume" in err and [p.name for p in (tmp_path / "mine").iterdir()] == [
        ".lock"
    ]


def test_a_sweep_stopped_while_it_draws_its_report_says_its_results_are_complete(
    tmp_path, cli, monkeypatch
):
    from softmax_core import report

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "make_report", stopped)
    argv = ONE_POINT_ARGS.replace("--no-report ", "").split()
    code, _, err = cli("sweep", *argv, "--out", tmp_path / "s")
    complete = f"the results are complete: `softmax-bench report {tmp_path / 's'}` draws"
    assert code == 130 and err.startswith(f"softmax-bench sweep: interrupted; {complete}"), err
    assert len(read_results(tmp_path / "s" / "results.csv")) == 1


def test_the_main_command_works_every_time_it_is_run(tmp_path, cli, monkeypatch):
    """Defect: a second run of the README's sweep stopped at 'results.csv already exists'."""
    monkeypatch.chdir(tmp_path)
    args = ["sweep", *ONE_POINT_ARGS.split()]
    said = []
    for _ in range(2):
        code, out, err = cli(*args)
        assert code == 0, err
        assert "1 ok" in out
        said.append(out.splitlines()[0])  # where it measures, said before it measures
    runs = sorted(p for p in (tmp_path / "out" / "sweep").iterdir() if not p.is_symlink())
    assert len(runs) == 2 and all((p / "results.csv").is_file() for p in runs)
    assert said == [f"sweep: measuring into {os.path.join('out', 'sweep', p.name)}" for p in runs]
    assert (tmp_path / "out" / "sweep" / "latest").resolve() == runs[-1].resolve()
    code, out, err = cli(*args, "--resume")
    assert code == 0, err
    assert "nothing left to measure" in out
    assert len(read_results(runs[-1] / "results.csv")) == 1  # nothing was missing


def test_progress_on_a_terminal_and_plain_lines_otherwise(monkeypatch):
    from softmax_core.runs import progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Terminal(), io.StringIO()
    monkeypatch.setattr(progress, "PLAIN_PROGRESS_EVERY_S", 0.0)
    for stream in (tty, pipe):
        bar = progress.Progress([1.0, 3.0, 1.0], stream, None)
        for label in ("a", "b", "c"):
            bar.advance(label)
        bar.close()
    assert "3/3 c" in tty.getvalue() and "100%" in tty.getvalue()
    assert "[sweep] 2/3 point-rounds" in pipe.getvalue() and "\r" not in pipe.getvalue()
    for stream in (Terminal(), io.StringIO()):  # --no-progress: nothing at all
        bar = progress.Progress([1.0, 3.0, 1.0], stream, False)
        bar.advance("a")
        bar.close()
        assert stream.getvalue() == ""


def test_progress_on_a_terminal_of_no_width_is_plain_lines_and_the_bar_has_no_stray_comma(
    monkeypatch,
):
    """A terminal that reports 0 columns (``script`` without a size) gets the plain lines, not
    a bar of no width that shows nothing; the bar's text starts with the point's count."""
    import os
    import pty

    from softmax_core.runs import progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty = Terminal()
    bar = progress.Progress([1.0, 1.0], tty, None)
    bar.advance("a")
    bar.close()
    assert "| 1/2 a [" in tty.getvalue() and "| ," not in tty.getvalue()
    monkeypatch.setattr(progress, "PLAIN_PROGRESS_EVERY_S", 0.0)
    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as narrow:
        assert os.get_terminal_size(follower).columns == 0
        bar = progress.Progress([1.0, 1.0], narrow, None)
        bar.advance("a")
        bar.close()
        narrow.flush()
        assert os.read(leader, 1000).decode().startswith("[sweep] 0/2 point-rounds")
    os.close(leader)


def test_the_sweep_times_itself_and_its_progress_by_its_clock(tmp_path, sweep):
    """Plain progress lines come every PLAIN_PROGRESS_EVERY_S of the clock given; the summary's
    wall time is the clock's last reading less its first."""
    readings = []
    ticks = itertools.count(0.0, 20.0)  # each reading 20 s after the one before

    def clock():
        readings.append(next(ticks))
        return readings[-1]

    log = io.StringIO()
    sweep(PAIR, tmp_path, rounds=2, log=log, clock=clock)
    lines = log.getvalue().splitlines()
    assert len(lines) == 4 and lines[0].startswith("[sweep] 0/4 point-rounds, 20 s, now: ")
    assert lines[-1].startswith("[sweep] 3/4 point-rounds, ")
    summary = run_sweep.last_summary
    assert summary.wall_s == readings[-1] - readings[0] > 0
    assert f"in {summary.wall_s:.0f} s;" in summary.text()


def test_output_files_get_the_usual_permissions(tmp_path, sweep):
    """Defect: files written atomically (environment.json, report, plots) were mode 0600."""
    old = os.umask(0o022)
    try:
        sweep(PAIR, tmp_path)
    finally:
        os.umask(old)
    for name in ("results.csv", "environment.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_resume_keeps_a_whole_last_row_without_its_newline(tmp_path, sweep, fake_measuring):
    sweep(PAIR, tmp_path)
    path = tmp_path / "results.csv"
    before = read_results(path)
    path.write_text(path.read_text().rstrip("\n"))  # a whole row, only its newline lost
    calls = len(fake_measuring["measure"].calls)
    sweep(PAIR, tmp_path, resume=True)
    assert read_results(path) == before  # kept, nothing measured again
    assert len(fake_measuring["measure"].calls) == calls


def test_too_many_rounds_are_refused_before_anything_is_written(tmp_path, sweep):
    with pytest.raises(ValueError, match="rounds must be a whole number from 1 to 20"):
        sweep(TINY, tmp_path / "r", rounds=10**20)
    assert not (tmp_path / "r").exists()


def test_a_latest_that_is_not_our_link_is_refused_in_one_line(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out" / "sweep").mkdir(parents=True)
    (tmp_path / "out" / "sweep" / "latest").write_text("mine")
    for extra in ([], ["--resume"]):
        code, _, err = cli("sweep", *ONE_POINT_ARGS.split(), *extra)
        assert code == 1 and len(err.strip().splitlines()) == 1
        assert "is not the link softmax-bench keeps" in err
    assert (tmp_path / "out" / "sweep" / "latest").read_text() == "mine"


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--threads", "100000"], "--threads"),
        (["--threads", "99999999999999999999"], "--threads"),
        (["--rounds", "21"], "--rounds"),
    ],
)
def test_cli_refuses_threads_beyond_the_cores_and_too_many_rounds(tmp_path, cli, argv, needle):
    code, _, err = cli("sweep", "--out", tmp_path / "x", *argv)
    assert code == 2 and needle in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_calls_a_point_makes_with_rounds():
    from softmax_core.runs.guard import calls_per_point, samples_per_round

    assert calls_per_point(1) == CALLS_PER_POINT == 1 + 1 + 5 + 1  # cold, warm-up, 5 samples, peak
    assert samples_per_round(3) == 2 and calls_per_point(3) == 1 + 3 + 6 + 1
    assert calls_per_point(3, long=True) == 1 + 1 + 6 + 1  # one warm-up for a long call


def test_the_default_sweep_keeps_the_lectures_naive_point_at_n_k_1000():
    """The lecture's headline point (one 4 GB Jacobian, ~1 s a call on the 2-core VM with one
    BLAS thread; the time model predicted 1.4 s a call there when quiet and 2.33 s while other
    jobs loaded it, when a 20 s budget skipped it) must fit the default time budget with the
    default rounds, with room for a busy machine."""
    from softmax_core.runs.cases import DEFAULT_GRID
    from softmax_core.runs.guard import DEFAULT_ROUNDS, LONG_CALL_S, calls_per_point

    per_call = 2.5
    assert per_call >= LONG_CALL_S
    assert per_call * calls_per_point(DEFAULT_ROUNDS, long=True) <= DEFAULT_GRID.time_budget_s


def test_the_prediction_is_made_before_the_point_ran(tmp_path, sweep):
    """With several rounds the row is written after the last one: its predicted time must still
    be the model's guess before round 1, not the point's own round-1 median."""
    grid = one_point()
    out = sweep(grid, tmp_path / "p", rounds=3)
    row = read_results(out / "results.csv")[0]
    probe = json.loads((out / "environment.json").read_text())["probe"]
    fresh = TimeModel(probe["gemm_gflops"] * 1e9, probe["copy_gbps"] * 1e9)  # nothing learnt yet
    assert float(row["predicted_time_s"]) == pytest.approx(fresh.predict(grid.cases()[0]))
    assert float(row["predicted_time_s"]) != pytest.approx(float(row["time_median_s"]))


def test_a_skip_for_time_at_a_tiny_budget_states_its_numbers():
    guard = Guard(10**9, 0.001, model())
    reason = guard.skip_reason(Case("gradient", "structured", 8, 50, 10), calls=11)
    assert "predicted 0.0 s" not in reason and reason.startswith("predicted ")
    shown = float(reason.split()[1])
    assert shown > 0.001


def test_each_point_makes_room_for_its_need_within_the_memory_budget(
    tmp_path, sweep, fake_measuring, monkeypatch
):
    """Memory kept from earlier points is handed back before a point's cold call, and before
    a later round that could push the process past the budget (host_memory.make_room)."""
    from softmax_core.runs import point as sweep_module

    asked, events = [], []
    monkeypatch.setattr(
        sweep_module, "make_room", lambda need, budget: asked.append((need, budget)) or False
    )
    monkeypatch.setattr(sweep_module, "release_retained_memory", lambda: events.append("release"))
    real_prepare, fake = Case.prepare, fake_measuring["measure"]
    monkeypatch.setattr(
        Case, "prepare", lambda self, *a: events.append("prepare") or real_prepare(self, *a)
    )
    grid = one_point()
    sweep(
        grid,
        tmp_path / "r",
        rounds=3,
        measure=lambda *a, **kw: events.append("measure") or fake(*a, **kw),
    )
    case = grid.cases()[0]
    # after prepare (whose check call maps the call's memory), right before the cold call
    assert events == ["prepare", "release", "measure"] + ["prepare", "measure"] * 2
    need = case.cost.peak_bytes + 2 * case.input_bytes  # its inputs and the host data
    assert asked == [(need, 10**9)] * 2  # rounds 2 and 3


@pytest.mark.parametrize("handed_back", [False, True])
def test_a_later_round_warms_a_long_call_up_again_after_its_memory_was_handed_back(
    tmp_path, sweep, make_fake_measuring, monkeypatch, handed_back
):
    from softmax_core.runs import point as sweep_module

    monkeypatch.setattr(sweep_module, "make_room", lambda need, budget: handed_back)
    one_second_calls = make_fake_measuring(seconds=1.0)
    sweep(one_point(time_budget_s=1000), tmp_path / "r", rounds=2, **one_second_calls)
    seen = [c["warm_up"] for c in one_second_calls["measure"].calls]
    assert seen == [True, handed_back]  # a 1 s call skips the later warm-up only on kept pages


# --------------------------------------------------------------------------- the threads axis


def test_every_row_records_the_threads_its_point_ran_with(tmp_path, sweep, fake_measuring):
    from softmax_core.measure.session import blas_threads

    out = sweep(TINY, tmp_path / "s")
    rows = read_results(out / "results.csv")
    assert {r["threads"] for r in rows} == {str(blas_threads())}


def test_threads_are_an_axis_measured_side_by_side(tmp_path, sweep, fake_measuring):
    """--threads 1,2: each point at 1 and at 2 threads, one after the other, each call under
    its own limit, each row saying which; the pools are as they were afterwards."""
    from softmax_core.measure.session import blas_threads

    before = blas_threads()
    grid = dataclasses.replace(TINY, threads=(1, 2))
    out = sweep(grid, tmp_path / "s")
    rows = read_results(out / "results.csv")
    said = [(r["threads"], r["method"], r["batch"], r["status"], r["reason"]) for r in rows]
    assert Counter(r["threads"] for r in rows) == {
        "1": len(TINY.cases()),
        "2": len(TINY.cases()),
    }, said
    measured = fake_measuring["measure"].calls
    assert [c["blas_threads"] for c in measured[:2]] == [1, 2]  # a point's counts in turn
    assert blas_threads() == before
    assert Counter(keys(rows)) == Counter({k: 2 for k in keys(rows)})


def test_a_resume_keeps_each_thread_count_apart(tmp_path, sweep, fake_measuring):
    grid = dataclasses.replace(TINY, threads=(1,))
    out = sweep(grid, tmp_path / "s")
    sweep(dataclasses.replace(TINY, threads=(1, 2)), out, resume=True)
    rows = read_results(out / "results.csv")
    said = [(r["threads"], r["method"], r["batch"], r["status"], r["reason"]) for r in rows]
    assert Counter(r["threads"] for r in rows) == {
        "1": len(TINY.cases()),
        "2": len(TINY.cases()),
    }, said


def test_the_probe_runs_at_the_fewest_threads_of_the_grid(tmp_path, sweep, fake_measuring):
    from softmax_core.measure.session import blas_threads

    seen = []

    def probe(backend):
        seen.append(blas_threads())
        return fake_measuring["probe"](backend)

    sweep(dataclasses.replace(TINY, threads=(2, 1)), tmp_path / "s", probe=probe)
    assert seen == [1]


def test_a_resume_without_threads_keeps_the_runs_thread_count(tmp_path, sweep, fake_measuring):
    out = sweep(dataclasses.replace(PAIR, threads=(1,)), tmp_path / "s")
    with open(out / "results.csv") as fh:
        lines = fh.readlines()
    (out / "results.csv").write_text("".join(lines[:-1]))  # one point left to measure
    sweep(PAIR, out, resume=True)  # no threads given
    rows = read_results(out / "results.csv")
    assert {r["threads"] for r in rows} == {"1"} and len(rows) == len(PAIR.cases())
    assert fake_measuring["measure"].calls[-1]["blas_threads"] == 1


def test_a_refused_resume_leaves_the_folder_as_it_was(tmp_path, sweep, fake_measuring):
    out = sweep(TINY, tmp_path / "s")
    path = out / "results.csv"
    path.write_bytes(path.read_bytes() + b"gradient,naive,1")  # a half-written last line
    env = json.loads((out / "environment.json").read_text())
    (out / "environment.json").write_text(json.dumps({**env, "format_version": 99}))
    before = path.read_bytes()
    with pytest.raises(ValueError, match="format 99"):
        sweep(TINY, out, resume=True)
    assert path.read_bytes() == before


# --------------------------------------------------------------------------- runs never mix

SMALL = "--no-report --methods structured --batch 2,3 --classes 3 --features 4 --epochs-on none"


@pytest.mark.parametrize(
    "begun, resumed, needle",
    [
        (["--backend", "array_api_strict"], [], "array_api_strict-cpu, not numpy-cpu"),
        (["--threads", "1"], ["--threads", "2"], "at 1 thread (BLAS), not 2; fix: resume with"),
        (["--threads", "1,2"], ["--threads", "1"], "not 1; fix: resume with --threads 1,2 (or"),
        ([], ["--dtype", "float64"], "in float32, not float64"),
    ],
)
def test_a_resume_with_other_settings_is_refused_and_touches_nothing(
    tmp_path, cli, begun, resumed, needle
):
    """Resuming with another backend (even with environment.json deleted), BLAS thread count or
    dtype than the rows were measured with is refused in one line that names the difference."""
    out = tmp_path / "run"
    code, _, err = cli("sweep", *SMALL.split(), "--out", out, *begun)
    assert code == 0, err
    (out / "environment.json").unlink()
    before = (out / "results.csv").read_bytes()
    code, _, err = cli("sweep", *SMALL.split(), "--out", out, "--resume", *resumed)
    assert code == 1 and len(err.splitlines()) == 1 and needle in err, err
    assert (out / "results.csv").read_bytes() == before
    assert not (out / "environment.json").exists()


@pytest.mark.parametrize(
    "where, value, needle",
    [
        (("machine", "cpu_model"), "Intel Xeon Platinum 8480", "cpu_model 'Intel Xeon Platinum"),
        (("machine", "cpu_cores_logical"), 56, "machine.cpu_cores_logical 56, here"),
        (("versions", "numpy"), "1.26.4", "numpy '1.26.4', here"),
        (("git_commit",), "0123" * 10, "fix: git checkout 012301230123, and resume it with"),
        (("git_changes",), "sha256:0123", "resume it with the uncommitted changes it began"),
        (("versions", "pandas"), "0.1", None),  # draws, does not compute: the same run
        (("versions", "dask"), "0.1", None),  # not this NumPy run's library
    ],
)
def test_a_resume_elsewhere_or_with_other_code_is_refused_and_touches_nothing(
    tmp_path, cli, fake_measuring, where, value, needle
):
    """Rows measured on another machine, with other library versions or at another commit are
    another run: a resume that would pool them is refused in one line naming the difference."""
    out = tmp_path / "run"
    code, _, err = cli("sweep", *SMALL.split(), "--out", out)
    assert code == 0, err
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(lines[:-1]))  # one point left to measure
    env = json.loads((out / "environment.json").read_text())
    *parents, last = where
    part = env
    for key in parents:
        part = part[key]
    part[last] = value
    (out / "environment.json").write_text(json.dumps(env))
    files = ("results.csv", "environment.json")
    before = [(out / name).read_bytes() for name in files]
    code, _, err = cli("sweep", *SMALL.split(), "--out", out, "--resume")
    if needle is None:
        assert code == 0, err
        return
    assert code == 1 and len(err.splitlines()) == 1 and needle in err, err
    assert "measured elsewhere or with other code" in err and "choose another --out" in err
    assert [(out / name).read_bytes() for name in files] == before


def test_resume_alone_finishes_the_grid_the_run_began_with(tmp_path, cli, fake_measuring):
    """``--resume`` without grid options measures the run's own grid, not the default one; an
    option given replaces its setting."""
    out = tmp_path / "run"
    assert cli("sweep", *SMALL.split(), "--dtype", "float64", "--out", out)[0] == 0
    calls = len(fake_measuring["measure"].calls)
    code, _, err = cli("sweep", "--no-report", "--out", out, "--resume")
    assert code == 0, err
    assert len(fake_measuring["measure"].calls) == calls  # nothing left to measure
    assert len(read_results(out / "results.csv")) == 2
    assert cli("sweep", "--no-report", "--out", out, "--resume", "--batch", "2,5")[0] == 0
    rows = read_results(out / "results.csv")
    assert [r["batch"] for r in rows] == ["2", "3", "5"] and {r["dtype"] for r in rows} == {
        "float64"
    }
    env = json.loads((out / "environment.json").read_text())
    env["grid"]["batches"] = [0]  # no grid
    (out / "environment.json").write_text(json.dumps(env))
    code, _, err = cli("sweep", "--no-report", "--out", out, "--resume")
    assert code == 1 and len(err.splitlines()) == 1 and "its grid: batches" in err, err
    assert cli("sweep", "--no-report", "--out", out, "--resume", "--batch", "2")[0] == 0


def test_a_run_stopped_before_its_first_row_resumes_at_its_own_threads_and_rounds(
    tmp_path, cli, fake_measuring
):
    """A run stopped once environment.json is written and before any row: ``--resume`` alone
    measures at the run's --threads and --rounds, not the defaults; other ones are refused in
    one line, and a thread count added is measured beside the run's own."""
    out = tmp_path / "run"
    assert cli("sweep", *SMALL.split(), "--threads", "1", "--rounds", "2", "--out", out)[0] == 0
    (out / "results.csv").unlink()  # as if stopped before its first row
    for other, needle in (
        (["--threads", "2"], "begun with --threads 1, not --threads 2"),
        (["--rounds", "3"], "begun with --rounds 2, not 3"),
    ):
        code, _, err = cli("sweep", "--no-report", "--out", out, "--resume", *other)
        assert code == 1 and len(err.splitlines()) == 1 and needle in err, err
        assert not (out / "results.csv").exists()
    assert cli("sweep", "--no-report", "--out", out, "--resume")[0] == 0
    rows = read_results(out / "results.csv")
    assert {(r["threads"], r["rounds"]) for r in rows} == {("1", "2")} and len(rows) == 2
    assert cli("sweep", "--no-report", "--out", out, "--resume", "--threads", "2,1")[0] == 0
    assert Counter(r["threads"] for r in read_results(out / "results.csv")) == {"1": 2, "2": 2}
    code, _, err = cli("sweep", "--no-report", "--out", out, "--resume")  # the grown axis kept
    assert code == 0 and len(read_results(out / "results.csv")) == 4, err
    env = json.loads((out / "environment.json").read_text())
    cores = os.cpu_count() or 1
    for threads, rounds in (([1, cores + 1], 2), (["x"], 0)):
        env["grid"].update(threads=threads, rounds=rounds)
        (out / "environment.json").write_text(json.dumps(env))
        code, _, err = cli("sweep", "--no-report", "--out", out, "--resume", "--rounds", "2")
        if threads[0] == 1:  # begun on a machine of more cores: refused, not measured
            assert code == 1 and f"more than this machine's {cores} cores" in err, err
        else:  # a damaged record: the rows decide, and they hold 2 rounds
            assert code == 0, err


@pytest.mark.parametrize("rate", ["x", None, [1], {}, 0, -5, True])
def test_a_resume_whose_probe_is_no_rate_probes_again_and_keeps_the_record(
    tmp_path, cli, fake_measuring, rate
):
    out = tmp_path / "run"
    assert cli("sweep", *SMALL.split(), "--out", out)[0] == 0
    env = json.loads((out / "environment.json").read_text())
    env["probe"]["gemm_gflops"] = rate
    (out / "environment.json").write_text(json.dumps(env))
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(lines[:-1]))  # one point left
    code, _, err = cli("sweep", "--no-report", "--out", out, "--resume")
    assert code == 0, err
    again = json.loads((out / "environment.json").read_text())
    assert again["probe"]["gemm_gflops"] == fake_probe(None)["gemm_gflops"]
    assert {k: v for k, v in again.items() if k != "probe"} == {
        k: v for k, v in env.items() if k != "probe"
    }
    assert len(read_results(out / "results.csv")) == 2


def test_a_resume_with_no_record_of_its_grid_asks_for_it(tmp_path, cli, fake_measuring):
    """With environment.json deleted (as a damaged one's fix says), ``--resume`` alone would
    measure the default grid into a run of another: it asks for the grid's options."""
    out = tmp_path / "run"
    assert cli("sweep", *SMALL.split(), "--out", out)[0] == 0
    (out / "environment.json").unlink()
    before = (out / "results.csv").read_bytes()
    for other in ([], ["--time-budget", "2"]):  # a budget alone is no grid
        code, _, err = cli("sweep", "--no-report", "--out", out, "--resume", *other)
        assert code == 1 and len(err.splitlines()) == 1 and "keeps no record of the grid" in err
    assert (out / "results.csv").read_bytes() == before
    assert cli("sweep", *SMALL.split(), "--out", out, "--resume")[0] == 0


@pytest.mark.parametrize(
    "name, needle",
    [("environment.json", "move it away"), ("report.md", "not written by softmax-bench report")],
)
def test_a_sweep_into_someone_elses_files_is_refused_before_it_measures(
    tmp_path, cli, fake_measuring, name, needle
):
    (tmp_path / name).write_text("someone else's")
    argv = SMALL.replace("--no-report", "").split()
    code, _, err = cli("sweep", *argv, "--out", tmp_path)
    assert code == 1 and needle in err and len(err.splitlines()) == 1, err
    assert not fake_measuring["measure"].calls and not (tmp_path / "results.csv").exists()
    assert (tmp_path / name).read_text() == "someone else's"


def test_a_resume_refuses_a_quote_that_is_never_closed_and_appends_nothing(
    tmp_path, cli, fake_measuring
):
    """An unclosed quote makes the rest of results.csv one field: rows appended after it would
    be read as part of it, and each resume would measure everything again."""
    out = tmp_path / "run"
    assert cli("sweep", *SMALL.split(), "--out", out)[0] == 0
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text(lines[0] + '"' + "".join(lines[1:]))
    before = (out / "results.csv").read_bytes()
    code, _, err = cli("sweep", "--no-report", "--out", out, "--resume")
    assert code == 1 and len(err.splitlines()) == 1 and "results.csv:2: a quote" in err, err
    assert (out / "results.csv").read_bytes() == before
    (out / "results.csv").write_text(lines[0] + '"a ""quoted"" reason"' + "".join(lines[1:]))
    assert cli("sweep", "--no-report", "--out", out, "--resume")[0] == 0  # closed quotes: read


def test_a_resume_reads_line_ends_and_quotes_as_csv_does(tmp_path, cli, fake_measuring):
    """Carriage returns only: refused in one line, the file untouched (cutting its "last line"
    would cut it all); a stray carriage return in a half-written last line: that line dropped;
    a quote inside an unquoted field is text, not a quote left open."""
    out = tmp_path / "run"
    assert cli("sweep", *SMALL.split(), "--out", out)[0] == 0
    path = out / "results.csv"
    text = path.read_bytes()
    path.write_bytes(text.replace(b"\n", b"\r"))
    code, _, err = cli("sweep", "--no-report", "--out", out, "--resume")
    assert code == 1 and len(err.splitlines()) == 1 and "only carriage returns" in err, err
    assert path.read_bytes() == text.replace(b"\n", b"\r")
    path.write_bytes(text + b'\r"')
    code, _, err = cli("sweep", "--no-report", "--out", out, "--resume")
    assert code == 0 and path.read_bytes() == text, err
    lines = text.decode().splitlines(keepends=True)
    reason = lines[1].rstrip("\n").split(",")
    reason[COLUMNS.index("reason")] = 'note 5" wide'
    (out / "results.csv").write_text(lines[0] + ",".join(reason) + "\n" + "".join(lines[2:]))
    code, _, err = cli("sweep", "--no-report", "--out", out, "--resume")
    assert code == 0, err


def test_a_point_that_failed_and_is_now_skipped_says_so_in_its_last_row(tmp_path, cli):
    out = tmp_path / "run"
    assert cli("sweep", *SMALL.split(), "--out", out)[0] == 0
    rows = read_results(out / "results.csv")
    rows[0].update(status="error", reason="MemoryError: once")
    with (out / "results.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    code, _, err = cli("sweep", *SMALL.split(), "--out", out, "--resume", "--time-budget", "1e-9")
    assert code == 0, err
    last = read_results(out / "results.csv")[-1]
    assert (last["batch"], last["status"]) == (rows[0]["batch"], "skipped")


def test_a_sweep_that_finds_results_once_it_holds_the_folder_refuses_them(
    tmp_path, sweep, monkeypatch
):
    """The never-overwrite check holds once the folder's lock is taken: a sweep that wrote
    results.csv while this one waited for the folder is not appended to."""
    import contextlib

    from softmax_core.runs import sweep as sweep_module

    real_lock = sweep_module.folder_lock

    @contextlib.contextmanager
    def lock_after_another_sweep(out):
        (out / "results.csv").write_text("theirs\n")
        with real_lock(out):
            yield

    monkeypatch.setattr(sweep_module, "folder_lock", lock_after_another_sweep)
    with pytest.raises(ValueError, match="already exists"):
        sweep(TINY, tmp_path / "r")
    assert (tmp_path / "r" / "results.csv").read_text() == "theirs\n"


def test_latest_that_cannot_be_moved_is_said_and_a_refused_run_leaves_nothing(
    tmp_path, cli, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    assert cli("sweep", *SMALL.split())[0] == 0
    first = (tmp_path / "out" / "sweep" / "latest").resolve()
    # a run refused before it measures leaves no folder and latest on the run before it
    code, _, err = cli("sweep", *SMALL.split(), "--rounds", "20", "--memory-budget", "1e30")
    assert code == 1
    assert [p.resolve() for p in (tmp_path / "out" / "sweep").iterdir()] == [first, first]

    def no_links(*args):
        raise PermissionError("links not allowed here")

    monkeypatch.setattr(os, "symlink", no_links)
    code, _, err = cli("sweep", *SMALL.split())
    assert code == 0 and "still points at another run" in err and "--resume --out" in err


# --------------------------------------------------------------------------- the time budget


def test_the_time_model_counts_the_naive_loops_operations(tmp_path, cli):
    """A naive gradient over a million tiny examples does little arithmetic and 13 million
    array operations: predicted at seconds, it is skipped under a 5 s budget, not run."""
    code, _, err = cli(
        "sweep",
        *"--no-report --methods naive --batch 1000000 --classes 2 --features 1".split(),
        *"--epochs-on none --rounds 1 --time-budget 5 --out".split(),
        tmp_path / "r",
    )
    assert code == 0, err
    (row,) = read_results(tmp_path / "r" / "results.csv")
    assert row["status"] == "skipped" and row["reason"].startswith("predicted")
    assert float(row["predicted_time_s"]) >= 5


def test_a_point_the_model_underrates_is_stopped_at_its_time_budget(tmp_path, sweep):
    """Whatever the time model says, a point's rounds together stop at the time budget, and
    its row says so; the model learns from it, so the next, larger point is skipped."""

    def endless(fn, *args, **kwargs):
        while True:  # a Python-level loop, as the naive gradient's over its examples
            time.sleep(0.01)

    grid = one_point(batches=(2, 3))
    start = time.monotonic()
    out = sweep(grid, tmp_path / "r", rounds=2, measure=endless)
    assert time.monotonic() - start < 0.5 * len(grid.cases()) + 3
    first, second = read_results(out / "results.csv")
    assert first["status"] == "skipped" and "stopped at its time budget" in first["reason"]
    assert second["status"] == "skipped" and second["reason"].startswith("predicted")


def test_a_point_whose_stop_is_dropped_is_stopped_again(tmp_path, sweep):
    """The stop lands where Python drops exceptions (a weak reference's callback, a finaliser:
    printed as 'Exception ignored'): the point is stopped again, still near its budget, and
    nothing is left armed after it."""
    from softmax_core.runs.point import STOP_AGAIN_S, Overrun

    dropped = []

    def drops_the_first_stop(fn, *args, **kwargs):
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                time.sleep(0.01)
            except Overrun:
                if dropped:
                    raise
                dropped.append(time.monotonic())  # as 'Exception ignored in ...' does
        raise RuntimeError("not stopped again")

    start = time.monotonic()
    out = sweep(
        one_point(time_budget_s=0.5), tmp_path / "r", rounds=1, measure=drops_the_first_stop
    )
    (row,) = read_results(out / "results.csv")
    assert dropped and row["status"] == "skipped" and "stopped at its time budget" in row["reason"]
    assert time.monotonic() - start < 0.5 + STOP_AGAIN_S + 3
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_stop_that_arrives_as_the_block_ends_leaves_nothing_behind(monkeypatch):
    """A stop delivered while the deadline disarms (its signal pending as the block ends):
    no timer left running, the handler given back, no stop outside the block."""
    from softmax_core.runs.point import deadline

    real, before = signal.setitimer, signal.getsignal(signal.SIGALRM)

    def setitimer(which, seconds, *interval):
        old = real(which, seconds, *interval)
        handler = signal.getsignal(signal.SIGALRM)
        if seconds == 0 and callable(handler):  # the disarm: a pending stop is delivered now
            handler(signal.SIGALRM, None)
        return old

    monkeypatch.setattr(signal, "setitimer", setitimer)
    try:
        with deadline(60):
            pass
        left = signal.getitimer(signal.ITIMER_REAL)
        handler = signal.getsignal(signal.SIGALRM)
    finally:
        real(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)
    assert left == (0.0, 0.0) and handler is before


def test_a_stop_waits_while_the_garbage_collector_runs_its_callbacks():
    """distributed keeps state across a collection's start and stop callbacks: a stop raised
    inside one would be dropped and leave that state broken."""
    import gc

    from softmax_core.runs.point import Overrun, deadline

    finished = []

    def callback(phase, info):
        if phase == "start":
            end = time.monotonic() + 0.2
            while time.monotonic() < end:  # the stop comes due in here
                pass
            finished.append(phase)

    gc.callbacks.append(callback)
    try:
        with pytest.raises(Overrun):
            with deadline(0.05):
                gc.collect()
                end = time.monotonic() + 3
                while time.monotonic() < end:
                    time.sleep(0.01)
    finally:
        gc.callbacks.remove(callback)
    assert finished == ["start"]


def test_a_stop_dropped_in_a_finaliser_is_not_printed(monkeypatch):
    from softmax_core.runs.point import Overrun, deadline

    printed = []
    monkeypatch.setattr(sys, "unraisablehook", printed.append)

    class SlowToFree:
        def __del__(self):
            end = time.monotonic() + 0.2
            while time.monotonic() < end:  # the stop comes due in here, and Python drops it
                pass

    with pytest.raises(Overrun):
        with deadline(0.05):
            SlowToFree()
            end = time.monotonic() + 3
            while time.monotonic() < end:
                time.sleep(0.01)
    assert printed == []


def test_a_stop_a_library_turns_into_another_error_is_still_a_stop(tmp_path, sweep):
    """``inspect`` (and any ``except Exception`` that raises anew) turns the stop into another
    error: the point is still one stopped at its budget, not an error."""

    def rewraps(fn, *args, **kwargs):
        try:
            while True:
                time.sleep(0.01)
        except Exception as exc:
            raise TypeError("unsupported callable") from exc

    out = sweep(one_point(time_budget_s=0.3), tmp_path / "r", rounds=1, measure=rewraps)
    (row,) = read_results(out / "results.csv")
    assert row["status"] == "skipped" and "stopped at its time budget" in row["reason"], row


def test_a_point_stopped_in_a_later_round_says_what_its_rounds_took(
    tmp_path, sweep, fake_measuring
):
    """The reason counts the point's seconds over all its rounds, not only the last round's
    rest of the budget (which read as a point stopped after 0.2 s of a 25 s budget)."""
    fake = fake_measuring["measure"]

    def slow_then_endless(fn, *args, **kwargs):
        if not fake.calls:
            time.sleep(0.3)  # round 1: most of the budget
            return fake(fn, *args, **kwargs)
        while True:
            time.sleep(0.01)

    out = sweep(one_point(time_budget_s=0.5), tmp_path / "r", rounds=2, measure=slow_then_endless)
    (row,) = read_results(out / "results.csv")
    assert row["status"] == "skipped", row
    took = re.search(r"stopped at its time budget: ([0-9.]+) s of its 0.5 s", row["reason"])
    assert took and 0.45 <= float(took.group(1)) < 1.5, row["reason"]


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"batch": 0}, "batch must be a whole number"),
        ({"batch": 2.5}, "batch must be a whole number"),
        ({"batch": "8"}, "batch must be a whole number"),
        ({"features": None}, "features must be a whole number"),
        ({"classes": 1}, "classes must be a whole number >= 2"),
        ({"dtype": "int8"}, "float type"),
        ({"data": "stream", "method": "naive", "chunk_rows": 4}, "only the structured gradient"),
        ({"data": "stream"}, "give it chunk_rows"),
        ({"workers": -1}, "workers must be"),
    ],
)
def test_a_case_of_impossible_sizes_is_an_input_error(change, needle):
    from softmax_core.errors import InputError

    point = {"kind": "gradient", "method": "structured", "batch": 4, "features": 3, "classes": 3}
    with pytest.raises(InputError, match=needle):
        Case(**{**point, **change})


@pytest.mark.parametrize(
    "change",
    [
        {"workers": 5},
        {"chunk_rows": 1000},
        {"gradient_data": None},
        {"methods": None},
        {"time_budget_s": "5"},
        {"time_budget_s": None},
    ],
)
def test_a_grid_of_the_wrong_types_is_an_input_error(change):
    from softmax_core.errors import InputError

    with pytest.raises(InputError):
        Grid(**change)


def test_a_results_file_that_is_a_fifo_or_a_folder_is_one_line(tmp_path, cli_run):
    for kind in ("fifo", "folder"):
        folder = tmp_path / kind
        folder.mkdir()
        if kind == "fifo":
            os.mkfifo(folder / "results.csv")
        else:
            (folder / "results.csv").mkdir()
        code, _, err = cli_run("report", folder)
        assert code == 1 and "not a regular file" in err and len(err.splitlines()) == 1


def test_the_progress_of_a_skipped_point_says_skipped(tmp_path, sweep, monkeypatch):
    from softmax_core.runs import progress

    monkeypatch.setattr(progress, "PLAIN_PROGRESS_EVERY_S", 0.0)
    log = io.StringIO()
    sweep(one_point(time_budget_s=1e-9), tmp_path / "r", rounds=2, log=log)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and all(line.endswith(": skipped") for line in lines)


def test_the_memory_guard_counts_the_host_data_beside_the_points_own_copy(tmp_path, cli):
    """On the CPU a point holds its inputs twice (the host data kept for its next round, and
    the copy it computes on): a point whose call and one copy fit 2 GB, but not with both, is
    skipped, not run past the budget."""
    argv = "--no-report --methods structured --batch 300000 --features 1000 --classes 10"
    code, _, err = cli(
        "sweep", *argv.split(), "--epochs-on", "none", "--memory-budget", "2GB", "--out", tmp_path
    )
    assert code == 0, err
    (row,) = read_results(tmp_path / "results.csv")
    assert row["status"] == "skipped" and row["reason"].startswith("needs 2.")


def test_two_default_sweeps_begun_in_the_same_second_each_get_a_folder(tmp_path, cli, monkeypatch):
    """The first run's folder exists from the moment it is named, so a second run begun in the
    same second, while the first has not yet measured anything, gets a folder of its own."""
    import datetime
    import threading
    import types

    from softmax_core.cli import main
    from softmax_core.cli import sweep as cli_sweep
    from softmax_core.runs import sweep as sweep_module

    monkeypatch.chdir(tmp_path)
    second = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)

    frozen = types.SimpleNamespace(  # both runs read the same second
        timezone=datetime.timezone,
        datetime=types.SimpleNamespace(now=lambda tz=None: second),
    )
    monkeypatch.setattr(cli_sweep, "_dt", frozen)
    real, first_named, go_on = sweep_module.run_sweep, threading.Event(), threading.Event()

    def held_first(*args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            first_named.set()
            go_on.wait(30)  # the first run is named, and waits before it measures
        return real(*args, **kwargs)  # which sets the module's run_sweep.last_summary

    monkeypatch.setattr(sweep_module, "run_sweep", held_first)
    codes = []
    first = threading.Thread(target=lambda: codes.append(main(["sweep", *SMALL.split()])))
    first.start()
    assert first_named.wait(30)
    codes.append(main(["sweep", *SMALL.split()]))
    go_on.set()
    first.join(60)
    assert codes == [0, 0]
    runs = sorted(p.name for p in (tmp_path / "out" / "sweep").iterdir() if not p.is_symlink())
    assert len(runs) == 2 and runs[1] == runs[0] + "-2"


@pytest.mark.slow
def test_a_points_resident_memory_stays_within_the_guards_figure(tmp_path):
    """The memory guard's figure is what the process holds: a point whose inputs are 200 MB,
    run with the budget set to the guard's own figure, peaks within 10% of it above what the
    same sweep of a tiny point peaks at (the interpreter, its libraries, the machine probe)."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)"
    )

    def start(batch: int) -> tuple[subprocess.Popen, int]:
        point = Case("gradient", "structured", batch, 500, 10)
        need = Guard(10**12, 20.0, model()).memory_need(point)
        argv = [sys.executable, "-m", "softmax_core.cli", "sweep", "--methods", "structured"]
        argv += ["--batch", str(batch), "--features", "500", "--classes", "10"]
        argv += ["--epochs-on", "none", "--rounds", "1", "--no-report", "--time-budget", "10"]
        argv += ["--memory-budget", str(max(need, 10**6)), "--out", str(tmp_path / str(batch))]
        run = subprocess.Popen([sys.executable, "-c", probe, *argv], stdout=subprocess.PIPE)
        return run, need

    def peak_of(batch: int, started: tuple[subprocess.Popen, int]) -> tuple[int, int]:
        run, need = started
        out, _ = run.communicate(timeout=120)
        assert run.returncode == 0
        (row,) = read_results(tmp_path / str(batch) / "results.csv")
        assert row["status"] == "ok", row["reason"]
        return int(out.split()[-1]), need

    runs = {batch: start(batch) for batch in (2, 100_000)}  # side by side: peaks, not times
    try:
        (base, base_need), (peak, need) = (peak_of(b, started) for b, started in runs.items())
    finally:
        for run, _ in runs.values():
            run.kill()
            run.wait()
    assert peak - base <= 1.1 * (need - base_need), (peak - base, need - base_need)


def test_preparing_a_naive_point_makes_no_naive_call(monkeypatch, cpu):
    """The inputs are checked by a one-example structured gradient: a naive point's own call
    (seconds at n = k = 1000) is made only by the measuring loop, as the guard counts."""
    from softmax_core.model import softmax

    calls = []
    real = softmax._grad_naive_sum
    monkeypatch.setattr(softmax, "_grad_naive_sum", lambda *a: calls.append(1) or real(*a))
    fn, args = Case("gradient", "naive", 4, 6, 3).prepare(cpu)
    assert calls == []
    fn(*args)
    assert calls == [1]


def test_sizes_past_any_float_and_an_endless_budget_are_one_line(tmp_path, cli, monkeypatch):
    """A size whose cost is no float, or a budget no clock reaches, is refused before any folder
    is made (a new run's own under out/sweep too)."""
    monkeypatch.chdir(tmp_path)
    huge = "1" + "0" * 400
    code, _, err = cli("sweep", *SMALL.split(), "--features", f"4,{huge}")
    assert code == 2 and len(err.splitlines()) == 1 and "at most 10^18, got '1000" in err, err
    assert len(err) < 200
    assert list(tmp_path.iterdir()) == []
    for endless in (float("inf"), 1e300, 8 * 24 * 3600):
        with pytest.raises(ValueError, match="at most 604800"):
            Grid(time_budget_s=endless)
    assert Grid(time_budget_s=7 * 24 * 3600).time_budget_s == 604800


@pytest.mark.parametrize(
    "recorded, now, fix",
    [
        (
            {"git_changes": "none"},
            {"git_commit": "b" * 40, "git_changes": "sha256:1"},
            "git checkout aaaaaaaaaaaa, and resume it with no uncommitted changes",
        ),
        (
            {"git_changes": "sha256:1"},
            {"git_changes": "sha256:2"},
            "resume it with the uncommitted changes it began with",
        ),
        (
            {"git_changes": "sha256:1"},
            {"git_commit": None, "git_changes": None},
            "resume it in the checkout it began in, with git on PATH",
        ),
        (
            {"machine": {"cpu_model": "X"}},
            {"machine": {"cpu_model": "Y"}},
            "resume it where it began",
        ),
        ({"git_commit": None, "git_changes": None}, {}, "resume it where it began"),
        ({"git_changes": None}, {}, "resume it where it began"),
    ],
)
def test_a_resume_with_other_code_names_what_resumes_it(monkeypatch, tmp_path, recorded, now, fix):
    """Code that git cannot tell here (no git, a file it cannot read) is no match for the
    code a run recorded; the fix names the commit and the state of the working tree."""
    from softmax_core.errors import InputError
    from softmax_core.runs import envfile

    base = {"git_commit": "a" * 40, "git_changes": "none", "machine": {"cpu_model": "X"}}
    monkeypatch.setattr(envfile, "record", lambda backend: {**base, **now})
    with pytest.raises(InputError) as caught:
        envfile.check_same_machine(tmp_path, {**base, **recorded}, None)
    assert f"fix: {fix}, or choose another --out" in str(caught.value)
