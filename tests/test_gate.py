"""The regression gate: its statistic and verdicts, its orchestration with scripted workers (fast),
and its command line with real workers on this repository's commits (a few seconds each)."""

from __future__ import annotations

import math
import os
import random
import subprocess

import pytest
from conftest import REPO_ROOT

from softmax_core.gate import GateError, pairs, run_gate
from softmax_core.gate import commits as gate_commits
from softmax_core.gate.run import shared_cores
from softmax_core.gate.workers import OutOfTime

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


def test_a_regression_counts_only_once_twice_the_pairs_still_show_it():
    p = pairs.Point(["gradient", "structured", 1, 784, 10, "float32"], "p")
    p.ratios = [1.1] * 24
    p.settle(0.05)
    assert p.flagged_at == 24 and p.verdict(0.05) == "UNSURE"
    p.ratios += [1.1] * 24
    p.settle(0.05)
    assert p.verdict(0.05) == "SLOWER"
    # a phase that favoured BASE in the first pass only: the later pairs clear it
    q = pairs.Point(["gradient", "structured", 1, 784, 10, "float32"], "q")
    q.ratios = [1.1] * 24
    q.settle(0.05)
    q.ratios += [1.0] * 24
    q.settle(0.05)
    assert q.flagged_at is None and q.verdict(0.05) != "SLOWER"


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
    assert structured.verdict(0.05) == "SLOWER" and naive_family.verdict(0.05) == "SAME"


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
    (seconds per call of the n-th sample of both sides together) and a little noise."""

    def __init__(self, speed, clock, keys=KEYS, fail=None):
        self.speed, self.clock, self.keys, self.fail = speed, clock, keys, fail
        self.started_with, self.closed = None, False
        self.rng = random.Random(len(clock))

    def __call__(self, name, source, suite, log, cpus):
        self.started_with = (name, source, suite, cpus)
        self.name = name
        return self

    def started(self, deadline):
        return "numpy-cpu"

    def send(self, request):
        self.request = request

    def reply(self, deadline):
        op = self.request["op"]
        if op == "points":
            return {"points": [[k, label(k)] for k in self.keys], "skipped": {"x": "too big"}}
        if op == "prepare":
            self.key = self.request["key"]
            if self.fail and self.fail(self.name, self.key):
                raise self.fail(self.name, self.key)
            return {"call_s": 1e-3}
        self.clock.append(self.name)
        return {"s": self.speed(self.name, self.key, len(self.clock)) * self.rng.gauss(1, 0.005)}

    def ask(self, request, deadline):
        self.send(request)
        return self.reply(deadline)

    def close(self):
        self.closed = True


def gate_with(speeds, tmp_path, **kw):
    """run_gate of HEAD against HEAD with one scripted worker per side."""
    sides, clock = {}, []

    def start(name, *args):
        clock.append("start")
        sides[name] = ScriptedWorker(speeds, clock, **kw)(name, *args)
        return sides[name]

    result = run_gate("HEAD", "HEAD", repo=REPO_ROOT, cache=tmp_path / "cache", start=start)
    return result, sides


def test_a_ten_percent_slower_structured_gradient_is_a_regression_and_nothing_else(tmp_path):
    def speed(side, key, n):
        slower = side == "HEAD" and key[:2] == ["gradient", "structured"]
        return 1e-3 * (1.10 if slower else 1.0)

    result, sides = gate_with(speed, tmp_path)
    verdicts = result.verdicts()
    assert result.status == 1
    assert [v for k, v in verdicts.items() if "gradient structured" in k] == ["SLOWER"] * 2
    assert {v for k, v in verdicts.items() if "gradient structured" not in k} == {"SAME"}
    assert "structured gradient" in result.regressions
    assert all(w.closed for w in sides.values())
    assert sides["BASE"].started_with[3] == sides["HEAD"].started_with[3]  # the same cores


def test_the_same_code_on_a_drifting_host_is_no_regression(tmp_path):
    """The host gets 5% slower with every sample (back to its speed every 500): a gate that
    took the pairs in one order (A B, A B, ...) would call HEAD slower everywhere."""

    def speed(side, key, n):
        return 1e-3 * 1.05 ** (n % 500)

    result, _ = gate_with(speed, tmp_path)
    assert result.status == 0 and set(result.verdicts().values()) <= {"SAME", "UNSURE"}


def test_a_slowdown_of_the_first_pass_alone_is_measured_again_and_cleared(tmp_path):
    def speed(side, key, n):
        early = n <= 2 + 2 * pairs.FIRST_PAIRS * len(KEYS)
        return 1e-3 * (1.2 if side == "HEAD" and early else 1.0)

    result, _ = gate_with(speed, tmp_path)
    assert result.status == 0
    assert all(len(p.ratios) > pairs.FIRST_PAIRS for p in result.points)


def test_a_point_that_fails_in_a_worker_stops_the_gate_with_its_reason(tmp_path):
    def fail(side, key):
        return GateError(f"{side}: ValueError: broken") if side == "HEAD" else None

    with pytest.raises(GateError, match="HEAD: ValueError: broken"):
        gate_with(lambda *a: 1e-3, tmp_path, fail=fail)


def test_a_first_pass_past_the_time_budget_is_said(tmp_path):
    def fail(side, key):
        return OutOfTime(side) if key == KEYS[2] else None

    with pytest.raises(GateError, match="time budget ended after 2 of 4 points"):
        gate_with(lambda *a: 1e-3, tmp_path, fail=fail)


def test_the_workers_share_the_last_cores_of_this_process(monkeypatch):
    allowed = sorted(os.sched_getaffinity(0))
    monkeypatch.setenv("SOFTMAX_THREADS", "1")
    assert shared_cores() == str(allowed[-1])
    monkeypatch.delenv("SOFTMAX_THREADS")
    assert shared_cores() == ",".join(map(str, allowed))


# --------------------------------------------------------------------------- commits


def test_an_export_is_kept_once_and_old_ones_go(tmp_path, monkeypatch):
    sha = gate_commits.resolve(REPO_ROOT, "HEAD")
    first = gate_commits.export(REPO_ROOT, sha, tmp_path)
    assert (first / "softmax_core" / "__init__.py").is_file()
    assert (first / "pyproject.toml").is_file() and not (first / "tests").exists()
    assert gate_commits.export(REPO_ROOT, sha, tmp_path) == first
    monkeypatch.setattr(gate_commits, "KEEP", 2)
    for i, name in enumerate(("old1", "old2")):
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (i, i))
    gate_commits._prune(tmp_path, {first})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([sha, "old2"])


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
        (["HEAD", "HEAD", "--bench", "no point has this label"], "no point that both"),
    ],
)
def test_a_gate_that_cannot_run_says_why_in_one_line_and_exits_2(cli_run, tmp_path, argv, said):
    code, out, err = cli_run("gate", *argv, "--cache", tmp_path, "--time-budget", 60)
    assert code == 2, err
    assert said in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_gate_outside_a_repository_exits_2(cli_run, tmp_path):
    code, _, err = cli_run("gate", "HEAD", "HEAD", "--repo", tmp_path, "--cache", tmp_path)
    assert code == 2 and "not in a git work tree" in err


def test_malformed_gate_arguments_exit_2(cli_run):
    code, _, err = cli_run("gate", "HEAD", "HEAD", "--threshold", "5")
    assert code == 2 and "--threshold" in err


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
