"""make_report and `softmax-bench report`: report.md and its plots from sweep folders and asv
results; flags in every table; the crossover named in text; plots not drawn say why."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import UNRENDERED_PNG, skip_rendering
from report_sets import CPU, GPU, example_sets, grid_rows, write_set
from test_report_results import OLD_COLUMNS

from softmax_core.cli import main
from softmax_core.model.cost import gradient_cost
from softmax_core.report import PLOT_FILES, load_asv_results, make_report
from softmax_core.report.asv import asv_points, history_table, pick_benchmark

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# report.md and the files a report writes, without rendering; pair_report (module-scoped, set up
# before this) renders every view
pytestmark = pytest.mark.usefixtures("unrendered_plots")


def _png(path: Path) -> None:
    assert path.is_file() and path.read_bytes()[:8] == PNG_MAGIC, path


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    return example_sets(tmp_path_factory.mktemp("sets"))


@pytest.fixture(scope="module")
def pair_report(sets, tmp_path_factory) -> tuple[Path, str]:
    """The report of the CPU and the GPU set, its figures built but not rendered."""
    out = tmp_path_factory.mktemp("pair")
    with pytest.MonkeyPatch.context() as mp:
        skip_rendering(mp)
        return out, make_report([sets["cpu"], sets["gpu"]], out).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def rendered_pair(tmp_path_factory) -> tuple[Path, str]:
    """A report of a CPU and a GPU set of fewer points, rendered: every view it draws (set up
    before each test's :func:`unrendered_plots`)."""
    root = tmp_path_factory.mktemp("rendered")
    grid = dict(batches=(1, 1024), classes=(10, 1000), features=(784,), epochs=(32, 1024))
    pair = [write_set(root / m.label, grid_rows(m, **grid), m) for m in (CPU, GPU)]
    return root, make_report(pair, root).read_text(encoding="utf-8")


@pytest.mark.slow
def test_cpu_and_gpu_report_draws_every_view(rendered_pair):
    out, text = rendered_pair
    for name in PLOT_FILES:
        if name != "asv_history.png":
            _png(out / name)
            assert (out / name).read_bytes() != UNRENDERED_PNG  # rendered
            assert f"]({name})" in text
    assert "Plots not drawn" not in text


@pytest.mark.slow
def test_crossover_named_in_text(pair_report):
    _, text = pair_report
    assert (
        "cupy-gpu vs numpy-cpu, whole epochs (synthetic, float32): the GPU is faster from "
        "B = 1024 on; at B = 256 the CPU is faster."
    ) in text


@pytest.mark.slow
def test_unstable_points_flagged_in_every_table(pair_report):
    _, text = pair_report
    assert "numpy-cpu: 2 of" in text and "drawn hollow" in text
    unstable_row = next(
        line
        for line in text.splitlines()
        if "gradient structured B=1 n=784 k=100 float32" in line and "numpy-cpu" in line
    )
    assert "**no** ⚠" in unstable_row
    summary = text.split("## Summary at the smallest batch")[1].split("<details>")[0]
    row = next(
        line
        for line in summary.splitlines()
        if line.startswith("| structured") and "| 784 " in line and "| 100 " in line
    )
    assert "**no** ⚠" in row
    assert "| stable" in text.split("## The lecture's table")[1].split("## Plots")[0]


@pytest.mark.slow
def test_slopes_with_intervals_and_flags(pair_report):
    _, text = pair_report
    slopes = text.split("Fitted exponent p of time ~ k^p")[1].split("###")[0]
    assert "± " in slopes  # stated slopes carry an interval
    assert "; wide)" in slopes and "unstable" in slopes  # and the others say why not


@pytest.mark.slow
def test_custom_grid_report(sets, tmp_path):
    out = tmp_path / "custom"
    text = make_report([sets["custom"]], out).read_text(encoding="utf-8")
    for name in (
        "time_vs_classes.png",
        "time_vs_batch.png",
        "roofline.png",
        "predicted_vs_measured.png",
    ):
        _png(out / name)
    assert "| B = 1 " in text and "| B = 4096 " in text
    assert "`cpu_vs_gpu.png`: needs a CPU set and a GPU set" in text  # one set: said, not drawn
    assert not (out / "cpu_vs_gpu.png").exists()


def test_old_results_file_report_says_it_has_no_intervals(tmp_path):
    folder = write_set(
        tmp_path / "old", grid_rows(CPU, batches=(1, 32), classes=(10, 100)), columns=OLD_COLUMNS
    )
    text = make_report([folder], tmp_path / "r").read_text(encoding="utf-8")
    assert "## Read this first" in text and "drawn without intervals" in text
    assert "stability unknown" in text
    _png(tmp_path / "r" / "time_vs_classes.png")


def test_missing_data_skips_plots_says_why_and_removes_stale_ones(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "cpu_vs_gpu.png").write_bytes(PNG_MAGIC)  # from an earlier report of other sets
    (out / "report.md").write_text("# softmax-bench report\n\n![cpu_vs_gpu](cpu_vs_gpu.png)\n")
    only_epochs = [r for r in grid_rows(CPU, batches=(1, 32)) if r["kind"] == "epoch"]
    text = make_report([write_set(tmp_path / "s", only_epochs)], out).read_text(encoding="utf-8")
    assert "`time_vs_classes.png`: no ok gradient points" in text
    assert not (out / "cpu_vs_gpu.png").exists()
    _png(out / "throughput_vs_batch.png")


def test_only_skipped_and_errors_does_not_crash(tmp_path):
    rows = [
        dict(r, status="error", reason="MemoryError:\nUnable to allocate")
        if r["status"] == "ok"
        else r
        for r in grid_rows(CPU, batches=(1,), classes=(10,))
    ]
    text = make_report([write_set(tmp_path / "s", rows)], tmp_path / "r").read_text(
        encoding="utf-8"
    )
    assert "MemoryError: Unable to allocate" in text  # a multi-line reason stays one list item


def test_nothing_to_report():
    with pytest.raises(ValueError, match="nothing to report"):
        make_report([], "unused")


def test_report_of_a_tiny_sweep(tmp_path, fake_measuring):
    """A sweep's folder makes a report (a real sweep's: the reference set's end-to-end test in
    tests/test_suite.py); one given through a link (``out/sweep/latest``) names its run too."""
    from softmax_core import get_backend
    from softmax_core.runs.cases import Grid
    from softmax_core.runs.sweep import run_sweep

    grid = Grid(
        methods=("structured",),
        batches=(4,),
        classes=(10, 20),
        features=(16,),
        epochs_on="none",
        time_budget_s=0.5,
    )
    out = tmp_path / "sweep"
    run_sweep(grid, get_backend("cpu", "numpy"), out, progress=False, **fake_measuring)
    text = make_report([out], out).read_text(encoding="utf-8")
    assert "## Points measured" in text
    _png(out / "time_vs_classes.png")
    latest = tmp_path / "latest"
    latest.symlink_to(out.name)
    text = make_report([latest], tmp_path / "r").read_text(encoding="utf-8")
    assert f"`{latest} (sweep)`" in text


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("foreign", ["roofline.png", "cpu_vs_gpu.png", "report.md"])
def test_report_overwrites_or_removes_only_what_a_report_of_its_own_wrote(
    sets, tmp_path, cli_run, foreign
):
    """A file in --out that no softmax-bench report wrote is neither replaced nor deleted: the
    report refuses in one line; a folder's own earlier report is redrawn."""
    out = tmp_path / "r"
    out.mkdir()
    (out / foreign).write_text("someone else's")
    code, _, err = cli_run("report", sets["custom"], "--out", out)
    assert code == 1 and len(err.splitlines()) == 1 and str(out / foreign) in err
    assert (out / foreign).read_text() == "someone else's"
    assert sorted(p.name for p in out.iterdir()) == [foreign]
    if foreign == "report.md":
        (out / foreign).unlink()
        code, printed, _ = cli_run("report", sets["custom"], "--out", out)
        assert code == 0 and str(out / "report.md") in printed
        assert cli_run("report", sets["custom"], "--out", out)[0] == 0  # its own: redrawn


def test_cli_report_bad_folder_fails_with_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) != 0
    err = capsys.readouterr().err
    assert "fix:" in err and "Traceback" not in err


