"""softmax_core.report: reading sweep and asv results, the fitted slopes, the plots and report.md.

Most tests write a results set by hand (results.csv with sweep.COLUMNS and an
environment.json), with times built from known exponents (naive ~ k², structured
~ k) so the fitted slopes have a known answer; predicted columns come from the
cost model, as the sweep writes them.  One test runs a real tiny sweep.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from softmax_core import get_backend
from softmax_core import report as report_module
from softmax_core.cases import EPOCH_CLASSES, EPOCH_FEATURES, EPOCH_SAMPLES, Grid
from softmax_core.cli import main
from softmax_core.costmodel import epoch_cost, format_bytes, gradient_cost
from softmax_core.report import (
    MAX_ASV_LINES,
    PLOT_FILES,
    asv_history_table,
    asv_to_sweep,
    fit_loglog_slope,
    load_asv_results,
    load_results,
    loglog_slopes,
    make_report,
    markdown_table,
    pick_asv_benchmark,
    ratio_table,
    throughput_table,
)
from softmax_core.sweep import COLUMNS, run_sweep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SCALING_PLOTS = ("time_vs_classes.png", "memory_vs_classes.png", "ratio_vs_classes.png",
                 "throughput_vs_batch.png")
SKIP_REASON = "needs 384.0 GB, budget 11.2 GB"
ERROR_REASON = "MemoryError: Unable to allocate 4.0 GiB"
# time = coefficient * k**exponent (* B for the batched naive), per method
EXPONENTS = {"structured": (2e-6, 1.0), "naive": (1e-7, 2.0), "naive_batched": (1.2e-7, 2.0)}


def _gradient_row(method, batch, n, k, status="ok", reason=""):
    cost = gradient_cost(method, batch, n, k)
    row = {"kind": "gradient", "method": method, "batch": batch, "features": n, "classes": k,
           "dtype": "float32", "status": status, "reason": reason, "samples": batch,
           "predicted_bytes": int(cost.peak_bytes), "predicted_lecture_bytes": int(cost.lecture_bytes),
           "predicted_flops": int(cost.flops), "predicted_traffic_bytes": int(cost.traffic_bytes)}
    if status == "ok":
        c, p = EXPONENTS[method]
        t = c * k**p * (batch if method == "naive_batched" else 1)
        row.update(time_median_s=t, time_iqr_s=t / 50, time_min_s=t * 0.98, repeats=5, host_time_median_s=t,
                   peak_bytes=int(cost.peak_bytes * 1.02), samples_per_s=batch / t,
                   gflops=cost.flops / t / 1e9, gbytes_per_s=cost.traffic_bytes / t / 1e9)
    return row


def _epoch_row(batch, samples_per_s):
    cost = epoch_cost("structured", EPOCH_SAMPLES, EPOCH_FEATURES, EPOCH_CLASSES, batch)
    t = EPOCH_SAMPLES / samples_per_s
    return {"kind": "epoch", "method": "structured", "batch": batch, "features": EPOCH_FEATURES,
            "classes": EPOCH_CLASSES, "dtype": "float32", "status": "ok", "reason": "",
            "samples": EPOCH_SAMPLES, "time_median_s": t, "repeats": 3, "peak_bytes": int(cost.peak_bytes),
            "predicted_bytes": int(cost.peak_bytes), "predicted_lecture_bytes": int(cost.lecture_bytes),
            "predicted_flops": int(cost.flops), "predicted_traffic_bytes": int(cost.traffic_bytes),
            "samples_per_s": samples_per_s, "gflops": cost.flops / t / 1e9,
            "gbytes_per_s": cost.traffic_bytes / t / 1e9}


def _rows(epoch_speed=1.0):
    """A small grid at n = 1000 with known exponents, a skipped and an errored point, and epochs."""
    rows = [_gradient_row(m, b, 1000, k) for m in ("structured", "naive") for b in (1, 32)
            for k in (10, 100, 1000) if not (m == "naive" and b == 32 and k == 1000)]
    rows += [_gradient_row("naive_batched", b, 1000, k) for b in (1, 32) for k in (10, 100)]
    rows += [_gradient_row("structured", 96, 1000, 1000),
             _gradient_row("naive_batched", 96, 1000, 1000, "skipped", SKIP_REASON),
             _gradient_row("naive", 32, 1000, 1000, "error", ERROR_REASON)]
    rows += [_epoch_row(b, epoch_speed * 3e4 * b**0.8) for b in (1, 8, 32, 96)]
    return rows


def write_set(folder: Path, rows, *, label="numpy-cpu", gemm_gflops=200.0, copy_gbps=20.0) -> Path:
    """A results folder as the sweep writes it: results.csv with sweep.COLUMNS and environment.json."""
    folder.mkdir(parents=True, exist_ok=True)
    backend, device = label.split("-")
    with open(folder / "results.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for i, row in enumerate(rows):
            writer.writerow({"run_id": "abc123", "timestamp": f"2026-01-01T00:00:{i % 60:02d}+00:00",
                             "backend": backend, "device": device, **row})
    env = {"created": "2026-01-01T00:00:00+00:00",
           "backend": {"backend": backend, "device": device, "label": label, "numpy": "2.0",
                       "cpu_model": "Test CPU", "cpu_cores": 4, "blas": "openblas 0.3",
                       **({"gpu_name": "Test GPU", "gpu_memory_total_bytes": 80e9} if device == "gpu" else {})},
           "machine": {"platform": "Linux", "memory_total_bytes": 16e9, "git_commit": "0123456789abcdef"},
           "probe": {"gemm_gflops": gemm_gflops, "copy_gbps": copy_gbps},
           "columns": list(COLUMNS)}
    (folder / "environment.json").write_text(json.dumps(env), encoding="utf-8")
    return folder


@pytest.fixture
def result_set(tmp_path) -> Path:
    return write_set(tmp_path / "cpu", _rows())


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    """make_report on the hand-written set, once for the tests that only read its output."""
    root = tmp_path_factory.mktemp("report")
    path = make_report([write_set(root / "cpu", _rows())], root / "out")
    return path, path.read_text(encoding="utf-8")


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert 10_000 < len(data) < 2_000_000, f"{path.name} has an odd size: {len(data)} bytes"


# ---------------------------------------------------------------------------
# The slope fit
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("p", [1.0, 2.0, 0.5, -1.0])
def test_fit_loglog_slope_recovers_power_laws(p):
    x = np.array([10.0, 100.0, 300.0, 1000.0])
    assert fit_loglog_slope(x, 3.7 * x**p) == pytest.approx(p)


def test_fit_loglog_slope_ignores_bad_points_and_needs_two():
    x = [1, 2, 4, 8]
    assert fit_loglog_slope(x, [1, 4, float("nan"), 64]) == pytest.approx(2.0)
    assert fit_loglog_slope(x, [0, 4, 16, -1]) == pytest.approx(2.0)
    assert math.isnan(fit_loglog_slope([10], [1.0]))
    assert math.isnan(fit_loglog_slope([10, 10], [1.0, 2.0]))
    assert math.isnan(fit_loglog_slope([], []))


def test_slopes_of_known_exponents(result_set):
    df = load_results([result_set])
    slopes = loglog_slopes(df).set_index(["method", "batch"])
    for batch in (1, 32):
        assert slopes.loc[("naive", batch), "slope_time"] == pytest.approx(2.0, abs=1e-6)
        assert slopes.loc[("structured", batch), "slope_time"] == pytest.approx(1.0, abs=1e-6)
    # naive B=32 has only two ok points (k=1000 errored): the fit uses those two
    assert slopes.loc[("naive", 32), "points"] == 2
    assert slopes.loc["naive", "slope_time"].min() > slopes.loc["structured", "slope_time"].max()
    # peak memory follows the cost model: naive ~ k² n, structured ~ n k
    assert slopes.loc[("naive", 1), "slope_memory"] > 1.8
    assert slopes.loc[("structured", 1), "slope_memory"] == pytest.approx(1.0, abs=0.05)


# ---------------------------------------------------------------------------
# load_results
# ---------------------------------------------------------------------------

def test_load_results_types_sets_and_limits(result_set):
    df = load_results([result_set])
    assert set(COLUMNS) <= set(df.columns)
    assert {"set", "folder", "gemm_gflops", "copy_gbps"} <= set(df.columns)
    assert len(df) == len(_rows())
    for col in ("batch", "classes", "time_median_s", "peak_bytes", "predicted_bytes"):
        assert pd.api.types.is_numeric_dtype(df[col]), col
    assert set(df["set"]) == {"numpy-cpu"}
    assert (df["gemm_gflops"] == 200.0).all() and (df["copy_gbps"] == 20.0).all()
    skipped = df[df["status"] == "skipped"]
    assert list(skipped["reason"]) == [SKIP_REASON] and skipped["time_median_s"].isna().all()
    assert df.attrs["environments"]["numpy-cpu"]["probe"]["gemm_gflops"] == 200.0


def test_load_results_tolerates_half_written_last_line(result_set):
    with open(result_set / "results.csv", "a", encoding="utf-8") as fh:
        fh.write("abc123,2026-01-01T00:01:00+00:00,numpy,cpu,gradient,naive,8,10")  # killed mid-row
    assert len(load_results([result_set])) == len(_rows())


def test_same_label_gets_folder_name(tmp_path):
    a = write_set(tmp_path / "run_a", _rows())
    b = write_set(tmp_path / "run_b", _rows())
    assert set(load_results([a, b])["set"]) == {"numpy-cpu (run_a)", "numpy-cpu (run_b)"}


@pytest.mark.parametrize("case", ["missing", "no_csv", "empty", "header_only", "not_results", "no_dirs"])
def test_bad_input_raises_value_error_with_fix(tmp_path, case):
    folder = tmp_path / "sweep"
    if case != "missing":
        folder.mkdir()
    if case == "empty":
        (folder / "results.csv").write_text("", encoding="utf-8")
    elif case == "header_only":
        (folder / "results.csv").write_text(",".join(COLUMNS) + "\n", encoding="utf-8")
    elif case == "not_results":
        (folder / "results.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    dirs = [] if case == "no_dirs" else [folder]
    with pytest.raises(ValueError, match="fix:") as info:
        load_results(dirs)
    if case != "no_dirs":
        assert str(folder) in str(info.value)
    with pytest.raises(ValueError):
        make_report(dirs, tmp_path / "out")


# ---------------------------------------------------------------------------
# make_report
# ---------------------------------------------------------------------------

def test_make_report_writes_markdown_and_plots(report):
    path, text = report
    out = path.parent
    assert path.name == "report.md"
    for name in SCALING_PLOTS:
        assert f"]({name})" in text, f"report.md does not embed {name}"
        _assert_png(out / name)
    assert not (out / "asv_history.png").exists()
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    # environment header, counts, the error listed with its reason
    assert "Test CPU (4 cores)" in text and "200.0 GFLOP/s" in text and "20.0 GB/s" in text
    assert ERROR_REASON in text
    assert "| numpy-cpu | " in text  # counts table row
    # the fitted slopes are reported: 2.00 for naive, 1.00 for structured
    assert "| numpy-cpu | naive | 1000 | 2.00 | 2.00 |" in text
    assert "| numpy-cpu | structured | 1000 | 1.00 | 1.00 |" in text


def test_lecture_table_shows_skipped_points_with_reason(report):
    _, text = report
    section = text.split("## The lecture's table")[1].split("\n## ")[0]
    assert "n = k = 1000" in section
    lecture_384 = format_bytes(gradient_cost("naive_batched", 96, 1000, 1000).lecture_bytes)
    assert lecture_384 == "384.0 GB"
    skipped_line = next(line for line in section.splitlines() if line.startswith("| naive_batched | 96 |"))
    assert lecture_384 in skipped_line and f"skipped: {SKIP_REASON}" in skipped_line
    assert "| naive | 1 | 4.0 GB |" in section            # the lecture's 4 GB Jacobian
    assert "| structured | 1 | 4.0 MB |" in section       # against a 4 MB gradient
    assert "| naive / structured | 1 | 1,000x |" in section  # lecture memory ratio = k


def test_lecture_table_falls_back_to_largest_k(tmp_path):
    rows = [_gradient_row(m, 1, 300, k) for m in ("structured", "naive") for k in (10, 100)]
    text = make_report([write_set(tmp_path / "s", rows)], tmp_path / "r").read_text(encoding="utf-8")
    assert "no n = k = 1000 points" in text and "n = 300, k = 100" in text


def test_two_sets_both_in_throughput(result_set, tmp_path):
    rows = _rows()
    for r in rows:  # the GPU is slower at small batches, faster at large ones
        if r["kind"] == "epoch":
            r["samples_per_s"] = 1e3 * r["batch"] ** 2
    gpu = write_set(tmp_path / "gpu", rows, label="cupy-gpu", gemm_gflops=50000.0, copy_gbps=2000.0)
    df = load_results([result_set, gpu])
    table = throughput_table(df)
    assert set(table["set"]) == {"numpy-cpu", "cupy-gpu"}
    assert set(table.loc[table["source"] == "epoch", "batch"]) == {1, 8, 32, 96}
    text = make_report([result_set, gpu], tmp_path / "r").read_text(encoding="utf-8")
    assert "| B | cupy-gpu (samples/s) | numpy-cpu (samples/s) | fastest |" in text
    assert "Test GPU (80.0 GB)" in text
    lines = text.splitlines()
    assert any(line.startswith("| 1 |") and line.endswith("| numpy-cpu |") for line in lines)
    assert any(line.startswith("| 96 |") and line.endswith("| cupy-gpu |") for line in lines)
    _assert_png(tmp_path / "r" / "throughput_vs_batch.png")


def test_ratio_table_against_cost_model(result_set):
    ratios = ratio_table(load_results([result_set]))
    assert list(ratios["classes"]) == [10, 100, 1000] and (ratios["batch"] == 1).all()
    k = ratios["classes"].to_numpy(float)
    expected = EXPONENTS["naive"][0] * k**2 / (EXPONENTS["structured"][0] * k)
    np.testing.assert_allclose(ratios["time_ratio"], expected)
    model = [gradient_cost("naive", 1, 1000, int(kk)).flops / gradient_cost("structured", 1, 1000, int(kk)).flops
             for kk in k]
    np.testing.assert_allclose(ratios["predicted_flops_ratio"], model, rtol=1e-6)


def test_missing_data_skips_plots_and_says_why(tmp_path):
    rows = [_gradient_row("structured", 1, 100, k) for k in (10, 100)]  # no naive, no epochs
    out = tmp_path / "r"
    out.mkdir()
    (out / "ratio_vs_classes.png").write_bytes(b"old plot")  # from an earlier report
    text = make_report([write_set(tmp_path / "s", rows)], out).read_text(encoding="utf-8")
    assert "Plots not drawn" in text
    assert "`ratio_vs_classes.png`: no k with both naive and structured" in text
    assert "`throughput_vs_batch.png`: no epoch rows" in text
    assert not (out / "ratio_vs_classes.png").exists() and not (out / "throughput_vs_batch.png").exists()
    _assert_png(out / "time_vs_classes.png")


def test_only_skipped_and_errors_does_not_crash(tmp_path):
    rows = [_gradient_row("naive", 1, 1000, 1000, "skipped", "predicted 40.1 s for 4 call(s), time budget 20 s"),
            _gradient_row("structured", 1, 1000, 1000, "error", "RuntimeError: boom")]
    text = make_report([write_set(tmp_path / "s", rows)], tmp_path / "r").read_text(encoding="utf-8")
    assert "predicted 40.1 s for 4 call(s), time budget 20 s" in text and "RuntimeError: boom" in text
    assert not list((tmp_path / "r").glob("*.png"))


@pytest.mark.slow
def test_real_tiny_sweep(tmp_path):
    """A real sweep (numpy, tiny sizes), then the report written into the sweep's folder, as the CLI does."""
    grid = Grid(methods=("structured", "naive"), batches=(1, 4), classes=(4, 16, 32), features=(16,),
                epochs_on="none", time_budget_s=5)
    folder = run_sweep(grid, get_backend("cpu", "numpy"), tmp_path / "sweep", memory_budget=10**9, progress=False)
    path = make_report([folder], folder)
    text = path.read_text(encoding="utf-8")
    for name in ("time_vs_classes.png", "memory_vs_classes.png", "ratio_vs_classes.png"):
        assert f"]({name})" in text
        _assert_png(folder / name)
    assert "`throughput_vs_batch.png`: no epoch rows" in text
    df = load_results([folder])
    assert (df["status"] == "ok").all() and set(df["set"]) == {"numpy-cpu"}


