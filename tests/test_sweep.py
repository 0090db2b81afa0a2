"""The sweep: guard, append-as-you-go results, resume after a kill."""

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
from softmax_core.cases import Case, Grid, Guard, default_memory_budget
from softmax_core.sweep import COLUMNS, read_results, run_sweep

TINY = Grid(methods=("structured", "naive"), batches=(1, 4), classes=(3, 8), features=(5,),
            epochs_on="none", time_budget_s=5)


@pytest.fixture
def cpu():
    return get_backend("cpu", "numpy")


def keys(rows):
    return [(r["kind"], r["method"], int(r["batch"]), int(r["features"]), int(r["classes"]), r["dtype"])
            for r in rows]


def test_sweep_writes_one_row_per_point_and_environment(tmp_path, cpu):
    out = run_sweep(TINY, cpu, tmp_path / "s", memory_budget=10**9, progress=False)
    rows = read_results(out / "results.csv")
    assert sorted(keys(rows)) == sorted(c.key for c in TINY.cases())
    assert list(rows[0]) == list(COLUMNS)
    assert {r["status"] for r in rows} == {"ok"}
    for r in rows:
        assert float(r["time_median_s"]) > 0
        assert int(r["repeats"]) >= 3
        assert float(r["samples_per_s"]) == pytest.approx(int(r["samples"]) / float(r["time_median_s"]))
    env = json.loads((out / "environment.json").read_text())
    assert env["backend"]["label"] == "numpy-cpu"
    assert env["probe"]["gemm_gflops"] > 0
    assert "blas" in env["backend"] and "cpu_model" in env["backend"]


def test_existing_results_are_never_overwritten(tmp_path, cpu):
    run_sweep(TINY, cpu, tmp_path, memory_budget=10**9, progress=False)
    before = (tmp_path / "results.csv").read_bytes()
    with pytest.raises(ValueError, match="--resume"):
        run_sweep(TINY, cpu, tmp_path, memory_budget=10**9, progress=False)
    assert (tmp_path / "results.csv").read_bytes() == before


def test_memory_guard_skips_with_reason_and_prediction(tmp_path, cpu):
    grid = Grid(methods=("naive_batched",), batches=(2,), classes=(50,), features=(100,),
                epochs_on="none", time_budget_s=5)
    run_sweep(grid, cpu, tmp_path, memory_budget=1_000_000, progress=False)
    (row,) = read_results(tmp_path / "results.csv")
    assert row["status"] == "skipped"
    assert row["reason"].startswith("needs ") and "budget 1.0 MB" in row["reason"]
    assert int(row["predicted_bytes"]) == int(Case("gradient", "naive_batched", 2, 100, 50).cost.peak_bytes)
    assert row["time_median_s"] == ""


def test_lecture_case_is_skipped_for_memory_not_run(cpu):
    guard = Guard(default_memory_budget(cpu), time_budget_s=20)
    reason = guard.skip_reason(Case("gradient", "naive_batched", 96, 1000, 1000))
    assert reason is not None and reason.startswith("needs 384.")


def test_time_guard_uses_the_largest_measured_point():
    guard = Guard(10**12, time_budget_s=1.0, gemm_flops_per_s=1e9, copy_bytes_per_s=1e9)
    small, big = Case("gradient", "naive", 1, 50, 50), Case("gradient", "naive", 64, 50, 50)
    assert guard.skip_reason(big) is None           # nothing measured yet: no prediction
    guard.record(small, seconds=0.05)
    predicted = guard.predicted_time_s(big)
    assert predicted == pytest.approx(0.05 * big.cost.flops / small.cost.flops, rel=0.2)
    assert "time budget 1 s" in guard.skip_reason(big)
    assert guard.skip_reason(Case("gradient", "structured", 64, 50, 50)) is None  # other method


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
    args = [sys.executable, "-m", "softmax_core.cli", "sweep", "--out", str(out), "--no-report",
            "--methods", "naive,structured", "--batch", "1,8,32", "--classes", "20,60,120",
            "--features", "60", "--epochs-on", "none", "--memory-budget", "2GB"]
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


@pytest.mark.parametrize("argv,needle", [
    (["--batch", "0"], "--batch"),
    (["--classes", "ten"], "--classes"),
    (["--methods", "fast"], "fast"),
    (["--memory-budget", "lots"], "--memory-budget"),
    (["--time-budget", "-3"], "--time-budget"),
])
def test_cli_sweep_bad_arguments_one_line(tmp_path, argv, needle):
    r = subprocess.run([sys.executable, "-m", "softmax_core.cli", "sweep", "--out", str(tmp_path), *argv],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_sweep_runs_and_reports(tmp_path):
    r = subprocess.run([sys.executable, "-m", "softmax_core.cli", "sweep", "--out", str(tmp_path),
                        "--methods", "structured,naive", "--batch", "64,256", "--classes", "3,9,27",
                        "--features", "8", "--epochs-on", "synthetic"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 2 * 3 + 2
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert [int(r["samples"]) for r in epochs] == [60000, 60000]
    assert all(float(r["samples_per_s"]) > 0 for r in epochs)
    assert (tmp_path / "report.md").exists()


def test_default_slowdown_predicts_before_any_measurement():
    guard = Guard(10**12, time_budget_s=1.0, gemm_flops_per_s=1e9, copy_bytes_per_s=1e9, default_slowdown=4.0)
    case = Case("gradient", "naive", 64, 50, 50)
    assert guard.predicted_time_s(case) == pytest.approx(4.0 * guard.roofline_s(case))
    guard.record(case, seconds=2 * guard.roofline_s(case))
    assert guard.predicted_time_s(case) == pytest.approx(2.0 * guard.roofline_s(case))


def test_progress_bar_shows_eta_on_a_terminal_and_nothing_otherwise():
    import io

    from softmax_core.sweep import _Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        bar = _Progress(4, stream)
        for label in ("a", "b", "c"):
            bar.update(label)
        bar.close()
    assert "2/4" in tty.getvalue() and "ETA" in tty.getvalue()
    assert pipe.getvalue() == ""
