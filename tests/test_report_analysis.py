"""softmax_core.report.analysis: exponents with intervals (flagged when they cannot be stated),
ratios, throughput against the machine's bound, the time model's error, the CPU/GPU crossover."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from report_sets import CPU, GPU, Machine, grid_rows, row, write_set

from softmax_core.report.analysis import (
    WIDE_SLOPE,
    cpu_gpu_table,
    crossovers,
    fit_loglog,
    lecture_rows,
    loglog_slopes,
    ratio_table,
    throughput_table,
    time_model_error,
)
from softmax_core.report.results import load_results
from softmax_core.runs.cases import EPOCH_CLASSES, EPOCH_FEATURES, Case

# a machine with no per-call overhead, so that times follow the cost model's exponents in k
PURE = Machine("numpy-cpu", overhead_s=0.0)


@pytest.mark.parametrize("p", [0.5, 1.0, 2.0])
def test_fit_recovers_power_laws_with_a_narrow_interval(p):
    x = np.array([10, 100, 1000, 10000], float)
    y = 3e-6 * x**p
    fit = fit_loglog(x, y, y * 0.99, y * 1.01)
    assert fit["slope"] == pytest.approx(p) and fit["points"] == 4
    assert 0 < fit["half_width"] < 0.02  # from the points' 1% CIs: exact fit, tiny interval


def test_fit_interval_is_wide_where_the_points_are_not_a_power_law():
    x = np.array([10, 100, 1000], float)
    y = np.array([1e-4, 1.1e-4, 3e-3])  # flat, then steep: no single exponent
    fit = fit_loglog(x, y)
    assert fit["half_width"] > WIDE_SLOPE and fit["low"] < fit["slope"] < fit["high"]


def test_fit_needs_two_distinct_x_and_ignores_bad_points():
    assert math.isnan(fit_loglog([10], [1.0])["slope"])
    assert math.isnan(fit_loglog([10, 10], [1.0, 2.0])["slope"])
    fit = fit_loglog([10, 100, -1, 1000, np.nan], [1, 10, 5, 100, 3])
    assert fit["slope"] == pytest.approx(1.0) and fit["points"] == 3
    two = fit_loglog([10, 100], [1.0, 10.0])  # no residual, no CIs: no interval at all
    assert two["slope"] == pytest.approx(1.0) and math.isnan(two["half_width"])


def _frame(tmp_path, rows, machine=CPU, name="cpu"):
    return load_results(write_set(tmp_path / name, rows, machine)).frame


def test_slopes_of_known_exponents_are_stated(tmp_path):
    df = _frame(
        tmp_path,
        grid_rows(PURE, batches=(1,), classes=(100, 300, 1000), features=(784,), epochs=()),
    )
    slopes = loglog_slopes(df).set_index("method")
    # bandwidth-bound here: naive moves a k x nk Jacobian per example, structured an n x k gradient
    assert slopes.loc["naive", "slope"] == pytest.approx(2.0, abs=0.05)
    assert slopes.loc["naive", "flags"] == "" and "±" in slopes.loc["naive", "text"]
    assert slopes.loc["structured", "slope"] == pytest.approx(1.0, abs=0.1)


def test_wide_and_unstable_slopes_are_flagged_not_stated(tmp_path):
    rows = grid_rows(
        CPU,
        batches=(1,),
        classes=(10, 100, 1000),
        features=(784,),
        epochs=(),
        unstable={("naive", 1, 784, 100)},
    )
    slopes = loglog_slopes(_frame(tmp_path, rows)).set_index("method")
    structured = slopes.loc["structured"]  # overhead-bound at small k: not one power law
    assert "wide" in structured["flags"] and structured["text"].startswith("≈")
    assert "unstable" in slopes.loc["naive", "flags"] and slopes.loc["naive", "text"].startswith(
        "≈"
    )
    assert "±" not in structured["text"]


def test_two_point_slopes_say_so(tmp_path):
    rows = grid_rows(CPU, batches=(1, 4096), classes=(10, 2000), features=(784,), epochs=())
    slopes = loglog_slopes(_frame(tmp_path, rows))
    assert (slopes["points"] == 2).all() and slopes["flags"].str.contains("2 points").all()


def test_old_files_slopes_say_stability_unknown(tmp_path):
    from test_report_results import OLD_COLUMNS

    folder = write_set(
        tmp_path / "old",
        grid_rows(PURE, batches=(1,), classes=(100, 300, 1000), epochs=()),
        columns=OLD_COLUMNS,
    )
    slopes = loglog_slopes(load_results(folder).frame)
    assert slopes["flags"].str.contains("stability unknown").all()


def test_ratio_table_with_interval_and_cost_model(tmp_path):
    rows = grid_rows(CPU, batches=(1, 32), classes=(10, 100), features=(784,), epochs=())
    ratios = ratio_table(_frame(tmp_path, rows))
    assert len(ratios) == 4
    assert (ratios["time_ratio_low"] < ratios["time_ratio"]).all()
    assert (ratios["time_ratio"] < ratios["time_ratio_high"]).all()
    r = ratios[(ratios["batch"] == 1) & (ratios["classes"] == 100)].iloc[0]
    naive, structured = (
        Case("gradient", "naive", 1, 784, 100).cost,
        Case("gradient", "structured", 1, 784, 100).cost,
    )
    assert r["predicted_flops_ratio"] == pytest.approx(naive.flops / structured.flops)
    assert r["predicted_memory_ratio"] == pytest.approx(naive.peak_bytes / structured.peak_bytes)


def test_throughput_has_intervals_and_the_machines_bound(tmp_path):
    table = throughput_table(
        _frame(tmp_path, grid_rows(CPU, batches=(1, 32), classes=(10,), features=(784,)))
    )
    assert set(table["source"]) == {"epoch", "gradient"}
    assert (table["samples_per_s_low"] < table["samples_per_s"]).all()
    # the machine's bound is the roofline at the set's probed ceilings: never beaten by the
    # model's points
    assert (table["bound_samples_per_s"] > table["samples_per_s"]).all()
    epoch = table[(table["source"] == "epoch") & (table["batch"] == 32)].iloc[0]
    cost = Case(
        "epoch", "structured", 32, EPOCH_FEATURES, EPOCH_CLASSES, "float32", "synthetic"
    ).cost
    roof = max(cost.flops / (CPU.gemm_gflops * 1e9), cost.traffic_bytes / (CPU.copy_gbps * 1e9))
    assert epoch["bound_samples_per_s"] == pytest.approx(60_000 / roof)


def test_time_model_error(tmp_path):
    err = time_model_error(
        _frame(tmp_path, grid_rows(CPU, batches=(1,), classes=(10,), features=(784,)))
    )
    assert np.allclose(err["median_ratio"], 1 / 1.3)  # the fabricated model predicts 30% slow
    assert (err["within_2x"] == 1).all() and np.allclose(err["worst_factor"], 1.3)


def test_crossover_named_from_cpu_and_gpu_sets(tmp_path):
    grid = dict(
        batches=(1, 8, 32, 96, 256, 1024), classes=(10,), features=(784,), epochs=(1, 32, 1024)
    )
    df = pd.concat(
        [
            _frame(tmp_path, grid_rows(CPU, **grid)),
            _frame(tmp_path, grid_rows(GPU, **grid), GPU, "gpu"),
        ],
        ignore_index=True,
    )
    cross = crossovers(cpu_gpu_table(df))
    structured = cross[(cross["kind"] == "gradient") & (cross["method"] == "structured")].iloc[0]
    assert structured["crossover_batch"] == 1024 and structured["below_batch"] == 256
    assert structured["text"] == "the GPU is faster from B = 1024 on; at B = 256 the CPU is faster"
    naive = cross[cross["method"] == "naive"].iloc[0]
    assert naive["crossover_batch"] == 8
    assert cross.iloc[0]["kind"] == "epoch"  # epochs first: the throughput story


def test_crossover_ties_and_no_crossover():
    def table(cpu, gpu, ci=0.0):
        rows = []
        for b, (c, g) in enumerate(zip(cpu, gpu)):
            rows.append(
                {
                    "cpu_set": "c",
                    "gpu_set": "g",
                    "kind": "gradient",
                    "method": "structured",
                    "features": 784,
                    "classes": 10,
                    "dtype": "float32",
                    "data": "",
                    "batch": 2**b,
                    "speedup": c / g,
                    "faster": "gpu" if c / g > 1 + ci else "cpu" if c / g < 1 - ci else "tie",
                }
            )
        return pd.DataFrame(rows)

    assert "no crossover up to B = 4" in crossovers(table([1, 1, 1], [2, 2, 2]))["text"].item()
    tie = crossovers(table([1, 1, 3], [2, 1, 1], ci=0.1)).iloc[0]
    assert tie["crossover_batch"] == 4 and "tie" in tie["text"]
    assert "every batch size" in crossovers(table([3, 3], [1, 1]))["text"].item()


def test_lecture_rows_fall_back_to_the_largest_k(tmp_path):
    df = _frame(
        tmp_path, grid_rows(CPU, batches=(1, 96), classes=(10, 100), features=(784,), epochs=())
    )
    rows, n, k = lecture_rows(df)
    assert (n, k) == (784, 100)
    assert set(zip(rows["method"], rows["batch"])) == {
        ("naive", 1),
        ("naive_batched", 1),
        ("naive_batched", 96),
        ("structured", 1),
        ("structured", 96),
    }
    skipped = row(
        Case("gradient", "naive_batched", 96, 1000, 1000), status="skipped", reason="too big"
    )
    at_1000 = _frame(
        tmp_path, [skipped, row(Case("gradient", "structured", 96, 1000, 1000))], name="l"
    )
    rows, n, k = lecture_rows(at_1000)
    assert (n, k) == (1000, 1000) and "skipped" in set(rows["status"])


@pytest.mark.parametrize(
    "others, says",
    [
        ([0.0, 0.0, 0.02], "the spread is the machine's own drift"),
        ([0.6, 0.7, 0.0], "measure again on a quieter machine"),
    ],
)
def test_read_this_first_says_whether_other_processes_were_busy(others, says):
    from softmax_core.report.headline import notes_section

    df = pd.DataFrame(
        {"set": "numpy-cpu", "status": "ok", "stability": "unstable", "others_cpu": others}
    )
    text = notes_section([], df)
    assert "3 of 3 ok points are not marked stable" in text and says in text


def test_the_headline_says_what_the_hardware_does_in_plain_sentences(tmp_path):
    from softmax_core.report.headline import headline_section

    df = _frame(tmp_path, grid_rows(CPU))
    text = headline_section(df)
    assert text.startswith("**numpy-cpu**: One structured gradient at n = 1000, k = 1000, B = 1")
    assert "the naive one (explicit Jacobian) takes" in text and "as long" in text
    assert "Whole SGD epochs run fastest at B = " in text
    assert "of the probed GEMM rate" in text and "its time goes to" in text


def test_the_headline_names_the_naive_gradient_it_quotes(tmp_path):
    """With the naive gradient skipped at the lecture's point, the batched one measured there is
    quoted under its own name, not as 'the naive one'."""
    from softmax_core.report.headline import headline_section

    df = _frame(tmp_path, grid_rows(CPU, epochs=()))
    df = df[~((df["method"] == "naive") & (df["classes"] == 1000))]
    text = headline_section(df)
    assert "the batched naive one (naive_batched: a batch of explicit Jacobians) takes" in text
    assert "the naive one (explicit Jacobian)" not in text


def test_the_headline_leaves_out_what_was_not_measured(tmp_path):
    from softmax_core.report.headline import headline_section

    df = _frame(tmp_path, grid_rows(CPU, epochs=()))
    text = headline_section(df)
    assert "epochs" not in text and "structured gradient at" in text


def test_the_headline_names_overhead_only_where_a_call_is_short_enough_for_it(tmp_path):
    """Bound by neither ceiling: a call of microseconds is overhead; one of 84 ms at a quarter
    of the GEMM rate is not, and the opening does not say it is."""
    from softmax_core.report.headline import headline_section

    slow = Machine(efficiency=0.05)  # every point at 5% of the ceilings
    df = _frame(tmp_path, grid_rows(slow, epochs=()), machine=slow)
    largest = df["time_median_s"][df["method"] == "structured"].max()
    assert largest > 1e-3 and "neither ceiling: it runs below both probed rates" in (
        headline_section(df)
    )
    short = df.assign(**{c: df[c] * 1e-4 for c in ("time_median_s", "time_ci_low_s")})
    short["time_ci_high_s"] = short["time_median_s"] * 1.01  # the shares as they were
    assert "neither ceiling: per-call overhead" in headline_section(short)
    flat = df.assign(time_median_s=0.07)  # Dask: 70 ms a call, whatever its size
    assert "neither ceiling: per-call overhead" in headline_section(flat)


def test_the_headline_says_which_batches_the_fastest_is_not_told_apart_from(tmp_path):
    from softmax_core.report.headline import headline_section

    df = _frame(tmp_path, grid_rows(CPU))
    text = headline_section(df)
    assert "Whole SGD epochs run fastest at B = " in text and "within its interval" not in text
    epochs = (df["kind"] == "epoch") & (df["method"] == "structured")
    low = df["samples_per_s_low"].where(~epochs, df["samples_per_s"] / 100)  # wide intervals
    wide = df.assign(samples_per_s_low=low)
    assert "within its interval):" in headline_section(wide)


def test_the_headline_gives_each_time_with_its_interval_and_flags_an_unstable_one(tmp_path):
    from softmax_core.report.headline import headline_section

    df = _frame(tmp_path, grid_rows(CPU, epochs=()))
    text = headline_section(df)
    assert re.search(r"B = 1 takes [0-9.]+ \S?s \([0-9.]+–[0-9.]+\) and peaks", text), text
    unstable = headline_section(df.assign(stability="unstable"))
    assert re.search(r"B = 1 takes [0-9.]+ \S?s \([0-9.]+–[0-9.]+\) ⚠ and peaks", unstable)
