"""softmax_core.report.results: valid rows only (results.row_case), one row per point, dtype and
data source kept apart, old files read leniently, and errors that name a fix."""

from __future__ import annotations

import csv

import pytest
from report_sets import CPU, GPU, grid_rows, row, write_set

from softmax_core.report.fmt import si, with_interval
from softmax_core.report.results import load_results
from softmax_core.runs.cases import EPOCH_CLASSES, EPOCH_FEATURES, Case
from softmax_core.runs.resultformat import COLUMNS

OLD_COLUMNS = (
    "run_id",
    "timestamp",
    "backend",
    "device",
    "kind",
    "method",
    "batch",
    "features",
    "classes",
    "dtype",
    "status",
    "reason",
    "time_median_s",
    "time_iqr_s",
    "time_min_s",
    "repeats",
    "host_time_median_s",
    "peak_bytes",
    "predicted_bytes",
    "predicted_lecture_bytes",
    "predicted_flops",
    "predicted_traffic_bytes",
    "predicted_time_s",
    "samples",
    "samples_per_s",
    "gflops",
    "gbytes_per_s",
)


def test_types_stability_and_machine_ceilings(tmp_path):
    rows = grid_rows(CPU, batches=(1, 32), classes=(10, 100), unstable={("naive", 1, 1000, 10)})
    sets = load_results(
        [write_set(tmp_path / "cpu", rows), write_set(tmp_path / "gpu", grid_rows(GPU), GPU)]
    )
    df = sets.frame
    assert list(sets.environments) == ["numpy-cpu", "cupy-gpu"]
    assert set(df["set"]) == {"numpy-cpu", "cupy-gpu"}
    assert df.groupby("set")["device_kind"].first().to_dict() == {
        "cupy-gpu": "gpu",
        "numpy-cpu": "cpu",
    }
    # the ceilings come from each folder's environment.json
    assert df.groupby("set")["gemm_gflops"].first().to_dict() == {
        "cupy-gpu": GPU.gemm_gflops,
        "numpy-cpu": CPU.gemm_gflops,
    }
    assert df["batch"].dtype.kind in "if" and df["time_ci_low_s"].dtype.kind == "f"
    unstable = df[(df["set"] == "numpy-cpu") & ~df["stable"] & (df["status"] == "ok")]
    assert unstable[["method", "batch", "classes"]].values.tolist() == [["naive", 1, 10]]
    assert set(df.loc[df["status"] != "ok", "stability"]) <= {"unknown"}
    ok = df[df["status"] == "ok"]
    assert (ok["samples_per_s_low"] <= ok["samples_per_s"]).all()
    assert (ok["samples_per_s"] <= ok["samples_per_s_high"]).all()
    assert sets.notes == []


def test_damaged_rows_left_out_by_the_definition_resume_uses(tmp_path):
    good = [row(Case("gradient", "structured", 1, 784, k)) for k in (10, 100)]
    bad = [
        dict(good[0], batch="1.5"),
        dict(good[0], method="nope"),
        dict(good[0], status="weird"),
        dict(good[0], time_median_s="", classes=7),
    ]  # an ok row without a time
    sets = load_results(write_set(tmp_path / "s", good + bad))
    assert len(sets.frame) == 2
    assert any("4 damaged row(s)" in n for n in sets.notes)


def test_duplicates_keep_the_last_row_and_dtype_and_data_stay_apart(tmp_path):
    first = row(Case("gradient", "structured", 8, 784, 10), spread=0.2)
    again = row(Case("gradient", "structured", 8, 784, 10))
    f64 = row(Case("gradient", "structured", 8, 784, 10, "float64"))
    syn = row(Case("epoch", "structured", 8, EPOCH_FEATURES, EPOCH_CLASSES, "float32", "synthetic"))
    mnist = row(Case("epoch", "structured", 8, EPOCH_FEATURES, EPOCH_CLASSES, "float32", "mnist"))
    sets = load_results(write_set(tmp_path / "s", [first, again, f64, syn, mnist]))
    df = sets.frame
    assert len(df) == 4
    grad32 = df[(df["kind"] == "gradient") & (df["dtype"] == "float32")]
    assert len(grad32) == 1 and grad32["stable"].item()  # the last row written wins
    assert sorted(df.loc[df["kind"] == "epoch", "data"]) == ["mnist", "synthetic"]
    assert any("1 repeated row" in n for n in sets.notes)