# ---------------------------------------------------------------------------
# asv results, in asv's own format, with named parameters
# ---------------------------------------------------------------------------

ASV_COLUMNS = [
    "result",
    "params",
    "version",
    "started_at",
    "duration",
    "stats_ci_99_a",
    "stats_ci_99_b",
    "stats_q_25",
    "stats_q_75",
    "stats_number",
    "stats_repeat",
    "samples",
    "profile",
]
# as the suite names them: a track_time returning the engine's samples (unit seconds), a time_ one
TIME = "gradient.Gradient.track_time"
PEAK = "gradient.Gradient.track_peak_bytes"
EPOCH = "epoch.Epoch.time_epoch"
RSS = "gradient.PeakMem.peakmem_gradient"
GRAD_NAMES = ["method", "batch", "features", "classes", "dtype"]
GRAD_PARAMS = [["'structured'", "'naive'"], ["1", "32"], ["784"], ["10", "100"], ["'float32'"]]
EPOCH_PARAMS = [["'structured'"], ["1", "32"], ["'float32'"]]


def write_asv(root: Path, commits=("aaaa1111", "bbbb2222", "cccc3333")) -> Path:
    """An asv results folder as asv writes it (results format 2)."""

    def bench(name, names, params, type_, unit):
        return {
            "name": name,
            "param_names": names,
            "params": params,
            "type": type_,
            "unit": unit,
            "version": "1",
        }

    benchmarks = {
        TIME: bench(TIME, GRAD_NAMES, GRAD_PARAMS, "track", "seconds"),
        PEAK: bench(PEAK, GRAD_NAMES, GRAD_PARAMS, "track", "bytes"),
        RSS: bench(RSS, GRAD_NAMES, GRAD_PARAMS, "peakmemory", "bytes"),
        EPOCH: bench(EPOCH, ["method", "batch", "dtype"], EPOCH_PARAMS, "time", "seconds"),
        "version": 2,
    }
    root.mkdir(parents=True)
    (root / "benchmarks.json").write_text(json.dumps(benchmarks))
    machine = root / "testbox"
    machine.mkdir()
    (machine / "machine.json").write_text(
        json.dumps(
            {
                "machine": "testbox",
                "os": "Linux",
                "cpu": "Test CPU",
                "num_cpu": "4",
                "ram": "16000000000",
                "version": 1,
            }
        )
    )
    for i, commit in enumerate(commits):
        speed = 1.0 - 0.2 * i
        times = [
            speed * (1e-4 if m == "structured" else 1e-2) * b * k / 10
            for m in ("structured", "naive")
            for b in (1, 32)
            for k in (10, 100)
        ]
        peaks = [
            gradient_cost(m, b, 784, k).peak_bytes
            for m in ("structured", "naive")
            for b in (1, 32)
            for k in (10, 100)
        ]
        times[-1] = None if i == 0 else float("nan")  # failed, then skipped
        wide = (
            0.3 if i == len(commits) - 1 else 0.01
        )  # the latest commit's first point is not stable
        low = [t * (1 - (wide if j == 0 else 0.01)) if t else None for j, t in enumerate(times)]
        high = [t * (1 + (wide if j == 0 else 0.01)) if t else None for j, t in enumerate(times)]
        epochs = [speed * 2.0, speed * 0.1]
        results = {
            TIME: [times, GRAD_PARAMS, "1", 1.7e12, 3.0, low, high],
            PEAK: [peaks, GRAD_PARAMS, "1", 1.7e12, 1.0],
            RSS: [[1e8] * 8, GRAD_PARAMS, "1", 1.7e12, 1.0],
            EPOCH: [
                epochs,
                EPOCH_PARAMS,
                "1",
                1.7e12,
                5.0,
                [e * 0.99 for e in epochs],
                [e * 1.01 for e in epochs],
            ],
        }
        data = {
            "commit_hash": commit * 5,
            "env_name": "virtualenv-py3.11",
            "date": 1.7e12 + i * 86_400_000,
            "params": {"machine": "testbox", "python": "3.11"},
            "python": "3.11",
            "requirements": {},
            "env_vars": {},
            "result_columns": ASV_COLUMNS,
            "results": results,
            "durations": {},
            "version": 2,
        }
        (machine / f"{commit}-virtualenv-py3.11.json").write_text(json.dumps(data))
    return root


