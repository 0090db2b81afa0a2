"""compare: verdicts from intervals, the summary, and its errors."""

import shutil

import pytest

from softmax_core import get_backend
from softmax_core.report.compare import compare, verdict
from softmax_core.runs.cases import Grid
from softmax_core.runs.sweep import run_sweep

# reports here are read, not looked at: they are not rendered
pytestmark = pytest.mark.usefixtures("unrendered_plots")


@pytest.mark.parametrize(
    "lo,hi,expected",
    [
        (0.99, 1.02, "SAME"),
        (1.2, 1.4, "SLOWER"),
        (0.5, 0.7, "FASTER"),
        (0.98, 1.10, "UNSURE"),
        (float("nan"), 1.0, "UNSURE"),
    ],
)
def test_verdict_from_the_ratio_interval(lo, hi, expected):
    assert verdict(lo, hi, 0.05) == expected


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, make_fake_measuring):
    """Two sweeps of the same grid, measured through the fakes: the same numbers in both."""
    grid = Grid(
        methods=("structured",),
        batches=(2, 64),
        classes=(3,),
        features=(5,),
        epochs_on="none",
        time_budget_s=1,
    )
    root = tmp_path_factory.mktemp("runs")
    cpu = get_backend("cpu", "numpy")
    for name in ("a", "b"):
        run_sweep(
            grid, cpu, root / name, memory_budget=10**9, progress=False, **make_fake_measuring()
        )
    return root / "a", root / "b"


def test_compare_matches_points_and_summarises(two_runs):
    a, b = two_runs
    table, summary = compare(a, b)
    assert summary["points"] == len(table) == 2 and summary["only_a"] == summary["only_b"] == 0
    assert (table["ratio_low"] <= table["ratio"]).all() and (
        table["ratio"] <= table["ratio_high"]
    ).all()
    assert sum(summary[v] for v in ("SAME", "FASTER", "SLOWER", "UNSURE")) == 2
    assert summary["SAME"] == 2 and summary["geomean_ratio"] == pytest.approx(1.0)


def test_a_ten_times_slower_copy_is_slower(two_runs, tmp_path):
    a, _ = two_runs
    slow = tmp_path / "slow"
    shutil.copytree(a, slow)
    text = (slow / "results.csv").read_text().splitlines()
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO("\n".join(text) + "\n")))
    for r in rows:
        for c in ("time_median_s", "time_ci_low_s", "time_ci_high_s"):
            r[c] = str(10 * float(r[c]))
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    (slow / "results.csv").write_text(out.getvalue())
    table, summary = compare(a, slow)
    assert summary["geomean_ratio"] == pytest.approx(10.0)
    assert set(table["verdict"]) <= {"SLOWER", "UNSURE"} and summary["SLOWER"] >= 1
    from softmax_core.report.compare import format_comparison
    from softmax_core.report.fmt import with_interval

    first = rows[0]  # each side's median is shown with its interval, as the report shows it
    shown = with_interval(
        *(float(first[c]) for c in ("time_median_s", "time_ci_low_s", "time_ci_high_s"))
    )
    assert "(" in shown and f"| {shown} |" in format_comparison(table, summary, a, slow)


def test_the_summary_shows_a_machine_that_ran_slower_in_its_probes(two_runs, tmp_path):
    import json

    from softmax_core.report.compare import format_comparison

    a, _ = two_runs
    slow = tmp_path / "slow_host"
    shutil.copytree(a, slow)
    env = json.loads((slow / "environment.json").read_text())
    env["probe"]["gemm_gflops"] /= 1.25
    env["probe"]["copy_gbps"] /= 2
    (slow / "environment.json").write_text(json.dumps(env))
    table, summary = compare(a, slow)
    assert summary["probe_gemm_time_ratio"] == pytest.approx(1.25)
    assert summary["probe_copy_time_ratio"] == pytest.approx(2.0)
    assert "GEMM 1.250, copy 2.000" in format_comparison(table, summary, a, slow)
    (slow / "environment.json").unlink()
    table, summary = compare(a, slow)
    assert "machine probes" not in format_comparison(table, summary, a, slow)


@pytest.mark.parametrize("gemm", [0, -1.0, float("inf"), True, "fast", None, 10**400, 5e-324, [1]])
def test_an_unusable_probe_drops_the_probe_line_instead_of_failing(two_runs, tmp_path, gemm):
    import json

    from softmax_core.report.compare import format_comparison

    a, _ = two_runs
    odd = tmp_path / "odd"
    shutil.copytree(a, odd)
    env = json.loads((odd / "environment.json").read_text())
    env["probe"]["gemm_gflops"] = gemm
    (odd / "environment.json").write_text(json.dumps(env))
    for x, y in ((a, odd), (odd, a)):
        table, summary = compare(x, y)
        assert "machine probes" not in format_comparison(table, summary, x, y)