def test_old_results_file_is_read_without_intervals_and_says_so(tmp_path):
    folder = write_set(
        tmp_path / "old", grid_rows(CPU, batches=(1,), classes=(10, 100)), columns=OLD_COLUMNS
    )
    sets = load_results(folder)
    df = sets.frame
    assert df["time_ci_low_s"].isna().all() and not df["stable"].any()
    assert set(df["stability"]) == {"unknown"}
    assert set(df.loc[df["kind"] == "epoch", "data"]) == {
        "synthetic"
    }  # old epochs ran on synthetic data
    assert any("predates the confidence-interval" in n for n in sets.notes)


def test_half_written_last_line_is_ignored(tmp_path):
    folder = write_set(tmp_path / "s", grid_rows(CPU, batches=(1,), classes=(10,), epochs=()))
    with open(folder / "results.csv", "a", encoding="utf-8") as fh:
        fh.write("fab123,2026,numpy,cpu,gradient,structured,4")
    assert len(load_results(folder).frame) == 3


def test_same_label_gets_the_folder_name(tmp_path):
    rows = grid_rows(CPU, batches=(1,), classes=(10,), epochs=())
    sets = load_results([write_set(tmp_path / "a", rows), write_set(tmp_path / "b", rows)])
    assert list(sets.environments) == ["numpy-cpu (a)", "numpy-cpu (b)"]