def test_asv_read_by_asvs_own_api_with_named_parameters(tmp_path):
    df = load_asv_results(write_asv(tmp_path / "asv"))
    time_rows = df[df["benchmark"] == TIME]
    assert len(time_rows) == 3 * 8
    assert set(time_rows["features"]) == {784} and set(time_rows["dtype"]) == {"float32"}
    assert time_rows["status"].value_counts().to_dict() == {"ok": 21, "skipped": 2, "failed": 1}
    one = time_rows[
        (time_rows["method"] == "structured")
        & (time_rows["batch"] == 1)
        & (time_rows["classes"] == 10)
    ]
    assert one.sort_values("date")["value"].tolist() == pytest.approx([1e-4, 0.8e-4, 0.6e-4])
    assert one.sort_values("date")["stable"].tolist() == [True, True, False]
    assert (one["low"] < one["value"]).all()


def test_asv_points_map_by_name_only(tmp_path):
    points, envs, notes = asv_points(load_asv_results(write_asv(tmp_path / "asv")))
    assert notes[0] == (
        f"asv benchmark {RSS} is not in the plots: its type and unit (peakmemory, bytes) "
        "fill no results.csv column"
    )
    assert (
        set(points["set"]) == {"asv:testbox"}
        and envs["asv:testbox"]["backend"]["cpu_model"] == "Test CPU"
    )
    grads = points[points["kind"] == "gradient"]
    assert len(grads) == 8 and (grads["features"] == 784).all()
    r = grads[
        (grads["method"] == "naive") & (grads["batch"] == 32) & (grads["classes"] == 10)
    ].iloc[0]
    assert (
        r["peak_bytes"] == gradient_cost("naive", 32, 784, 10).peak_bytes
    )  # track_ bytes, not peakmemory
    assert r["time_ci_low_s"] < r["time_median_s"] < r["time_ci_high_s"]
    epochs = points[points["kind"] == "epoch"]
    assert sorted(epochs["batch"]) == [1, 32] and set(epochs["data"]) == {"synthetic"}
    assert sorted(epochs["time_median_s"]) == pytest.approx(
        [0.1 * 0.6, 2.0 * 0.6]
    )  # the latest commit