def test_markdown_table_escapes_cells():
    table = markdown_table(["a", "b"], [["x|y", float("nan")], [1, None]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | — |", "| 1 | — |"]


# ---------------------------------------------------------------------------
# asv results
# ---------------------------------------------------------------------------

ASV_COLUMNS = ["result", "params", "version", "started_at", "duration", "stats_ci_99_a", "stats_ci_99_b",
               "stats_q_25", "stats_q_75", "stats_number", "stats_repeat", "samples", "profile"]
TIME_BENCH = "bench_gradient.TimeGradient.time_gradient"
PEAK_BENCH = "bench_gradient.TimeGradient.track_peak_bytes"
EPOCH_BENCH = "bench_epoch.TimeEpoch.track_samples_per_s"
ASV_PARAMS = [["'structured'", "'naive'"], ["1", "32"], ["10", "100"]]


def write_asv(root: Path, commits=("aaaa1111bbbb", "cccc2222dddd", "eeee3333ffff")) -> Path:
    """An asv results folder in asv's own format (results API version 2)."""
    code = "def setup(self, method, batch, classes):\n    n = 784\n"
    benchmarks = {
        TIME_BENCH: {"name": TIME_BENCH, "param_names": ["method", "batch", "classes"], "params": ASV_PARAMS,
                     "type": "time", "unit": "seconds", "version": "1", "code": code},
        PEAK_BENCH: {"name": PEAK_BENCH, "param_names": ["method", "batch", "classes"], "params": ASV_PARAMS,
                     "type": "track", "unit": "bytes", "version": "1", "code": code},
        EPOCH_BENCH: {"name": EPOCH_BENCH, "param_names": ["batch"], "params": [["1", "32"]],
                      "type": "track", "unit": "samples/s", "version": "1", "code": "def setup(self, batch): pass"},
        "version": 2,
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "benchmarks.json").write_text(json.dumps(benchmarks), encoding="utf-8")
    machine = root / "testbox"
    machine.mkdir()
    (machine / "machine.json").write_text(json.dumps(
        {"machine": "testbox", "os": "Linux 6.1", "cpu": "Test CPU", "num_cpu": "4", "ram": "16000000000",
         "arch": "x86_64", "version": 1}), encoding="utf-8")
    for i, commit in enumerate(commits):
        speed = 1.0 - 0.2 * i  # each commit a little faster
        times, peaks = [], []
        for method in ("structured", "naive"):
            for b in (1, 32):
                for k in (10, 100):
                    c, p = EXPONENTS[method]
                    times.append(speed * c * k**p * (1 if method == "structured" else b))
                    peaks.append(gradient_cost(method, b, 784, k).peak_bytes)
        times[-1] = None if i == 0 else times[-1]      # failed on the first commit
        times[-2] = float("nan")                        # skipped
        results = {
            TIME_BENCH: [times, ASV_PARAMS, "1", 1.7e12, 3.0, None, None,
                         [t * 0.95 if t else None for t in times], [t * 1.05 if t else None for t in times]],
            PEAK_BENCH: [peaks, ASV_PARAMS, "1", 1.7e12, 1.0],
            EPOCH_BENCH: [[3e4 * speed, 7e5 * speed], [["1", "32"]], "1", 1.7e12, 5.0],
        }
        data = {"commit_hash": commit + "0" * 28, "env_name": "virtualenv-py3.11", "date": 1.7e12 + i * 86_400_000,
                "params": {"machine": "testbox", "python": "3.11"}, "python": "3.11", "requirements": {},
                "env_vars": {}, "result_columns": ASV_COLUMNS, "results": results, "durations": {}, "version": 2}
        (machine / f"{commit[:8]}-virtualenv-py3.11.json").write_text(json.dumps(data), encoding="utf-8")
    return root


def test_asv_files_are_what_asv_reads(tmp_path):
    """Guards the hand-written fixture: asv's own loader accepts it."""
    asv_results = pytest.importorskip("asv.results")
    root = write_asv(tmp_path / "asv")
    loaded = list(asv_results.iter_results(str(root)))
    assert len(loaded) == 3
    assert loaded[0].get_result_params(TIME_BENCH) == ASV_PARAMS


def test_load_asv_results_one_row_per_param_combo(tmp_path):
    df = load_asv_results(write_asv(tmp_path / "asv"))
    time_rows = df[df["benchmark"] == TIME_BENCH]
    assert len(time_rows) == 3 * 8  # commits x (2 methods x 2 batches x 2 classes)
    assert set(time_rows["method"]) == {"structured", "naive"} and set(time_rows["batch"]) == {1, 32}
    assert set(time_rows["unit"]) == {"seconds"} and set(df["machine"]) == {"testbox"}
    # NaN (skipped) on every commit, null (failed) on the first
    assert time_rows["status"].value_counts().to_dict() == {"ok": 20, "skipped": 3, "failed": 1}
    first = time_rows[time_rows["commit_hash"].str.startswith("aaaa")]
    assert (first["status"] == "failed").sum() == 1
    one = time_rows[(time_rows["method"] == "structured") & (time_rows["batch"] == 1) & (time_rows["classes"] == 100)]
    assert one.sort_values("date")["value"].tolist() == pytest.approx([2e-4, 1.6e-4, 1.2e-4])
    assert (one["q25"] < one["value"]).all()
    assert len(df[df["benchmark"] == EPOCH_BENCH]) == 3 * 2


def test_asv_to_sweep_maps_time_peak_and_throughput(tmp_path):
    asv = load_asv_results(write_asv(tmp_path / "asv"))
    rows, envs = asv_to_sweep(asv)
    assert set(rows["set"]) == {"asv:testbox"} and envs["asv:testbox"]["backend"]["cpu_model"] == "Test CPU"
    grads = rows[rows["kind"] == "gradient"]
    assert len(grads) == 8 and (grads["features"] == 784).all()  # n from the benchmark's code
    ok = grads[grads["status"] == "ok"]
    assert ok["time_median_s"].notna().all() and grads["peak_bytes"].notna().all()
    expected = gradient_cost("naive", 32, 784, 10)
    r = grads[(grads["method"] == "naive") & (grads["batch"] == 32) & (grads["classes"] == 10)].iloc[0]
    assert r["predicted_flops"] == expected.flops and r["peak_bytes"] == expected.peak_bytes
    epochs = rows[rows["kind"] == "epoch"]
    assert sorted(epochs["samples_per_s"]) == pytest.approx([3e4 * 0.6, 7e5 * 0.6])  # the latest commit


def test_pick_asv_benchmark(tmp_path):
    asv = load_asv_results(write_asv(tmp_path / "asv"))
    assert pick_asv_benchmark(asv) == TIME_BENCH
    assert pick_asv_benchmark(asv, "track_peak") == PEAK_BENCH
    with pytest.raises(ValueError, match="fix:"):
        pick_asv_benchmark(asv, "nonexistent")
    with pytest.raises(ValueError, match="matches"):
        pick_asv_benchmark(asv, "track_")


def test_asv_history_keeps_at_most_six_lines_with_results(tmp_path):
    asv = load_asv_results(write_asv(tmp_path / "asv"))
    rows = asv_history_table(asv, TIME_BENCH)  # default: the structured method only
    assert set(rows["method"]) == {"structured"} and rows["series"].nunique() == 4
    rows = asv_history_table(asv, TIME_BENCH, default_filter=False)
    # 8 combinations, 7 with a result (naive B=32 k=10 is always skipped), 6 drawn
    assert rows.attrs["series_total"] == 7 and rows["series"].nunique() == MAX_ASV_LINES
    assert "method=naive, batch=32, classes=10" not in set(rows["series"])


def test_make_report_with_asv(result_set, tmp_path):
    root = write_asv(tmp_path / "asv")
    out = tmp_path / "r"
    text = make_report([result_set], out, asv_dir=root).read_text(encoding="utf-8")
    assert "](asv_history.png)" in text and TIME_BENCH in text
    for name in PLOT_FILES:
        _assert_png(out / name)
    assert "asv:testbox" in text  # the asv points joined the scaling data as a set
    # asv only, with a chosen benchmark
    text = make_report([], tmp_path / "r2", asv_dir=root, asv_benchmark="track_samples").read_text(encoding="utf-8")
    assert EPOCH_BENCH in text
    _assert_png(tmp_path / "r2" / "asv_history.png")


def test_bad_asv_dir(tmp_path):
    with pytest.raises(ValueError, match="fix:"):
        load_asv_results(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no asv results"):
        load_asv_results(tmp_path / "empty")


# ---------------------------------------------------------------------------
# Through the command line
# ---------------------------------------------------------------------------

def test_cli_report(result_set, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["report", str(result_set), "--out", str(out)]) == 0
    assert (out / "report.md").is_file()
    assert str(out / "report.md") in capsys.readouterr().out


def test_cli_report_without_input_fails_with_one_line(capsys):
    assert main(["report"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing to report" in err


def test_cli_report_bad_folder_fails_with_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no results.csv" in err and "fix:" in err


def test_copy_of_set_with_new_label(result_set, tmp_path):
    """A copy of the same results relabelled cupy-gpu is a second set everywhere."""
    gpu = tmp_path / "gpu_copy"
    shutil.copytree(result_set, gpu)
    env = json.loads((gpu / "environment.json").read_text(encoding="utf-8"))
    env["backend"]["label"] = "cupy-gpu"
    (gpu / "environment.json").write_text(json.dumps(env), encoding="utf-8")
    df = load_results([result_set, gpu])
    assert set(df["set"]) == {"numpy-cpu", "cupy-gpu"}
    slopes = loglog_slopes(df)
    assert set(slopes["set"]) == {"numpy-cpu", "cupy-gpu"}


# ---------------------------------------------------------------------------
# Regressions
# ---------------------------------------------------------------------------

def _captured_figures(monkeypatch) -> dict:
    """Replace report._save so plots are kept as figures (by file name) instead of written."""
    figures = {}
    monkeypatch.setattr(report_module, "_save", lambda fig, path: figures.__setitem__(Path(path).name, fig))
    return figures


def _legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend is not None else []


def test_every_row_damaged_raises_value_error_with_fix(tmp_path, capsys):
    folder = tmp_path / "sweep"
    folder.mkdir()
    with open(folder / "results.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerow({"kind": "gradient", "method": "naive", "batch": "x", "features": 10, "classes": 10,
                         "status": "ok"})
        writer.writerow({"kind": "", "method": "naive", "batch": 1, "features": 10, "classes": 10, "status": "ok"})
    with pytest.raises(ValueError, match="every row is damaged.*fix:") as info:
        load_results([folder])
    assert str(folder / "results.csv") in str(info.value)
    assert main(["report", str(folder), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "every row is damaged" in err


def test_ratio_table_uses_smallest_batch_shared_by_all_sets(tmp_path):
    a = write_set(tmp_path / "a", _rows())  # naive and structured at B = 1 and 32
    b_rows = [_gradient_row(m, b, 1000, k) for m in ("structured", "naive") for b in (32, 96) for k in (10, 100)]
    b = write_set(tmp_path / "b", b_rows, label="cupy-gpu")  # no B = 1
    ratios = ratio_table(load_results([a, b]))
    assert set(ratios["set"]) == {"numpy-cpu", "cupy-gpu"} and (ratios["batch"] == 32).all()
    # no batch shared: each set at its own smallest
    c = write_set(tmp_path / "c", [_gradient_row(m, 96, 1000, k) for m in ("structured", "naive")
                                   for k in (10, 100)], label="cupy-gpu")
    ratios = ratio_table(load_results([a, c]))
    assert ratios.groupby("set")["batch"].unique().map(list).to_dict() == {"numpy-cpu": [1], "cupy-gpu": [96]}
    text = make_report([a, c], tmp_path / "r").read_text(encoding="utf-8")
    assert "](ratio_vs_classes.png)" in text
    _assert_png(tmp_path / "r" / "ratio_vs_classes.png")


def test_plots_leave_out_sets_without_measured_peak(tmp_path, monkeypatch):
    rows = _rows()
    for r in rows:  # torch on the CPU has no peak counter
        r.pop("peak_bytes", None)
    torch = write_set(tmp_path / "torch", rows, label="torch-cpu")
    df = load_results([write_set(tmp_path / "numpy", _rows()), torch])
    assert df.loc[df["set"] == "torch-cpu", "peak_bytes"].isna().all()
    figures = _captured_figures(monkeypatch)
    assert report_module.plot_memory_vs_classes(df, tmp_path / "memory_vs_classes.png") is None
    for ax in figures["memory_vs_classes.png"].axes:
        texts = _legend_texts(ax)
        assert "measured, numpy-cpu" in texts and not any("torch-cpu" in t for t in texts)
    assert report_module.plot_ratio_vs_classes(df, tmp_path / "ratio_vs_classes.png") is None
    time_ax, memory_ax = figures["ratio_vs_classes.png"].axes
    assert {"measured, numpy-cpu", "measured, torch-cpu"} <= set(_legend_texts(time_ax))
    assert "measured, numpy-cpu" in _legend_texts(memory_ax)
    assert not any("torch-cpu" in t for t in _legend_texts(memory_ax))


def test_rerun_without_asv_removes_stale_asv_plot(result_set, tmp_path):
    out = tmp_path / "r"
    make_report([result_set], out, asv_dir=write_asv(tmp_path / "asv"))
    assert (out / "asv_history.png").exists()
    text = make_report([result_set], out).read_text(encoding="utf-8")
    assert not (out / "asv_history.png").exists() and "asv_history.png" not in text
    for name in SCALING_PLOTS:
        _assert_png(out / name)


def test_ratio_plot_cost_model_uses_the_rows_dtype(tmp_path, monkeypatch):
    rows = _rows()
    for r in rows:
        r["dtype"] = "float64"
    df = load_results([write_set(tmp_path / "s", rows)])
    dtypes = []
    real = report_module.gradient_cost

    def spy(method, B, n, k, dtype="float32"):
        dtypes.append(dtype)
        return real(method, B, n, k, dtype)

    monkeypatch.setattr(report_module, "gradient_cost", spy)
    _captured_figures(monkeypatch)
    assert report_module.plot_ratio_vs_classes(df, tmp_path / "ratio_vs_classes.png") is None
    assert dtypes and set(dtypes) == {"float64"}


def test_asv_predictions_come_from_cases_for_epochs_too(tmp_path):
    rows, _ = asv_to_sweep(load_asv_results(write_asv(tmp_path / "asv")))
    epochs = rows[rows["kind"] == "epoch"].sort_values("batch")
    assert list(epochs["batch"]) == [1, 32]
    for _, r in epochs.iterrows():
        cost = epoch_cost("structured", EPOCH_SAMPLES, EPOCH_FEATURES, EPOCH_CLASSES, int(r["batch"]))
        assert r["predicted_flops"] == cost.flops and r["predicted_bytes"] == cost.peak_bytes
        assert r["samples"] == EPOCH_SAMPLES


def test_predictions_skip_non_integral_sizes():
    df = report_module._empty_results()
    df = pd.concat([df, pd.DataFrame([
        {"kind": "gradient", "method": "naive", "batch": 96.5, "features": 784.0, "classes": 10.0, "dtype": "float32"},
        {"kind": "gradient", "method": "naive", "batch": 96.0, "features": 784.0, "classes": 10.0, "dtype": "float32"},
        {"kind": "gradient", "method": "nope", "batch": 96.0, "features": 784.0, "classes": 10.0, "dtype": "float32"},
    ])], ignore_index=True).astype({c: float for c in report_module.NUMERIC_COLUMNS})
    out = report_module._with_predictions(df)
    assert np.isnan(out.loc[0, "predicted_flops"]) and np.isnan(out.loc[2, "predicted_flops"])
    assert out.loc[1, "predicted_flops"] == gradient_cost("naive", 96, 784, 10).flops


def test_single_set_throughput_has_no_fastest_column(report):
    _, text = report
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| B | "))
    assert header == "| B | numpy-cpu (samples/s) |"
    row = next(line for line in lines if line.startswith("| 96 | "))
    assert row.count("|") == 3


def test_asv_history_table_computed_once(result_set, tmp_path, monkeypatch):
    calls = []
    real = report_module.asv_history_table

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(report_module, "asv_history_table", counting)
    text = make_report([result_set], tmp_path / "r", asv_dir=write_asv(tmp_path / "asv")).read_text(encoding="utf-8")
    assert calls == [TIME_BENCH]
    assert "](asv_history.png)" in text and "first and latest commit with a result" in text


def test_multi_line_error_reason_stays_one_list_item(tmp_path):
    reason = "Traceback (most recent call last):\n  File x\nRuntimeError: boom"
    rows = _rows() + [_gradient_row("structured", 8, 1000, 10, "error", reason)]
    text = make_report([write_set(tmp_path / "s", rows)], tmp_path / "r").read_text(encoding="utf-8")
    errors = text.split("Errors:\n\n")[1].split("\n\n")[0].splitlines()
    assert all(line.startswith("- ") for line in errors)
    assert any(line.endswith("Traceback (most recent call last):   File x RuntimeError: boom") for line in errors)


def test_lecture_heading_says_when_every_set_falls_back(tmp_path, report):
    _, text = report
    assert "## The lecture's table at n = k = 1000\n" in text
    rows = [_gradient_row(m, 1, 300, k) for m in ("structured", "naive") for k in (10, 100)]
    text = make_report([write_set(tmp_path / "s", rows)], tmp_path / "r").read_text(encoding="utf-8")
    assert "## The lecture's table at n = k = 1000 (or the largest k measured)\n" in text
