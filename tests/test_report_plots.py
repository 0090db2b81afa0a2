"""softmax_core.report plots: every n, B and k of any grid gets a panel; intervals are drawn;
points not marked stable are hollow; the roofline's ceilings are the set's probe."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from report_sets import CPU, GPU, Machine, grid_rows, write_set
from test_report_results import OLD_COLUMNS

from softmax_core.report.plots import (
    NotDrawn,
    time_vs_batch,
    time_vs_classes,
)
from softmax_core.report.plots_machine import (
    cpu_vs_gpu,
    predicted_vs_measured,
    roofline,
    throughput_vs_batch,
)
from softmax_core.report.plots_naive import memory_vs_classes, ratio_vs_classes
from softmax_core.report.results import load_results

CUSTOM = dict(batches=(1, 4096), classes=(10, 2000), features=(784, 1000), epochs=(1, 4096))


@pytest.fixture(scope="module")
def custom(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("custom")
    return load_results(
        write_set(root / "cpu", grid_rows(CPU, unstable={("structured", 1, 784, 10)}, **CUSTOM))
    ).frame


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("pair")
    grid = dict(batches=(1, 32, 1024), classes=(10, 100), features=(784,), epochs=(1, 32, 1024))
    return load_results(
        [
            write_set(root / "cpu", grid_rows(CPU, **grid)),
            write_set(root / "gpu", grid_rows(GPU, **grid), GPU),
        ]
    ).frame


def _titles(fig) -> set[str]:
    return {ax.get_title() for ax in fig.axes}


def _hollow_markers(ax) -> int:
    return sum(
        len(line.get_xdata())
        for line in ax.get_lines()
        if line.get_marker() not in ("None", "", None)
        and line.get_linestyle() == "None"
        and to_rgba(line.get_markerfacecolor()) == to_rgba("white")
    )


def _error_bars(ax) -> int:
    return sum(len(c.get_segments()) for c in ax.collections if hasattr(c, "get_segments"))


def test_custom_grid_draws_every_batch_and_class_count(custom):
    fig = time_vs_classes(custom)
    assert len(fig.axes) == 4
    assert _titles(fig) == {
        "n = 784, B = 1",
        "n = 784, B = 4096",
        "n = 1000, B = 1",
        "n = 1000, B = 4096",
    }
    by_k = time_vs_batch(custom)
    assert _titles(by_k) == {
        "n = 784, k = 10",
        "n = 784, k = 2000",
        "n = 1000, k = 10",
        "n = 1000, k = 2000",
    }
    for ax in fig.axes:  # both k values on every panel's axis
        assert sorted(ax.get_xticks()) == [10, 2000]
    assert len(memory_vs_classes(custom).axes) == 4


def test_default_sized_grid_wraps_into_all_twelve_panels(tmp_path):
    grid = dict(
        batches=(1, 8, 32, 96, 256, 1024), classes=(10, 100), features=(784, 1000), epochs=()
    )
    df = load_results(write_set(tmp_path / "s", grid_rows(CPU, **grid))).frame
    fig = time_vs_classes(df)
    assert len(fig.axes) == 12
    assert {f"n = {n}, B = {b}" for n in (784, 1000) for b in grid["batches"]} == _titles(fig)


def test_intervals_drawn_and_unstable_points_hollow(custom):
    fig = time_vs_classes(custom)
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert all(_error_bars(ax) > 0 for ax in fig.axes)
    assert _hollow_markers(axes["n = 784, B = 1"]) == 1
    assert _hollow_markers(axes["n = 1000, B = 1"]) == 0
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "bars: 95% CI of the median" in legend and "hollow: not marked stable" in legend


def test_old_file_drawn_without_bars_all_hollow(tmp_path):
    folder = write_set(
        tmp_path / "old",
        grid_rows(CPU, batches=(1,), classes=(10, 100), features=(784,)),
        columns=OLD_COLUMNS,
    )
    fig = time_vs_classes(load_results(folder).frame)
    (ax,) = fig.axes
    assert _error_bars(ax) == 0 and _hollow_markers(ax) == 6  # 3 methods x 2 k, none marked stable


def test_a_panel_where_nothing_ran_is_still_drawn(tmp_path):
    tiny = Machine(memory_bytes=1e6)  # at B = 1, n = 784, k = 2000 every method's peak is over 1 MB
    df = load_results(
        write_set(
            tmp_path / "s",
            grid_rows(tiny, batches=(1,), classes=(10, 2000), features=(784,), epochs=()),
        )
    ).frame
    fig = time_vs_batch(df)
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert set(axes) == {"n = 784, k = 10", "n = 784, k = 2000"}
    assert [t.get_text() for t in axes["n = 784, k = 2000"].texts] == ["no point ran"]


def test_roofline_ceilings_come_from_environment_json(pair):
    fig = roofline(pair)
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert set(axes) == {"numpy-cpu", "cupy-gpu"}
    for title, machine in (("numpy-cpu", CPU), ("cupy-gpu", GPU)):
        roof = next(line for line in axes[title].get_lines() if line.get_color() == "black")
        x, y = np.asarray(roof.get_xdata()), np.asarray(roof.get_ydata())
        assert y.max() == pytest.approx(machine.gemm_gflops * 1e9)
        assert y[0] == pytest.approx(machine.copy_gbps * 1e9 * x[0])
        assert any("(probe)" in t.get_text() for t in axes[title].texts)


def test_throughput_draws_bands_and_the_bound(pair):
    fig = throughput_vs_batch(pair)
    assert _titles(fig) == {"whole SGD epochs", "structured gradient calls"}
    for ax in fig.axes:
        assert any(line.get_linestyle() == ":" for line in ax.get_lines())  # the machine's bound
        assert len(ax.collections) >= 2  # one CI band per set
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "machine bound (roofline)" in labels and "band: 95% CI" in labels


def test_cpu_vs_gpu_only_with_both(pair, custom):
    fig = cpu_vs_gpu(pair)
    assert "whole epochs" in _titles(fig) and "structured gradient" in _titles(fig)
    with pytest.raises(NotDrawn, match="CPU set and a GPU set"):
        cpu_vs_gpu(custom)


def test_predicted_vs_measured_needs_predictions(custom):
    fig = predicted_vs_measured(custom)
    (ax,) = fig.axes
    assert _error_bars(ax) > 0
    with pytest.raises(NotDrawn, match="predicted"):
        predicted_vs_measured(custom.assign(predicted_time_s=np.nan))


def test_ratio_plot_rows_time_and_memory_per_n(custom):
    fig = ratio_vs_classes(custom)
    assert _titles(fig) == {
        "time, n = 784",
        "time, n = 1000",
        "peak memory, n = 784",
        "peak memory, n = 1000",
    }