def test_asv_benchmark_choice_and_history(tmp_path):
    asv = load_asv_results(write_asv(tmp_path / "asv"))
    assert pick_benchmark(asv) == TIME
    assert pick_benchmark(asv, "peak_bytes") == PEAK
    with pytest.raises(ValueError, match="fix:"):
        pick_benchmark(asv, "nonexistent")
    rows = history_table(asv, TIME)
    assert set(rows["method"]) == {"structured"} and rows["series"].nunique() == 4
    assert "features=784" in rows.attrs["subtitle"]


@pytest.mark.slow
def test_make_report_with_asv(sets, tmp_path):
    root = write_asv(tmp_path / "asv")
    out = tmp_path / "r"
    text = make_report([sets["custom"]], out, asv_dir=root).read_text(encoding="utf-8")
    _png(out / "asv_history.png")
    assert TIME in text and "asv:testbox" in text and "99% CI" in text
    asv_only = make_report([], tmp_path / "r2", asv_dir=root, asv_benchmark="time_epoch").read_text(
        encoding="utf-8"
    )
    assert EPOCH in asv_only
    _png(tmp_path / "r2" / "asv_history.png")


def test_bad_asv_dir(tmp_path):
    with pytest.raises(ValueError, match="fix:"):
        load_asv_results(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no asv results"):
        load_asv_results(tmp_path / "empty")


@pytest.mark.slow
def test_throughput_caption_names_only_the_panels_drawn(tmp_path):

    gradients_only = write_set(tmp_path / "g", grid_rows(features=(784,), classes=(10,), epochs=()))
    text = make_report([gradients_only], tmp_path / "g").read_text(encoding="utf-8")
    caption = text[text.index("### Throughput vs batch size") :].split("\n\n")[2]
    assert "whole SGD epochs" not in caption and "(left)" not in caption
    both = write_set(tmp_path / "b", grid_rows(features=(784,), classes=(10,)))
    text = make_report([both], tmp_path / "b").read_text(encoding="utf-8")
    caption = text[text.index("### Throughput vs batch size") :].split("\n\n")[2]
    assert "whole SGD epochs (left)" in caption


def test_an_asv_time_that_is_no_measurement_is_damaged_not_drawn(tmp_path):
    """A negative time, or one outside asv's own interval, is never a point of the report."""
    root = write_asv(tmp_path / "asv")
    path = sorted((root / "testbox").glob("*-virtualenv-py3.11.json"))[-1]
    data = json.loads(path.read_text())
    data["results"][TIME][0][0] = -3e-4  # a negative time
    data["results"][TIME][0][1] *= 100  # far outside its interval
    path.write_text(json.dumps(data))
    df = load_asv_results(root)
    latest = df[(df["benchmark"] == TIME) & (df["commit_hash"] == data["commit_hash"])]
    assert latest["status"].value_counts()["damaged"] == 2
    points, _, _ = asv_points(df)
    assert (points.loc[points["status"] == "ok", "time_median_s"] > 0).all()


@pytest.mark.parametrize("gemm", ["1" + "0" * 400, "-5", '"fast"'])
def test_a_probe_that_is_no_rate_is_reported_without_it(sets, tmp_path, cli_run, gemm):
    """A machine probe of 10**400, 0, a list, text or a negative rate is no rate: the report
    is drawn without the machine's ceilings, never a traceback."""
    folder = tmp_path / "s"
    shutil.copytree(sets["custom"], folder)
    text = (folder / "environment.json").read_text()
    env = json.loads(text)
    env["probe"]["gemm_gflops"] = "GEMM"
    (folder / "environment.json").write_text(json.dumps(env).replace('"GEMM"', gemm))
    code, _, err = cli_run("report", folder, "--out", tmp_path / "r")
    assert code == 0, err
    text = (tmp_path / "r" / "report.md").read_text()
    assert re.search(r"GEMM rate \(probe\)\s*\|\s*—", text)  # shown as not known


def test_an_environment_whose_parts_are_no_objects_is_one_line(sets, tmp_path, cli_run):
    folder = tmp_path / "s"
    shutil.copytree(sets["custom"], folder)
    env = json.loads((folder / "environment.json").read_text())
    (folder / "environment.json").write_text(json.dumps({**env, "backend": "numpy"}))
    code, _, err = cli_run("report", folder, "--out", tmp_path / "r")
    assert code == 1 and "backend is a str, not an object" in err and len(err.splitlines()) == 1


def test_a_report_stopped_while_drawing_leaves_files_the_next_one_redraws(
    sets, tmp_path, cli_run, monkeypatch
):
    from softmax_core import report

    def stopped(df):
        raise KeyboardInterrupt

    out = tmp_path / "r"
    first = next(iter(report.PLOTS))
    with monkeypatch.context() as m:
        m.setitem(report.PLOTS, first, (stopped, *report.PLOTS[first][1:]))
        code, _, err = cli_run("report", sets["custom"], "--out", out)
    assert code == 130 and err.startswith("softmax-bench report: interrupted"), err
    assert f"the report in {out} is half drawn: run the same command again" in err
    code, _, err = cli_run("report", sets["custom"], "--out", out)
    assert code == 0, err


def _set_result(cell: int | None, value):
    """Damage: the time benchmark's whole result (``cell`` None), or one of its cells, set to
    ``value`` (asv loads the file; what it holds is not asv's)."""

    def damage(text: str) -> str:
        data = json.loads(text)
        if cell is None:
            data["results"][TIME] = value
        else:
            data["results"][TIME][cell] = value
        return json.dumps(data)

    return damage


DAMAGES = [
    lambda text: "[" * 100_000 + "]" * 100_000,
    lambda text: text.replace('"commit_hash": "', '"commit_hash": null, "x": "'),
    _set_result(None, 5),
    _set_result(0, "x"),
    _set_result(1, None),
    _set_result(5, ["x"]),
    lambda text: re.sub(r'"date": [0-9.e+]+', '"date": 1e16', text),
    lambda text: re.sub(r'"date": [0-9.e+]+', '"date": -1', text),
]


@pytest.mark.parametrize(
    "damage",
    DAMAGES,
    ids=["nested", "null commit", "result 5", "values x", "params null", "stats x", "far", "-1"],
)
def test_a_damaged_asv_result_file_is_left_out_with_a_note(tmp_path, damage):
    """A result file asv cannot load (JSON nested past any depth), whose commit is not a hash,
    or whose results are not asv's, is left out of the report, which says so; the other
    commits are drawn."""
    root = write_asv(tmp_path / "asv")
    path = sorted((root / "testbox").glob("*-virtualenv-py3.11.json"))[-1]
    path.write_text(damage(path.read_text()))
    asv = load_asv_results(root)
    assert any(n.startswith(f"{path}: left out, not an asv result") for n in asv.attrs["notes"])
    assert asv["commit_hash"].nunique() == 2  # the other commits are read
    if damage is DAMAGES[0]:  # and the report says so, drawn from the others
        text = make_report([], tmp_path / "r", asv_dir=root).read_text(encoding="utf-8")
        assert f"{path}: left out, not an asv result" in text


def test_no_asv_point_is_called_stable_for_its_interval_alone(tmp_path):
    """asv keeps no record of other processes' load while a point ran: a narrow interval is
    'not known' (drawn hollow, ?), a wide one unstable; never 'stable'."""
    points, _, notes = asv_points(load_asv_results(write_asv(tmp_path / "asv")))
    timed = points[points["time_median_s"].notna()]
    assert set(timed["stability"]) <= {"unknown", "unstable"} and not timed["stable"].any()
    assert "unknown" in set(timed["stability"])
    assert any("no asv point is marked stable" in n for n in notes)


@pytest.mark.parametrize("unit", ["bytes", "unit", None])
def test_asv_points_whose_time_benchmark_is_no_time_are_not_drawn_as_times(tmp_path, unit):
    """With the time benchmark's unit not seconds, its points have no time: they are left out
    of the plots (said so), not drawn on a log axis of nothing."""
    root = write_asv(tmp_path / "asv")
    benchmarks = json.loads((root / "benchmarks.json").read_text())
    benchmarks[TIME].pop("unit") if unit is None else benchmarks[TIME].update(unit=unit)
    (root / "benchmarks.json").write_text(json.dumps(benchmarks))
    points, _, _ = asv_points(load_asv_results(root))
    assert (points.loc[points["status"] == "ok", "time_median_s"] > 0).all()
    assert "asv holds no time of this point" in set(points["reason"])
    if unit == "bytes":  # drawn, not a log axis of nothing
        make_report([], tmp_path / "r", asv_dir=root)


@pytest.mark.parametrize("content", ["null", "5", "{entry 5}"])
def test_an_asv_benchmarks_file_that_is_not_asvs_is_one_line(tmp_path, cli_run, content):
    """No benchmarks at all: one line naming the file and the fix; one entry that is no
    benchmark: that benchmark is read without its description."""
    root = write_asv(tmp_path / "asv")
    benchmarks = root / "benchmarks.json"
    if content == "{entry 5}":
        content = json.dumps({**json.loads(benchmarks.read_text()), TIME: 5})
    benchmarks.write_text(content)
    code, _, err = cli_run("report", "--asv", root, "--out", tmp_path / "r")
    if content.startswith("{"):
        assert code == 0, err
    else:
        assert code == 1 and len(err.splitlines()) == 1 and f"{benchmarks}" in err, err
        assert "fix: `asv run --bench just-discover`" in err


def test_a_fifo_among_asv_results_is_left_out_not_read_without_end(tmp_path):
    """A FIFO where asv keeps a result file or a machine.json is no file: left out with a note
    (reading it would wait for a writer that never comes)."""
    root = write_asv(tmp_path / "asv")
    os.mkfifo(root / "testbox" / "fifo.json")
    (root / "testbox" / "machine.json").unlink()
    os.mkfifo(root / "testbox" / "machine.json")
    asv = load_asv_results(root)
    assert any("fifo.json: left out" in n and "not a regular file" in n for n in asv.attrs["notes"])
    assert asv["commit_hash"].nunique() == 3


def test_one_result_set_given_twice_is_one_line(sets, tmp_path, cli_run):
    """The same set twice (as its folder and as its results.csv) would be drawn as two runs that
    agree exactly: refused, naming both spellings."""
    folder = sets["custom"]
    code, _, err = cli_run("report", folder, folder / "results.csv", "--out", tmp_path / "r")
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "are the same result set; fix: name each set once" in err
    assert not (tmp_path / "r").exists()


def test_a_half_written_last_line_is_said_by_the_report_and_compare(
    sets, tmp_path, cli_run, unrendered_plots
):
    """A results.csv cut in the middle of its last row: the report and compare leave the row out
    and say so, as resume does, instead of counting the rest as the whole set."""
    folder = tmp_path / "s"
    shutil.copytree(sets["custom"], folder)
    path = folder / "results.csv"
    path.write_text(path.read_text()[:-7])
    code, _, err = cli_run("report", folder, "--out", tmp_path / "r")
    assert code == 0, err
    text = (tmp_path / "r" / "report.md").read_text()
    assert f"{path}: a half-written last line was left out" in text
    code, out, err = cli_run("compare", sets["custom"], folder)
    assert code == 0 and "1 damaged row(s) of B left out" in out, err


def test_a_results_file_saved_with_a_byte_order_mark_is_read(
    sets, tmp_path, cli_run, unrendered_plots
):
    """A spreadsheet's "CSV UTF-8" starts with a byte order mark: read as the same columns, not
    refused for an unknown column '\\ufeffrun_id'."""
    folder = tmp_path / "s"
    shutil.copytree(sets["custom"], folder)
    path = folder / "results.csv"
    path.write_text("\ufeff" + path.read_text(), encoding="utf-8")
    code, _, err = cli_run("report", folder, "--out", tmp_path / "r")
    assert code == 0 and err == "", err


def test_a_report_into_another_sets_folder_is_refused_and_touches_nothing(
    sets, tmp_path, cli_run, unrendered_plots
):
    """``report A --out B``, B a sweep's folder: its report.md would describe A beside B's own
    results.csv. Refused; reporting B with A, or B into itself, is not."""
    b = tmp_path / "b"
    shutil.copytree(sets["custom"], b)
    before = sorted(p.name for p in b.iterdir())
    code, _, err = cli_run("report", sets["custom"], "--out", b)
    assert code == 1 and "holds a result set (results.csv) this report leaves out" in err
    assert sorted(p.name for p in b.iterdir()) == before
    assert cli_run("report", b, "--out", b)[0] == 0