@pytest.mark.parametrize(
    "field, value",
    [
        ("probe_version", "2"),
        ("probe_version", True),
        ("num_threads", "2"),
        ("num_threads", [2]),
        ("num_threads", True),
    ],
)
def test_odd_versions_and_thread_counts_are_not_read_as_facts(two_runs, tmp_path, field, value):
    import json

    from softmax_core.report.compare import format_comparison

    a, _ = two_runs
    odd = tmp_path / "odd"
    shutil.copytree(a, odd)
    env = json.loads((odd / "environment.json").read_text())
    if field == "probe_version":
        env["probe"][field] = value
    else:
        for pool in env["blas"]:
            pool[field] = value
    (odd / "environment.json").write_text(json.dumps(env))
    table, summary = compare(a, odd)
    text = format_comparison(table, summary, a, odd)
    assert "probe version" not in text and "BLAS thread" not in text


def test_a_folder_and_its_results_file_are_the_same_set(two_runs):
    a, _ = two_runs
    with pytest.raises(ValueError, match="same result set"):
        compare(a, a / "results.csv")


def test_probes_of_two_versions_are_not_compared(two_runs, tmp_path):
    import json

    from softmax_core.report.compare import format_comparison

    a, _ = two_runs
    old = tmp_path / "old"
    shutil.copytree(a, old)
    env = json.loads((old / "environment.json").read_text())
    del env["probe"]["probe_version"]  # results made before the probe kept its pages
    (old / "environment.json").write_text(json.dumps(env))
    table, summary = compare(old, a)
    text = format_comparison(table, summary, old, a)
    assert (
        "not compared: A's is of probe version 1, B's of 2" in text
        and "GEMM" not in text.split("not compared")[0]
    )
    table, summary = compare(a / "results.csv", old / "results.csv")  # files name their folders
    assert summary["probe_versions"] == (2, 1)


def test_two_runs_with_different_blas_threads_say_so(two_runs, tmp_path):
    """Two runs at one thread count each compare point by point, the change said."""
    import csv

    from softmax_core.report.compare import format_comparison

    a, _ = two_runs
    other = tmp_path / "threads"
    shutil.copytree(a, other)
    rows = list(csv.DictReader(open(other / "results.csv")))
    for r in rows:
        r["threads"] = int(r["threads"]) + 1
    with open(other / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    table, summary = compare(a, other)
    text = format_comparison(table, summary, a, other)
    assert summary["points"] > 0 and "B with" in text
    table, summary = compare(a, a.parent / "b")
    assert "B with" not in format_comparison(table, summary, a, a.parent / "b")


def test_a_set_of_several_thread_counts_compares_each_count_with_its_own(two_runs, tmp_path):
    import csv

    from softmax_core.report.compare import format_comparison

    a, b = two_runs
    both = tmp_path / "both"
    shutil.copytree(a, both)
    rows = list(csv.DictReader(open(both / "results.csv")))
    with open(both / "results.csv", "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writerows({**r, "threads": int(r["threads"]) + 1} for r in rows)
    table, summary = compare(both, b)
    assert summary["points"] == len(compare(a, b)[0]) and summary["only_a"] == len(rows)
    assert "B with" not in format_comparison(table, summary, both, b)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["SAME", "SAME"], "same result set"),
        (["A", "/nonexistent"], "does not exist"),
        (["A", "B", "--out", "DIR"], "is a folder"),
        (["A", "B", "--threshold", "2"], "--threshold"),
    ],
)
def test_cli_compare_errors_are_one_line(two_runs, tmp_path, cli_run, args, needle):
    a, b = two_runs
    subst = {"SAME": str(a), "A": str(a), "B": str(b), "DIR": str(tmp_path)}
    code, _, err = cli_run("compare", *[subst.get(x, x) for x in args])
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert needle in err and "Traceback" not in err


