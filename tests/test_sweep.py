"""The sweep: guard, append-as-you-go results, rounds, resume after a kill, lock, budgets."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from softmax_core import get_backend
from softmax_core.measure.timemodel import TimeModel
from softmax_core.runs import resultformat
from softmax_core.runs.cases import (
    CALLS_PER_POINT,
    DEFAULT_ROUNDS,
    Case,
    Grid,
    Guard,
    default_memory_budget,
)
from softmax_core.runs.resultformat import COLUMNS, SchemaError
from softmax_core.runs.sweep import run_sweep

TINY = Grid(
    methods=("structured", "naive"),
    batches=(1, 4),
    classes=(3, 8),
    features=(5,),
    epochs_on="none",
    time_budget_s=0.5,
)


@pytest.fixture
def cpu():
    return get_backend("cpu", "numpy")


def read_results(path):
    return resultformat.read_results(path).rows


def keys(rows):
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


def test_sweep_writes_one_row_per_point_and_environment(tmp_path, cpu):
    out = run_sweep(TINY, cpu, tmp_path / "s", memory_budget=10**9, progress=False)
    rows = read_results(out / "results.csv")
    assert sorted(keys(rows)) == sorted(c.key for c in TINY.cases())
    assert list(rows[0]) == list(COLUMNS)
    assert {r["status"] for r in rows} == {"ok"}
    for r in rows:
        assert float(r["time_ci_low_s"]) <= float(r["time_median_s"]) <= float(r["time_ci_high_s"])
        assert (
            int(r["repeats"]) >= 5 and int(r["loops"]) >= 1 and r["rounds"] == str(DEFAULT_ROUNDS)
        )
        assert r["stable"] in ("True", "False") and float(r["time_first_s"]) > 0
        assert float(r["predicted_time_s"]) > 0
        assert float(r["samples_per_s"]) == pytest.approx(
            int(r["samples"]) / float(r["time_median_s"])
        )
    env = json.loads((out / "environment.json").read_text())
    assert env["backend"]["label"] == "numpy-cpu"
    assert env["probe"]["gemm_gflops"] > 0
    assert env["machine"]["cpu_model"] and env["versions"]["numpy"]
    assert any(p.get("user_api") == "blas" for p in env["blas"])
    assert "structured" in " ".join(env["time_model"]["fitted"])


def test_existing_results_are_never_overwritten(tmp_path, cpu):
    run_sweep(TINY, cpu, tmp_path, memory_budget=10**9, progress=False)
    before = (tmp_path / "results.csv").read_bytes()
    with pytest.raises(ValueError, match="--resume"):
        run_sweep(TINY, cpu, tmp_path, memory_budget=10**9, progress=False)
    assert (tmp_path / "results.csv").read_bytes() == before


def test_memory_guard_skips_with_reason_and_prediction(tmp_path, cpu):
    grid = Grid(
        methods=("naive_batched",),
        batches=(2,),
        classes=(50,),
        features=(100,),
        epochs_on="none",
        time_budget_s=0.5,
    )
    run_sweep(grid, cpu, tmp_path, memory_budget=1_000_000, progress=False)
    (row,) = read_results(tmp_path / "results.csv")
    assert row["status"] == "skipped"
    assert row["reason"].startswith("needs ") and "budget 1.0 MB" in row["reason"]
    assert int(row["predicted_bytes"]) == int(
        Case("gradient", "naive_batched", 2, 100, 50).cost.peak_bytes
    )
    assert row["time_median_s"] == ""


def test_lecture_case_is_skipped_for_memory_not_run(cpu):
    guard = Guard(default_memory_budget(cpu), 20, model())
    reason = guard.skip_reason(Case("gradient", "naive_batched", 96, 1000, 1000))
    assert reason is not None and reason.startswith("needs 384.")


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
    guard.record(small, seconds=0.05)
    predicted = guard.predicted_time_s(big)
    assert predicted >= 0.9 * slowdown * guard.model.roofline_s(big)
    assert "time budget 1 s" in guard.skip_reason(big)


def test_time_model_fits_overhead_plus_work():
    m = model()
    cases = [Case("gradient", "structured", b, 100, 10) for b in (1, 8, 64, 512)]
    for c in cases:  # t = 50 µs + 3 x roofline, exactly
        m.record(c, 5e-5 + 3 * m.roofline_s(c))
    a, b = m.params("gradient", "structured")
    assert a == pytest.approx(5e-5, rel=1e-6) and b == pytest.approx(3, rel=1e-6)
    probe = Case("gradient", "structured", 4096, 100, 10)
    assert m.predict(probe) == pytest.approx(5e-5 + 3 * m.roofline_s(probe), rel=1e-6)


def test_one_failing_point_does_not_end_the_sweep(tmp_path, cpu, monkeypatch):
    original = Case.prepare

    def flaky(self, backend, data=None):
        if self.method == "naive" and self.batch == 4:
            raise RuntimeError("simulated failure")
        return original(self, backend, data)

    monkeypatch.setattr(Case, "prepare", flaky)
    run_sweep(TINY, cpu, tmp_path, memory_budget=10**9, progress=False)
    rows = read_results(tmp_path / "results.csv")
    errors = [r for r in rows if r["status"] == "error"]
    assert len(errors) == 2 and all("simulated failure" in r["reason"] for r in errors)
    assert len(rows) == len(TINY.cases())


def test_resume_drops_a_half_written_line(tmp_path, cpu):
    run_sweep(TINY, cpu, tmp_path, memory_budget=10**9, progress=False)
    path = tmp_path / "results.csv"
    lines = path.read_text().splitlines(keepends=True)
    # lose the last three points, and leave half of the third-last line
    path.write_text("".join(lines[:-3]) + lines[-3][:25])
    run_sweep(TINY, cpu, tmp_path, resume=True, memory_budget=10**9, progress=False)
    rows = read_results(path)
    assert Counter(keys(rows)) == Counter(c.key for c in TINY.cases())
    assert path.read_text().count("\n") == len(TINY.cases()) + 1


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
        "20,60,120",
        "--features",
        "60",
        "--epochs-on",
        "none",
        "--memory-budget",
        "2GB",
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
    expected = 2 * 3 * 3
    assert 3 <= done_before < expected, "the kill should land mid-way"
    subprocess.run(args + ["--resume"], check=True, timeout=120, capture_output=True)
    rows = read_results(results)
    assert len(rows) == expected
    assert len(set(keys(rows))) == expected
    assert len({r["run_id"] for r in rows}) == 2


def test_rounds_pool_samples_into_one_row_per_point(tmp_path, cpu):
    grid = Grid(
        methods=("structured",),
        batches=(1, 4),
        classes=(3,),
        features=(5,),
        epochs_on="none",
        time_budget_s=2,
    )
    run_sweep(grid, cpu, tmp_path, memory_budget=10**9, progress=False, rounds=3)
    rows = read_results(tmp_path / "results.csv")
    assert len(rows) == 2
    assert all(r["rounds"] == "3" and int(r["repeats"]) >= 15 for r in rows)


def test_resume_refuses_a_foreign_header_and_touches_nothing(tmp_path, cpu):
    run_sweep(TINY, cpu, tmp_path, memory_budget=10**9, progress=False)
    path = tmp_path / "results.csv"
    text = path.read_text()
    foreign = text.replace("time_first_s,", "", 1)  # an older version's header
    path.write_text(foreign)
    with pytest.raises(SchemaError, match="missing time_first_s"):
        run_sweep(TINY, cpu, tmp_path, resume=True, memory_budget=10**9, progress=False)
    assert path.read_text() == foreign


def test_resume_with_other_rounds_is_refused_and_touches_nothing(tmp_path, cpu):
    """Rows pooled from 1 round beside rows pooled from 3 would compare unlike with unlike."""
    grid = Grid(
        methods=("structured",),
        batches=(1, 4),
        classes=(3,),
        features=(5,),
        epochs_on="none",
        time_budget_s=0.5,
    )
    run_sweep(grid, cpu, tmp_path, memory_budget=10**9, progress=False, rounds=1)
    path = tmp_path / "results.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(
        "".join(lines[:-1]) + lines[-1][:40]
    )  # one point half-written: still to measure
    before = path.read_bytes()
    with pytest.raises(ValueError, match="--rounds 1, not 3; fix: resume with --rounds 1"):
        run_sweep(grid, cpu, tmp_path, resume=True, memory_budget=10**9, progress=False, rounds=3)
    assert path.read_bytes() == before  # refused before the half line is repaired
    run_sweep(grid, cpu, tmp_path, resume=True, memory_budget=10**9, progress=False, rounds=1)
    assert [r["rounds"] for r in read_results(path)] == ["1", "1"]


@pytest.mark.parametrize("value", ["", "abc", "3.0", "0"])
def test_resume_names_a_rounds_cell_that_is_not_a_whole_number(tmp_path, cpu, value):
    run_sweep(TINY, cpu, tmp_path, memory_budget=10**9, progress=False, rounds=1)
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
        run_sweep(TINY, cpu, tmp_path, resume=True, memory_budget=10**9, progress=False, rounds=1)
    assert path.read_bytes() == before


def test_resume_reports_damaged_rows_and_measures_them_again(tmp_path, cpu):
    import io

    run_sweep(TINY, cpu, tmp_path, memory_budget=10**9, progress=False)
    path = tmp_path / "results.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace(",ok,", ",garbage,", 1)
    path.write_text("".join(lines))
    log = io.StringIO()
    run_sweep(TINY, cpu, tmp_path, resume=True, memory_budget=10**9, progress=False, log=log)
    assert "results.csv:3: damaged row dropped" in log.getvalue()
    ok = [r for r in read_results(path) if r["status"] == "ok"]
    assert Counter(keys(ok)) == Counter(c.key for c in TINY.cases())


def test_a_second_sweep_on_the_same_folder_is_refused_while_the_first_runs(tmp_path, cpu):
    from softmax_core.runs.sweep import _folder_lock

    with _folder_lock(tmp_path):
        with pytest.raises(ValueError, match=f"in use by another sweep \\(pid {os.getpid()}\\)"):
            run_sweep(TINY, cpu, tmp_path, resume=True, memory_budget=10**9, progress=False)
    assert not (tmp_path / "results.csv").exists()
    run_sweep(TINY, cpu, tmp_path, resume=True, memory_budget=10**9, progress=False)  # released


def test_a_killed_sweeps_lock_does_not_block(tmp_path, cpu):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from pathlib import Path\n"
                "from softmax_core.runs.sweep import _folder_lock\n"
                f"with _folder_lock(Path({str(tmp_path)!r})):\n"
                "    print('held', flush=True); time.sleep(60)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(ValueError, match="in use"):
        run_sweep(TINY, cpu, tmp_path, memory_budget=10**9, progress=False)
    holder.kill()
    holder.wait()
    run_sweep(TINY, cpu, tmp_path, resume=True, memory_budget=10**9, progress=False)
    assert len(read_results(tmp_path / "results.csv")) == len(TINY.cases())


def test_resume_runs_skipped_points_that_now_fit_the_budget(tmp_path, cpu):
    grid = Grid(
        methods=("structured",),
        batches=(2,),
        classes=(3,),
        features=(5,),
        epochs_on="none",
        time_budget_s=2,
    )
    run_sweep(grid, cpu, tmp_path, memory_budget=1, progress=False)
    run_sweep(grid, cpu, tmp_path, memory_budget=1, resume=True, progress=False)  # still too small
    assert [r["status"] for r in read_results(tmp_path / "results.csv")] == ["skipped"]
    run_sweep(grid, cpu, tmp_path, memory_budget=10**9, resume=True, progress=False)
    assert [r["status"] for r in read_results(tmp_path / "results.csv")] == ["skipped", "ok"]


def test_a_resumed_sweep_counts_the_points_it_kept(tmp_path, cpu):
    """A resume that re-checks skipped points said '0 ok', as if nothing had been measured."""
    grid = Grid(
        methods=("structured",),
        batches=(2, 4096),
        classes=(3,),
        features=(5,),
        epochs_on="none",
        time_budget_s=2,
    )
    big = Case("gradient", "structured", 4096, 5, 3)
    budget = big.cost.peak_bytes + big.input_bytes - 1  # the small point fits, the big one does not
    run_sweep(grid, cpu, tmp_path, memory_budget=budget, progress=False)
    run_sweep(grid, cpu, tmp_path, memory_budget=budget, resume=True, progress=False)
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
def test_memory_budget_beyond_the_device_or_not_finite_is_refused(tmp_path, cpu, budget):
    with pytest.raises(ValueError, match="memory budget"):
        run_sweep(TINY, cpu, tmp_path, memory_budget=budget, progress=False)
    assert not (tmp_path / "results.csv").exists()


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_resume_with_a_corrupt_environment_names_the_file(tmp_path, cpu, content):
    run_sweep(TINY, cpu, tmp_path, memory_budget=10**9, progress=False)
    (tmp_path / "environment.json").write_text(content)
    with pytest.raises(ValueError, match="environment.json"):
        run_sweep(TINY, cpu, tmp_path, resume=True, memory_budget=10**9, progress=False)


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
        (["--classes", "1"], "classes must be >= 2"),
        (["--rounds", "0"], "--rounds"),
    ],
)
def test_cli_sweep_bad_arguments_one_line(tmp_path, argv, needle):
    r = subprocess.run(
        [sys.executable, "-m", "softmax_core.cli", "sweep", "--out", str(tmp_path), *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_sweep_runs_and_reports(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "softmax_core.cli",
            "sweep",
            "--out",
            str(tmp_path),
            "--methods",
            "structured,naive",
            "--batch",
            "64,256",
            "--classes",
            "3,9,27",
            "--features",
            "8",
            "--epochs-on",
            "synthetic",
            "--time-budget",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 2 * 3 + 2
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert [int(r["samples"]) for r in epochs] == [60000, 60000]
    # on a loaded machine the guard may skip an epoch for time: then it says why
    assert all(
        float(r["samples_per_s"]) > 0
        if r["status"] == "ok"
        else r["reason"].startswith("predicted")
        for r in epochs
    )
    assert all(r["status"] == "ok" for r in rows if r["kind"] == "gradient")
    assert (tmp_path / "report.md").exists()


def test_the_main_command_works_every_time_it_is_run(tmp_path):
    """Defect: a second run of the README's sweep stopped at 'results.csv already exists'."""
    args = [
        sys.executable,
        "-m",
        "softmax_core.cli",
        "sweep",
        "--no-report",
        "--methods",
        "structured",
        "--batch",
        "2",
        "--classes",
        "3",
        "--features",
        "4",
        "--epochs-on",
        "none",
    ]
    for _ in range(2):
        r = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "1 ok" in r.stdout
    runs = sorted(p for p in (tmp_path / "out" / "sweep").iterdir() if not p.is_symlink())
    assert len(runs) == 2 and all((p / "results.csv").is_file() for p in runs)
    assert (tmp_path / "out" / "sweep" / "latest").resolve() == runs[-1].resolve()
    r = subprocess.run(
        args + ["--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert len(read_results(runs[-1] / "results.csv")) == 1  # nothing was missing


def test_progress_on_a_terminal_and_plain_lines_otherwise(monkeypatch):
    import io

    from softmax_core.runs import sweep

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Terminal(), io.StringIO()
    monkeypatch.setattr(sweep, "PLAIN_PROGRESS_EVERY_S", 0.0)
    for stream in (tty, pipe):
        bar = sweep._Progress([1.0, 3.0, 1.0], stream, None)
        for label in ("a", "b", "c"):
            bar.advance(label)
        bar.close()
    assert "3/3 c" in tty.getvalue() and "100%" in tty.getvalue()
    assert "[sweep] 2/3 point-rounds" in pipe.getvalue() and "\r" not in pipe.getvalue()


def test_output_files_get_the_usual_permissions(tmp_path, cpu):
    """Defect: files written atomically (environment.json, report, plots) were mode 0600."""
    old = os.umask(0o022)
    try:
        run_sweep(TINY, cpu, tmp_path, memory_budget=10**9, progress=False)
    finally:
        os.umask(old)
    for name in ("results.csv", "environment.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_resume_keeps_a_whole_last_row_without_its_newline(tmp_path, cpu):
    run_sweep(TINY, cpu, tmp_path, memory_budget=10**9, progress=False)
    path = tmp_path / "results.csv"
    before = read_results(path)
    path.write_text(path.read_text().rstrip("\n"))  # a whole row, only its newline lost
    run_sweep(TINY, cpu, tmp_path, resume=True, memory_budget=10**9, progress=False)
    assert read_results(path) == before  # kept, nothing measured again


def test_too_many_rounds_are_refused_before_anything_is_written(tmp_path, cpu):
    with pytest.raises(ValueError, match="rounds must be a whole number from 1 to 20"):
        run_sweep(TINY, cpu, tmp_path / "r", rounds=10**20, progress=False)
    assert not (tmp_path / "r").exists()


def test_a_latest_that_is_not_our_link_is_refused_in_one_line(tmp_path):
    (tmp_path / "out" / "sweep").mkdir(parents=True)
    (tmp_path / "out" / "sweep" / "latest").write_text("mine")
    for extra in ([], ["--resume"]):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "softmax_core.cli",
                "sweep",
                "--no-report",
                "--methods",
                "structured",
                "--batch",
                "2",
                "--classes",
                "3",
                "--features",
                "4",
                "--epochs-on",
                "none",
                *extra,
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
        assert "is not the link softmax-bench keeps" in r.stderr
    assert (tmp_path / "out" / "sweep" / "latest").read_text() == "mine"


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--threads", "100000"], "--threads"),
        (["--threads", "99999999999999999999"], "--threads"),
        (["--rounds", "21"], "--rounds"),
    ],
)
def test_cli_refuses_threads_beyond_the_cores_and_too_many_rounds(tmp_path, argv, needle):
    r = subprocess.run(
        [sys.executable, "-m", "softmax_core.cli", "sweep", "--out", str(tmp_path / "x"), *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()


def test_calls_a_point_makes_with_rounds():
    from softmax_core.runs.cases import calls_per_point, samples_per_round

    assert calls_per_point(1) == CALLS_PER_POINT == 1 + 1 + 5 + 1  # cold, warm-up, 5 samples, peak
    assert samples_per_round(3) == 2 and calls_per_point(3) == 1 + 3 + 6 + 1
    assert calls_per_point(3, long=True) == 1 + 1 + 6 + 1  # one warm-up for a long call


def test_the_default_sweep_keeps_the_lectures_naive_point_at_n_k_1000():
    """The lecture's headline point (one 4 GB Jacobian, ~1 s a call on the 2-core VM with one
    BLAS thread; the time model predicted 1.4 s a call there when quiet and 2.33 s while other
    jobs loaded it, when a 20 s budget skipped it) must fit the default time budget with the
    default rounds, with room for a busy machine."""
    from softmax_core.runs.cases import DEFAULT_GRID, DEFAULT_ROUNDS, LONG_CALL_S, calls_per_point

    per_call = 2.5
    assert per_call >= LONG_CALL_S
    assert per_call * calls_per_point(DEFAULT_ROUNDS, long=True) <= DEFAULT_GRID.time_budget_s


def test_the_prediction_is_made_before_the_point_ran(tmp_path, cpu):
    """With several rounds the row is written after the last one: its predicted time must still
    be the model's guess before round 1, not the point's own round-1 median."""
    grid = Grid(
        methods=("structured",),
        batches=(2,),
        classes=(3,),
        features=(5,),
        epochs_on="none",
        time_budget_s=0.5,
    )
    out = run_sweep(grid, cpu, tmp_path / "p", memory_budget=10**9, progress=False, rounds=3)
    row = read_results(out / "results.csv")[0]
    probe = json.loads((out / "environment.json").read_text())["probe"]
    fresh = TimeModel(probe["gemm_gflops"] * 1e9, probe["copy_gbps"] * 1e9)  # nothing learnt yet
    assert float(row["predicted_time_s"]) == pytest.approx(fresh.predict(grid.cases()[0]))


def test_a_skip_for_time_at_a_tiny_budget_states_its_numbers():
    guard = Guard(10**9, 0.001, model())
    reason = guard.skip_reason(Case("gradient", "structured", 8, 50, 10), calls=11)
    assert "predicted 0.0 s" not in reason and reason.startswith("predicted ")
    shown = float(reason.split()[1])
    assert shown > 0.001


def test_each_point_makes_room_for_its_need_within_the_memory_budget(tmp_path, cpu, monkeypatch):
    """Memory kept from earlier points is handed back before a point's cold call, and before
    a later round that could push the process past the budget (host_memory.make_room)."""
    from softmax_core.runs import sweep as sweep_module

    asked, events = [], []
    monkeypatch.setattr(
        sweep_module, "make_room", lambda need, budget: asked.append((need, budget)) or False
    )
    monkeypatch.setattr(sweep_module, "release_retained_memory", lambda: events.append("release"))
    real_prepare, real_measure = Case.prepare, sweep_module.measure
    monkeypatch.setattr(
        Case, "prepare", lambda self, *a: events.append("prepare") or real_prepare(self, *a)
    )
    monkeypatch.setattr(
        sweep_module, "measure", lambda *a, **kw: events.append("measure") or real_measure(*a, **kw)
    )
    grid = Grid(
        methods=("structured",),
        batches=(2,),
        classes=(3,),
        features=(5,),
        epochs_on="none",
        time_budget_s=0.5,
    )
    run_sweep(grid, cpu, tmp_path / "r", memory_budget=10**9, progress=False, rounds=3)
    case = grid.cases()[0]
    # after prepare (whose check call maps the call's memory), right before the cold call
    assert events == ["prepare", "release", "measure"] + ["prepare", "measure"] * 2
    assert asked == [(case.cost.peak_bytes + case.input_bytes, 10**9)] * 2  # rounds 2 and 3


@pytest.mark.parametrize("handed_back", [False, True])
def test_a_later_round_warms_a_long_call_up_again_after_its_memory_was_handed_back(
    tmp_path, cpu, monkeypatch, handed_back
):
    from softmax_core.measure.engine import Measurement
    from softmax_core.runs import sweep as sweep_module

    seen = []

    def fake_measure(fn, *args, **kw):
        seen.append(kw["warm_up"])
        return Measurement((1.0, 1.0, 1.0), first_s=1.0 if kw["cold"] else None)

    monkeypatch.setattr(sweep_module, "measure", fake_measure)
    monkeypatch.setattr(sweep_module, "make_room", lambda need, budget: handed_back)
    grid = Grid(
        methods=("structured",),
        batches=(2,),
        classes=(3,),
        features=(5,),
        epochs_on="none",
        time_budget_s=1000,
    )
    run_sweep(grid, cpu, tmp_path / "r", memory_budget=10**9, progress=False, rounds=2)
    assert seen == [True, handed_back]  # a 1 s call skips the later warm-up only on kept pages