@pytest.mark.parametrize(
    "case",
    ["missing", "file", "no_csv", "empty", "header_only", "foreign", "all_damaged", "bad_env"],
)
def test_bad_input_raises_value_error_with_fix(tmp_path, case):
    folder = tmp_path / "s"
    if case == "file":
        folder.write_text("x")
    elif case != "missing":
        folder.mkdir()
    if case == "empty":
        (folder / "results.csv").write_text("")
    if case == "header_only":
        (folder / "results.csv").write_text(",".join(COLUMNS) + "\n")
    if case == "foreign":
        (folder / "results.csv").write_text("a,b\n1,2\n")
    if case == "all_damaged":
        with open(folder / "results.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS)
            w.writeheader()
            w.writerow(
                {
                    "kind": "gradient",
                    "method": "naive",
                    "batch": "x",
                    "features": 1,
                    "classes": 1,
                    "status": "ok",
                }
            )
    if case == "bad_env":
        write_set(folder, grid_rows(CPU, batches=(1,), classes=(10,), epochs=()))
        (folder / "environment.json").write_text("{not json")
    with pytest.raises(ValueError, match="fix:"):
        load_results(folder)


def test_one_si_formatter():
    assert si(4e9, "B") == "4.00 GB" and si(384e9, "B") == "384 GB" and si(31360, "B") == "31.4 kB"
    assert (
        si(3.3e-5, "s") == "33.0 µs" and si(1.5, "s") == "1.50 s" and si(2e-10, "s") == "0.200 ns"
    )
    assert si(1.2e9, "FLOP/s") == "1.20 GFLOP/s" and si(999.96e3, "B") == "1.00 MB"
    assert si(float("nan"), "s") == "—" and si(None, "B") == "—" and si(0.5, "B") == "0.500 B"
    # far past the largest prefix: a number, not a line of 300 digits
    assert si(1e300, "B") == "1.00e+300 B" and si(2e17, "B") == "200000 TB"
    assert with_interval(3.3e-5, 3.28e-5, 3.34e-5) == "33.0 µs (32.8–33.4)"
    assert with_interval(1.5, float("nan"), 2.0) == "1.50 s"


def test_a_folder_measured_at_several_thread_counts_reads_as_one_set_per_count(tmp_path):
    rows = grid_rows(CPU, batches=(1, 32), classes=(10, 100), epochs=())
    both = [{**r, "threads": t} for t in (1, 2) for r in rows]
    sets = load_results(write_set(tmp_path / "cpu", both))
    assert list(sets.environments) == ["numpy-cpu (1 thread)", "numpy-cpu (2 threads)"]
    counts = sets.frame.groupby("set").size()
    assert counts.iloc[0] == counts.iloc[1] == len(rows)


def test_a_damaged_csv_is_one_line_naming_the_file(tmp_path):
    folder = write_set(tmp_path / "cpu", grid_rows(CPU, batches=(1,), classes=(10,), epochs=()))
    with open(folder / "results.csv", "a") as fh:
        fh.write('gradient,"' + "x" * 200_000 + "\n")  # an unclosed quote past csv's field limit
    with pytest.raises(ValueError, match="not readable as CSV.*fix:"):
        load_results(folder)


@pytest.mark.parametrize("version", ["x", None, True, 0, 2.5])
def test_an_environment_whose_format_version_is_not_one_is_refused(tmp_path, version):
    import json

    folder = write_set(tmp_path / "cpu", grid_rows(CPU, batches=(1,), classes=(10,), epochs=()))
    env = json.loads((folder / "environment.json").read_text())
    (folder / "environment.json").write_text(json.dumps({**env, "format_version": version}))
    with pytest.raises(ValueError, match="not a result format"):
        load_results(folder)


def test_a_set_with_intervals_is_not_read_as_format_1_for_lack_of_a_later_column(tmp_path):
    from softmax_core.runs.resultformat import COLUMNS, read_results

    rows = grid_rows(CPU, batches=(1,), classes=(10,), epochs=())
    columns = [c for c in COLUMNS if c not in ("threads", "workers", "chunk_rows", "others_cpu")]
    folder = write_set(tmp_path / "cpu", rows, columns=columns)
    assert read_results(folder / "results.csv").version == 2
    assert not any("predates" in n for n in load_results(folder).notes)


def test_each_thread_set_says_its_own_blas_threads_and_no_row_is_lost(tmp_path):
    from softmax_core.report.markdown import environment_section

    rows = grid_rows(CPU, batches=(1, 32), classes=(10,), epochs=())
    both = [{**r, "threads": t} for t in (1, 2) for r in rows] + [{**rows[0], "batch": 8}]
    sets = load_results(write_set(tmp_path / "cpu", both))
    assert list(sets.environments)[-1] == "numpy-cpu (threads not recorded)"
    assert len(sets.frame) == len(both)
    text = environment_section(sets.environments)
    assert "(1 thread)" in text and "(2 threads)" in text


def test_a_set_of_one_thread_count_says_its_rows_count_not_the_probes(tmp_path):
    """environment.json's BLAS record is taken when the machine is probed; the rows say the
    threads each point ran with, and the report shows theirs."""
    import json

    from softmax_core.report.markdown import environment_section

    rows = grid_rows(CPU, batches=(1,), classes=(10,), epochs=())
    folder = write_set(tmp_path / "cpu", [{**r, "threads": 2} for r in rows])
    env = json.loads((folder / "environment.json").read_text())
    env["blas"] = [{"user_api": "blas", "internal_api": "openblas", "num_threads": 1}]
    (folder / "environment.json").write_text(json.dumps(env))
    sets = load_results(folder)
    assert list(sets.environments) == ["numpy-cpu"]
    assert "openblas None (2 threads)" in environment_section(sets.environments)


@pytest.mark.parametrize("changes, said", [("none", ""), ("sha256:0123", " + uncommitted")])
def test_a_set_measured_with_uncommitted_changes_says_so_beside_its_commit(tmp_path, changes, said):
    import json

    from softmax_core.report.markdown import environment_section

    folder = write_set(tmp_path / "cpu", grid_rows(CPU, batches=(1,), classes=(10,), epochs=()))
    env = json.loads((folder / "environment.json").read_text())
    env.update(git_commit="0123456789abcdef", git_changes=changes)
    (folder / "environment.json").write_text(json.dumps(env))
    text = environment_section(load_results(folder).environments)
    assert f"| 0123456789ab{said}" in text, text


@pytest.mark.parametrize("blas", [2, "openblas", [3, None], {"x": 1}])
def test_a_blas_record_that_is_no_list_of_pools_is_shown_as_not_known(tmp_path, blas):
    import json

    from softmax_core.report.markdown import environment_section

    folder = write_set(tmp_path / "cpu", grid_rows(CPU, batches=(1,), classes=(10,), epochs=()))
    env = json.loads((folder / "environment.json").read_text())
    (folder / "environment.json").write_text(json.dumps({**env, "blas": blas}))
    assert "| BLAS " in environment_section(load_results(folder).environments)


@pytest.mark.parametrize("classes", ["99999999999999999999999", "1e300"])
def test_a_row_of_a_size_past_any_grid_is_damaged_for_every_reader(tmp_path, classes):
    """One rule for every reader (report, compare, resume): a size past the grid's largest is
    a damaged row, said so, not a number that wraps round in a table."""
    from softmax_core.runs.cases import Case

    rows = grid_rows(CPU, batches=(1, 8), classes=(10,), epochs=())
    rows[0]["classes"] = classes
    assert Case.from_row(rows[0]) is None
    sets = load_results(write_set(tmp_path / "cpu", rows))
    assert len(sets.frame) == len(rows) - 1 and any("damaged" in n for n in sets.notes)