@pytest.mark.parametrize(
    "damage",
    [
        {"time_median_s": "0.5"},  # a median outside its interval
        {"time_ci_low_s": "-3", "time_ci_high_s": "6e13"},  # a negative interval
        {"time_median_s": "1e-320", "time_ci_low_s": "1e-321", "time_ci_high_s": "2e-320"},
        {"time_median_s": "1e308", "time_ci_low_s": "1e308", "time_ci_high_s": "1e308"},
        {"time_median_s": "inf", "time_ci_high_s": "inf"},
        {"time_min_s": "9"},  # the fastest sample above the median
        {"repeats": "0"},
        {"peak_bytes": "-4096"},  # a peak below nothing
        {"peak_bytes": "nan"},
        {"peak_bytes": "1e308"},  # past any machine's memory
    ],
)
def test_an_inconsistent_row_is_damaged_never_judged_or_drawn(two_runs, tmp_path, cli_run, damage):
    """A row whose numbers cannot be a measurement is reported as damaged by compare, report
    and resume alike, and never used."""
    import csv

    a, b = two_runs
    bad = tmp_path / "bad"
    shutil.copytree(b, bad)
    path = bad / "results.csv"
    rows = list(csv.DictReader(path.open()))
    rows[0].update(damage)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    table, summary = compare(a, bad)
    assert summary["points"] == 1 and summary["only_a"] == 1  # the damaged point is not judged
    code, out, err = cli_run("report", bad, "--out", tmp_path / "r")
    assert code == 0, err
    assert "1 damaged row(s)" in (tmp_path / "r" / "report.md").read_text()


def test_a_results_file_past_the_size_bound_is_refused_in_one_line_by_every_reader(
    two_runs, tmp_path, cli_run
):
    """A results.csv far larger than any sweep writes is refused before it is read (reading
    costs about ten times the file's size in memory), by report, compare and --resume."""
    from softmax_core.runs.resultformat import MAX_RESULTS_BYTES

    a, _ = two_runs
    big = tmp_path / "big"
    shutil.copytree(a, big)
    with (big / "results.csv").open("r+b") as fh:
        fh.truncate(MAX_RESULTS_BYTES + 1)  # sparse: no disk is used
    for argv in (
        ("report", big, "--out", tmp_path / "r"),
        ("compare", a, big),
        ("sweep", "--resume", "--out", big, "--batch", "2", "--classes", "3", "--features", "5"),
    ):
        code, _, err = cli_run(*argv)
        assert code == 1 and len(err.splitlines()) == 1 and "MiB" in err, (argv, err)


def test_compare_says_how_many_damaged_rows_it_left_out(two_runs, tmp_path, cli_run):
    a, b = two_runs
    bad = tmp_path / "bad"
    shutil.copytree(b, bad)
    lines = (bad / "results.csv").read_text().splitlines(keepends=True)
    (bad / "results.csv").write_text(lines[0] + lines[1].replace(",ok,", ",nonsense,") + lines[2])
    code, out, err = cli_run("compare", a, bad)
    assert code == 0, err
    assert "1 damaged row(s) of B left out" in out


def test_an_out_that_is_a_file_is_one_line(two_runs, tmp_path, cli_run):
    (tmp_path / "f").write_text("mine")
    for argv in (
        ("report", two_runs[0], "--out", tmp_path / "f"),
        ("sweep", "--out", tmp_path / "f", "--batch", "2", "--classes", "3"),
    ):
        code, _, err = cli_run(*argv)
        assert code == 1 and "is a file; fix: give a folder" in err, (argv, err)
    assert (tmp_path / "f").read_text() == "mine"


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda f: (f / "results.csv").write_text(""), "is empty (no header, no rows)"),
        (lambda f: ((f / "results.csv").unlink(), (f / "results.csv").mkdir()), "is not a file"),
        (lambda f: (f / "environment.json").write_text("{"), "cannot read"),
        (lambda f: (f / "environment.json").write_text('{"format_version": 99}'), "newer"),
        (
            lambda f: ((f / "environment.json").unlink(), (f / "environment.json").mkdir()),
            "environment.json",
        ),
    ],
    ids=["empty", "results folder", "unparsable", "newer", "environment folder"],
)
def test_compare_refuses_what_the_report_refuses_in_one_line(
    two_runs, tmp_path, cli_run, damage, needle
):
    a, b = two_runs
    shutil.copytree(b, tmp_path / "b")
    damage(tmp_path / "b")
    code, out, err = cli_run("compare", a, tmp_path / "b")
    assert code == 1 and len(err.splitlines()) == 1 and needle in err and out == "", err


def test_a_point_without_an_interval_and_a_single_point_read_plainly(two_runs, tmp_path):
    """A row whose interval is empty has a ratio without one (not ``[nan, nan]``), and one
    point is "1 point"."""
    from softmax_core.report.compare import format_comparison

    a, _ = two_runs
    b = tmp_path / "b"
    shutil.copytree(a, b)
    header, first, *_ = (b / "results.csv").read_text().splitlines()
    cells = dict(zip(header.split(","), first.split(",")))
    cells.update(time_ci_low_s="", time_ci_high_s="")
    (b / "results.csv").write_text(f"{header}\n{','.join(cells.values())}\n")
    table, summary = compare(a, b)
    text = format_comparison(table, summary, a, b)
    assert "nan" not in text and "1 point in both (1 only in A, 0 only in B)" in text, text
    assert f"| {table['ratio'].iloc[0]:.3f} |" in text, text
