"""The regression gate: its statistic and verdicts, its orchestration with scripted workers (fast),
and its command line with real workers on this repository's commits (a few seconds each)."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import time

import pytest
from conftest import REPO_ROOT

from softmax_core.gate import GateError, pairs, run_gate, summary
from softmax_core.gate import commits as gate_commits
from softmax_core.gate import workers as gate_workers
from softmax_core.gate.run import shared_cores
from softmax_core.gate.workers import OutOfTime, Worker

# --------------------------------------------------------------------------- the statistic


@pytest.mark.parametrize(
    "low, high, expected",
    [
        (0.99, 1.01, "SAME"),
        (1.01, 1.04, "SAME"),  # surely slower, but by less than half the threshold
        (1.026, 1.04, "SLOWER"),  # surely slower by more than half the threshold
        (1.02, 1.06, "UNSURE"),  # could be 2% or 6%: measured further
        (0.90, 0.97, "FASTER"),
        (0.95, 1.06, "UNSURE"),
        (math.nan, 1.0, "UNSURE"),
    ],
)
def test_the_verdict_of_an_interval(low, high, expected):
    assert pairs.verdict(low, high, 0.05) == expected


def test_a_points_estimate_is_the_median_of_its_quads_which_cancel_the_order_effect():
    """Pairs alternate A B, B A: the second sample of a pair is 10% slower whichever side it is,
    so pair ratios alternate 1.1 and 1/1.1; each quad (two adjacent pairs) is exactly 1."""
    p = pairs.Point(["gradient", "structured", 1, 784, 10, "float32"], "p")
    p.ratios = [1.1, 1 / 1.1] * 12
    assert p.quads == pytest.approx([1.0] * 12)
    assert p.ratio == pytest.approx(1.0)
    assert p.interval == pytest.approx((1.0, 1.0))
    assert p.verdict(0.05) == "SAME"


def test_a_regression_counts_only_once_fresh_workers_read_it_too():
    p = pairs.Point(["gradient", "structured", 1, 784, 10, "float32"], "p")
    p.ratios = [1.1] * 24
    assert p.read(0.05) == "SLOWER" and p.verdict(0.05) == "UNSURE"
    p.confirm = [1.1] * 24
    assert p.verdict(0.05) == "SLOWER"
    # a layout or a phase that favoured BASE in the first workers only: the fresh ones clear it
    p.confirm = [1.0] * 24
    assert p.confirmed(0.05) == "SAME" and p.verdict(0.05) != "SLOWER"


def test_a_familys_interval_is_its_points_combined_and_narrower_than_each():
    members = []
    for b in (1, 8, 32, 96):
        p = pairs.Point(["gradient", "structured", b, 784, 10, "float32"], f"s{b}")
        p.ratios = [1.05 * (1 + 0.01 * ((i % 5) - 2)) for i in range(24)]
        members.append(p)
    naive = pairs.Point(["gradient", "naive", 1, 784, 10, "float32"], "n")
    naive.ratios = [1.0] * 24
    (structured, naive_family) = pairs.families(members + [naive])
    assert structured.name == "structured gradient" and structured.points == 4
    assert structured.ratio == pytest.approx(members[0].ratio)
    width = structured.high - structured.low
    assert 0 < width < members[0].interval[1] - members[0].interval[0]
    assert structured.read(0.05) == "SLOWER" and naive_family.verdict(0.05) == "SAME"
    # SLOWER once fresh workers measured every point of the family and read it too
    assert structured.fresh is None and structured.verdict(0.05) == "UNSURE"
    for p in members[:3]:
        p.confirm = list(p.ratios)
    assert pairs.families(members)[0].fresh is None
    members[3].confirm = list(members[3].ratios)
    assert pairs.families(members)[0].verdict(0.05) == "SLOWER"


# --------------------------------------------------------------------------- scripted workers

KEYS = [
    ["gradient", "structured", 1, 784, 10, "float32"],
    ["gradient", "structured", 32, 784, 10, "float32"],
    ["gradient", "naive", 1, 784, 10, "float32"],
    ["epoch", "structured", 32, 784, 10, "float32"],
]


def label(key) -> str:
    return " ".join(map(str, key))


class ScriptedWorker:
    """A worker that answers as the real one does, with times from ``speed(side, key, n)``
    (seconds per call of the n-th sample of all workers together) and a little noise.
    ``fail(worker, key)`` may return an exception to raise when a point is prepared."""

    def __init__(self, speed, clock, keys=KEYS, fail=None):
        self.speed, self.clock, self.keys, self.fail = speed, clock, keys, fail
        self.closed, self.backend = False, "numpy-cpu"
        self.rng = random.Random(len(clock))

    def __call__(self, name, source, suite, log, cpus):
        self.name, self.fresh, self.cpus = name, "fresh" in log.name, cpus
        return self

    def started(self, deadline):
        return self.backend

    def send(self, request):
        self.request = request

    def reply(self, deadline):
        op = self.request["op"]
        if op == "points":
            return {"points": [[k, label(k)] for k in self.keys], "skipped": {"x": "too big"}}
        if op == "prepare":
            self.key = self.request["key"]
            if self.fail and self.fail(self, self.key):
                raise self.fail(self, self.key)
            return {"call_s": 1e-3}
        self.clock.append(self.name)
        return {"s": self.speed(self.name, self.key, len(self.clock)) * self.rng.gauss(1, 0.005)}

    def ask(self, request, deadline):
        self.send(request)
        return self.reply(deadline)

    def close(self):
        self.closed = True


def gate_with(speeds, tmp_path, **kw):
    """run_gate of HEAD against HEAD with scripted workers: (result, every worker started)."""
    started, clock = [], []

    def start(name, *args):
        clock.append("start")
        started.append(ScriptedWorker(speeds, clock, **kw)(name, *args))
        return started[-1]

    result = run_gate("HEAD", "HEAD", repo=REPO_ROOT, cache=tmp_path / "cache", start=start)
    return result, started


def test_a_ten_percent_slower_structured_gradient_is_a_regression_and_nothing_else(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("SOFTMAX_THREADS", "1")

    def speed(side, key, n):
        slower = side == "HEAD" and key[:2] == ["gradient", "structured"]
        return 1e-3 * (1.10 if slower else 1.0)

    result, workers = gate_with(speed, tmp_path)
    verdicts = result.verdicts()
    assert result.status == 1
    assert [v for k, v in verdicts.items() if "gradient structured" in k] == ["SLOWER"] * 2
    assert {v for k, v in verdicts.items() if "gradient structured" not in k} == {"SAME"}
    assert "structured gradient" in result.regressions
    # confirmed by a fresh pair, which measured the structured gradient's points only
    assert [(w.name, w.fresh) for w in workers] == [
        ("BASE", False),
        ("HEAD", False),
        ("BASE", True),
        ("HEAD", True),
    ]
    assert [bool(p.confirm) for p in result.points] == [True, True, False, False]
    assert all(w.closed for w in workers)
    # every worker on the same one core
    assert {w.cpus for w in workers} == {str(max(os.sched_getaffinity(0)))}


def test_the_same_code_on_a_drifting_host_is_no_regression(tmp_path):
    """The host gets 5% slower with every sample (back to its speed every 500): a gate that
    took the pairs in one order (A B, A B, ...) would call HEAD slower everywhere."""

    def speed(side, key, n):
        return 1e-3 * 1.05 ** (n % 500)

    result, workers = gate_with(speed, tmp_path)
    assert result.status == 0 and set(result.verdicts().values()) <= {"SAME", "UNSURE"}
    assert len(workers) == 2  # nothing read SLOWER: no fresh workers


def test_a_slowdown_the_fresh_workers_do_not_see_is_no_regression(tmp_path):
    def speed(side, key, n):
        early = n <= 2 + 2 * pairs.FIRST_PAIRS * len(KEYS)
        return 1e-3 * (1.2 if side == "HEAD" and early else 1.0)

    result, workers = gate_with(speed, tmp_path)
    assert result.status == 0 and not result.regressions
    assert len(workers) == 4 and all(p.confirm for p in result.points)
    assert {p.confirmed(0.05) for p in result.points} == {"SAME"}


def test_a_confirmation_the_time_budget_cuts_short_exits_2(tmp_path):
    def speed(side, key, n):
        return 1e-3 * (1.2 if side == "HEAD" else 1.0)

    def fail(worker, key):
        return OutOfTime(worker.name) if worker.fresh else None

    result, _ = gate_with(speed, tmp_path, fail=fail)
    assert not result.complete and not result.regressions and result.status == 2
    assert "could not decide" in summary(result)


def test_a_point_that_fails_in_a_worker_stops_the_gate_with_its_reason(tmp_path):
    def fail(worker, key):
        return GateError(f"{worker.name}: ValueError: broken") if worker.name == "HEAD" else None

    with pytest.raises(GateError, match="HEAD: ValueError: broken"):
        gate_with(lambda *a: 1e-3, tmp_path, fail=fail)


def test_a_first_pass_past_the_time_budget_is_said(tmp_path):
    def fail(worker, key):
        return OutOfTime(worker.name) if key == KEYS[2] else None

    with pytest.raises(GateError, match="time budget ended after 2 of 4 points"):
        gate_with(lambda *a: 1e-3, tmp_path, fail=fail)


def test_the_workers_use_all_cores_without_a_thread_count(monkeypatch):
    monkeypatch.delenv("SOFTMAX_THREADS", raising=False)
    assert shared_cores() == ",".join(map(str, sorted(os.sched_getaffinity(0))))
    monkeypatch.setenv("SOFTMAX_THREADS", "²")  # no thread count: the workers say so
    assert shared_cores() == ",".join(map(str, sorted(os.sched_getaffinity(0))))


# --------------------------------------------------------------------------- a real worker


def stub_worker(tmp_path, monkeypatch, body: str) -> Worker:
    """A Worker whose process runs ``body`` (Python) instead of the measuring script."""
    script = tmp_path / "stub.py"
    script.write_text("import sys, json, time\n" + body)
    monkeypatch.setattr(gate_workers, "SCRIPT", script)
    return Worker("HEAD", tmp_path, tmp_path, tmp_path / "HEAD.log")


def test_a_workers_error_names_it_and_its_log(tmp_path, monkeypatch):
    w = stub_worker(tmp_path, monkeypatch, 'print(json.dumps({"error": "cannot start: boom"}))')
    with pytest.raises(GateError, match=r"HEAD: cannot start: boom \(see .*HEAD.log\)"):
        w.started(time.monotonic() + 30)
    w.close()


def test_a_worker_that_dies_is_said_and_closing_it_never_raises(tmp_path, monkeypatch):
    body = 'print(json.dumps({"ready": "x"}), flush=True)\nsys.stderr.write("dying\\n")\n'
    w = stub_worker(tmp_path, monkeypatch, body + "sys.exit(3)")
    assert w.started(time.monotonic() + 30) == "x"
    time.sleep(0.2)
    with pytest.raises(GateError, match=r"HEAD's worker ended \(exit status 3\): dying"):
        w.ask({"op": "points"}, time.monotonic() + 30)
    w.close()
    w.close()


def test_a_worker_that_does_not_answer_is_stopped_at_the_deadline(tmp_path, monkeypatch):
    w = stub_worker(tmp_path, monkeypatch, "time.sleep(600)")
    begun = time.monotonic()
    with pytest.raises(OutOfTime):
        w.started(begun + 0.5)
    assert time.monotonic() - begun < 5
    w.close()
    assert w.proc.poll() is not None


# --------------------------------------------------------------------------- commits


def test_an_export_is_kept_once_and_old_ones_go(tmp_path, monkeypatch):
    sha = gate_commits.resolve(REPO_ROOT, "HEAD")
    first = gate_commits.export(REPO_ROOT, sha, tmp_path)
    assert (first / "softmax_core" / "__init__.py").is_file()
    assert (first / "pyproject.toml").is_file() and not (first / "tests").exists()
    assert gate_commits.export(REPO_ROOT, sha, tmp_path) == first
    monkeypatch.setattr(gate_commits, "KEEP", 2)
    for i, name in enumerate(("a" * 40, "b" * 40, "c" * 40, "mine", "d" * 40)):
        (tmp_path / name).mkdir()
        if name != "d" * 40:  # a folder of that name the gate did not make
            (tmp_path / name / gate_commits.MARKER).write_text("")
        os.utime(tmp_path / name, (i, i))
    # half-made exports an hour old go, but only those the gate marked as its own
    for name, marked in ((".0123456789-abc", True), (".0123456789-mine", False)):
        (tmp_path / name).mkdir()
        if marked:
            (tmp_path / name / gate_commits.MAKING).write_text("")
        os.utime(tmp_path / name, (0, 0))
    gate_commits._prune(tmp_path, {first, tmp_path / ("a" * 40)})
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([sha, "a" * 40, "c" * 40, "mine", "d" * 40, ".0123456789-mine"])


@pytest.mark.parametrize(
    "text",
    ["[project]\ndependencies = [1]\n", '[project]\ndependencies = "numpy"\n', "[project\n"],
)
def test_a_commits_unreadable_dependencies_are_one_error(tmp_path, text):
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(GateError, match="pyproject.toml cannot be read"):
        gate_commits.missing_requirements(tmp_path)


def test_an_export_never_replaces_a_folder_it_did_not_make(tmp_path):
    sha = gate_commits.resolve(REPO_ROOT, "HEAD")
    (tmp_path / sha).mkdir()
    (tmp_path / sha / "notes.txt").write_text("mine")
    with pytest.raises(GateError, match="in the way of commit"):
        gate_commits.export(REPO_ROOT, sha, tmp_path)
    assert (tmp_path / sha / "notes.txt").read_text() == "mine"


def test_the_logs_of_the_last_gates_are_kept_and_nothing_else_is_removed(tmp_path, monkeypatch):
    from softmax_core.gate import run as gate_run

    monkeypatch.setattr(gate_run, "KEEP_LOGS", 2)
    (tmp_path / "logs" / "1999-old-results").mkdir(parents=True)
    made = [gate_run._logs(tmp_path) for _ in range(4)]
    left = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert left == sorted(["1999-old-results", made[2].name, made[3].name])


def test_the_suite_is_copied_without_following_links(tmp_path):
    from softmax_core.gate.run import _copy_suite

    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "common.py").write_text("x = 1\n")
    (tmp_path / "bench" / "loop").symlink_to(tmp_path)
    (tmp_path / "bench" / "linked.py").symlink_to(tmp_path / "bench" / "common.py")
    _copy_suite(tmp_path / "bench", tmp_path / "copy")
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["common.py"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "common.py").symlink_to(tmp_path / "bench" / "common.py")
    with pytest.raises(GateError, match="common.py is no regular file"):
        _copy_suite(tmp_path / "other", tmp_path / "copy2")


def test_a_commits_missing_dependency_is_named(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\ndependencies = ["numpy>=1", "no-such-package-here>=1", "numpy>=999"]\n'
    )
    missing = gate_commits.missing_requirements(tmp_path)
    assert missing[0] == "no-such-package-here>=1"
    assert missing[1].startswith("numpy>=999 (found ")


# --------------------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    "argv, said",
    [
        (["no-such-commit", "HEAD"], "'no-such-commit' is no commit"),
        (["HEAD", "HEAD", "--bench", "("], "is no regular expression"),
        (["HEAD", "HEAD", "--bench", "no point has this label"], "match --bench can run here"),
    ],
)
def test_a_gate_that_cannot_run_says_why_in_one_line_and_exits_2(cli_run, tmp_path, argv, said):
    code, out, err = cli_run("gate", *argv, "--cache", tmp_path, "--time-budget", 60)
    assert code == 2, err
    assert said in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_gate_outside_a_repository_exits_2(cli_run, tmp_path):
    code, _, err = cli_run("gate", "HEAD", "HEAD", "--repo", tmp_path, "--cache", tmp_path)
    assert code == 2 and "not in a git work tree" in err


def test_a_gate_with_stdout_closed_keeps_its_exit_status(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "softmax_core.cli", "gate", "no-such-commit", "HEAD"],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.close(1),
        timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "option, value", [("--threshold", "5"), ("--time-budget", "3"), ("--cache", "")]
)
def test_malformed_gate_arguments_exit_2(cli_run, option, value):
    code, _, err = cli_run("gate", "HEAD", "HEAD", option, value)
    assert code == 2 and option in err and "Traceback" not in err


def test_threads_sets_the_workers_thread_count_for_the_gate_only(monkeypatch, cli_run):
    seen = []

    def fake_gate(*args, **kw):
        seen.append(os.environ.get("SOFTMAX_THREADS"))
        raise GateError("stop here")

    monkeypatch.setattr("softmax_core.gate.run_gate", fake_gate)
    monkeypatch.delenv("SOFTMAX_THREADS", raising=False)
    code, _, err = cli_run("gate", "HEAD", "HEAD", "--threads", "1")
    assert code == 2 and seen == ["1"] and "SOFTMAX_THREADS" not in os.environ


@pytest.mark.parametrize("value", ["99999", "two", "0", "+1", "1_0"])
def test_a_softmax_threads_the_threads_option_would_refuse_is_one_line(monkeypatch, cli_run, value):
    """SOFTMAX_THREADS is checked as --threads is, before any worker starts (99999 threads
    spent the whole budget starting them)."""
    monkeypatch.setattr("softmax_core.gate.run_gate", lambda *a, **kw: pytest.fail("started"))
    monkeypatch.setenv("SOFTMAX_THREADS", value)
    code, _, err = cli_run("gate", "HEAD", "HEAD")
    assert code == 2 and len(err.splitlines()) == 1 and f"SOFTMAX_THREADS='{value}'" in err


def test_a_reader_that_goes_away_does_not_change_the_gates_exit_status(monkeypatch, capsys):
    """`softmax-bench gate ... 2>&1 | head -1`: the progress lines and the table go nowhere,
    and a regression still exits 1."""
    from softmax_core.cli import main
    from softmax_core.gate.run import GateResult

    def fake_gate(*args, progress, **kw):
        progress("[1/1] ...")
        p = pairs.Point(KEYS[0], "p", ratios=[1.2] * 24, confirm=[1.2] * 24)
        return GateResult("a" * 40, "b" * 40, 0.05, "numpy-cpu", [p])

    class Gone:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("softmax_core.gate.run_gate", fake_gate)
    monkeypatch.setattr("sys.stderr", Gone())
    assert main(["gate", "HEAD", "HEAD"]) == 1


@pytest.mark.slow
def test_the_gate_measures_two_commits_with_real_workers(cli_run, tmp_path):
    code, out, err = cli_run(
        "gate", "HEAD", "HEAD", "--bench", "structured B=1 n=784 k=10 ", "--cache", tmp_path
    )
    assert code == 0, err
    assert "gradient structured B=1 n=784 k=10 float32" in out and "no regression" in out


@pytest.mark.slow
def test_a_commit_that_does_not_import_stops_the_gate(cli_run, tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
    (clone / "softmax_core" / "model" / "softmax.py").write_text("this is no python\n")
    git = ["git", "-C", str(clone), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "commit", "-qam", "broken"], check=True)
    code, _, err = cli_run("gate", "HEAD~1", "HEAD", "--repo", clone, "--cache", tmp_path / "c")
    assert code == 2
    assert "HEAD: cannot start: SyntaxError" in err and len(err.strip().splitlines()) == 1
