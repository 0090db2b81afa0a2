"""The reference set: ``tools/reference-set.sh``, the scripts of ``tools/gpu/`` that run it on
a machine with an NVIDIA GPU, and the one line that ``softmax-bench suite`` leaves.

The script's logic (the stage shares of the budget, the 7.97 % check, the sweep's per-point
budget, the statuses, the exit status, refusing to overwrite) runs against a stand-in CLI in
seconds; one slow test runs it end to end on the CPU with the real one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from softmax_core.cli import main
from softmax_core.runs.cases import Grid

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "tools" / "reference-set.sh"
GPU_TOOLS = REPO_ROOT / "tools" / "gpu"
SCRIPTS = (SCRIPT, GPU_TOOLS / "prepare.sh", GPU_TOOLS / "run.sh")
NEW_SPELLING = "'suite' is now tools/reference-set.sh OUT [BUDGET_S] (see docs/gpu.md)"

#: A stand-in ``softmax-bench``: each command writes what the script reads, at once.
FAKE_CLI = r"""#!/usr/bin/env bash
cmd=$1; shift; args=("$@"); dest=''
while [ $# -gt 0 ]; do case $1 in --out | --metrics-out) dest=$2; shift ;; esac; shift; done
case $cmd in
  info) sleep "${FAKE_SLEEP:-0}"; echo '{"backend": {"label": "fake"}}' ;;
  train) echo epoch,train_loss,train_err,test_loss,test_err,seconds >"$dest"
    for i in 1 2 3 4 5 6 7 8 9 10; do echo "$i,0.3,0.08,0.3,$FAKE_TEST_ERR,1.0" >>"$dest"; done ;;
  sidebyside) mkdir -p "$dest" && echo "{\"agrees\": $FAKE_AGREES}" >"$dest/sidebyside.json" ;;
  sweep) mkdir -p "$dest" && echo "sweep ${args[*]}" >>"$dest/results.csv" ;;
  report) echo "# report" >"${args[0]}/report.md" ;;
esac
"""
#: A stand-in Python: pytest passes, torch does not import.
FAKE_PYTHON = r"""#!/usr/bin/env bash
[ "$1 $2" = "-m pytest" ] && echo "3 passed in 0.01s" && exit 0
exit 1
"""


def _run(args, env=None, timeout=60, script=SCRIPT):
    return subprocess.run(
        ["bash", str(script), *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def _one_line_error(proc, code: int, says: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def _stages(summary: Path) -> dict:
    rows = [line.split(" | ") for line in summary.read_text().splitlines() if line.count("|") >= 6]
    return {r[0].strip("| "): (r[1], r[4].rstrip(" |")) for r in rows[2:]}


# --------------------------------------------------------------------------- softmax-bench suite


@pytest.mark.parametrize(
    "args", [[], ["--out", "x"], ["-h"], ["--out", "x", "--budget", "3", "--skip", "nope", "y"]]
)
def test_suite_command_names_the_script_in_one_line(args, capsys):
    assert main(["suite", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"softmax-bench: {NEW_SPELLING}\n"


def test_suite_command_from_the_shell():
    proc = subprocess.run(
        [sys.executable, "-m", "softmax_core.cli", "suite", "--out", "x", "--budget", "60"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    _one_line_error(proc, 2, NEW_SPELLING)


# --------------------------------------------------------------------------- the scripts


def test_scripts_parse_and_pass_shellcheck():
    for script in SCRIPTS:
        subprocess.run(["bash", "-n", str(script)], check=True)
        assert os.access(script, os.X_OK), script
    assert len(SCRIPT.read_text().splitlines()) < 150
    if shutil.which("shellcheck"):
        proc = subprocess.run(["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout
    ignored = subprocess.run(
        ["git", "check-ignore", ".whl/x.whl", ".data/mnist/x.gz"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert ignored.stdout.split() == [".whl/x.whl", ".data/mnist/x.gz"]


def test_reference_set_argument_errors_are_one_line(tmp_path):
    usage = "usage: tools/reference-set.sh OUT [BUDGET_S]"
    _one_line_error(_run([]), 2, usage)
    _one_line_error(_run([tmp_path / "a", 60, "extra"]), 2, usage)
    for budget in ("0", "1.5", "ten", "-5"):
        _one_line_error(_run([tmp_path / "a", budget]), 2, "BUDGET_S must be a whole number")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    _one_line_error(_run([tmp_path / "full"]), 2, "exists and is not empty")
    (tmp_path / "b.tar.gz").write_text("kept")
    _one_line_error(_run([tmp_path / "b"]), 2, "b.tar.gz exists")
    assert (tmp_path / "b.tar.gz").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar.gz", "full"]  # nothing made
    _one_line_error(_run([], script=SCRIPTS[2]), 2, "usage: tools/gpu/run.sh OUT [BUDGET_S]")


# --------------------------------------------------------------------------- against a stand-in CLI


@pytest.fixture
def fake(tmp_path):
    """The environment that runs the script against the stand-in CLI and Python."""
    for name, text in (("softmax-bench", FAKE_CLI), ("python", FAKE_PYTHON)):
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    (tmp_path / "mnist").mkdir()
    return {
        "SOFTMAX_BENCH": f"bash {tmp_path / 'softmax-bench'}",
        "PYTHON": str(tmp_path / "python"),
        "SOFTMAX_DATA_DIR": str(tmp_path / "mnist"),
        "SOFTMAX_REFERENCE_QUICK": "0",
        "FAKE_TEST_ERR": "0.0797",
        "FAKE_AGREES": "true",
    }


@pytest.mark.parametrize(
    "test_err, status, says",
    [
        ("0.0797", "ok", "+0 images"),
        ("0.0800", "ok", "+3 images"),
        ("0.0794", "ok", "-3 images"),
        ("0.0801", "failed", "+4 images"),
    ],
)
def test_the_recipe_is_checked_against_7_97_percent(tmp_path, fake, test_err, status, says):
    out = tmp_path / "set"
    proc = _run([out, 200], {**fake, "FAKE_TEST_ERR": test_err})
    assert proc.returncode == (0 if status == "ok" else 1), proc.stderr
    stages = _stages(out / "summary.md")
    assert stages["train"][0] == status and says in stages["train"][1]
    assert stages["train-torch"] == ("skipped", f"torch does not import in {fake['PYTHON']}")
    assert stages["tests"] == ("ok", "3 passed in 0.01s")
    assert {s: v[0] for s, v in stages.items() if s not in ("train", "train-torch", "tests")} == {
        "environment": "ok",
        "sidebyside": "ok",
        "sweep": "ok",
        "report": "ok",
    }


def test_the_sweep_runs_in_two_passes_with_its_budget_shrunk_to_fit(tmp_path, fake):
    out = tmp_path / "set"
    assert _run([out, 200], fake).returncode == 0
    first, second = (out / "sweep" / "results.csv").read_text().splitlines()
    assert "--methods structured --batch 8,32,96,256,1024" in first and "--resume" in second
    # 200 s less the report's 30 s and 10 s for the archive: (160 - 35) / 12 s a point, less
    # a second or so for the stages before (bash counts whole seconds)
    t = float(re.search(r"--time-budget (\S+)", first).group(1))
    assert 9.5 <= t <= 10.42 and f"--time-budget {t:.2f}" in second
    assert f"--time-budget {t:.2f} s for" in _stages(out / "summary.md")["sweep"][1]
    assert _run([tmp_path / "big", 2000], fake).returncode == 0
    assert "--time-budget 20.00 " in (tmp_path / "big" / "sweep" / "results.csv").read_text()


def test_disagreeing_results_fail_the_side_by_side(tmp_path, fake):
    out = tmp_path / "set"
    assert _run([out, 200], {**fake, "FAKE_AGREES": "false"}).returncode == 1
    assert _stages(out / "summary.md")["sidebyside"][0] == "failed"
    assert "NOT ok: sidebyside." in (out / "summary.md").read_text()


@pytest.mark.slow
def test_a_stage_past_its_deadline_is_stopped_and_the_rest_still_archived(tmp_path, fake):
    # at 43 s, the report's 30 s and 10 s for the archive leave 3 s to the rest
    out = tmp_path / "set"
    proc = _run([out, 43], {**fake, "FAKE_SLEEP": "30"})
    assert proc.returncode == 1, proc.stderr
    stages = _stages(out / "summary.md")
    assert stages["environment"][0] == "timeout"
    assert re.fullmatch(r"stopped at its deadline of [23] s", stages["environment"][1])
    assert stages["train"] == ("skipped", "no time left in the budget")
    assert stages["report"] == ("skipped", "no sweep results")
    with tarfile.open(tmp_path / "set.tar.gz") as tar:
        assert "set/summary.md" in tar.getnames()


# --------------------------------------------------------------------------- the real thing


@pytest.mark.slow
def test_quick_reference_set_end_to_end_on_the_cpu(tmp_path):
    out, archive = tmp_path / "set", tmp_path / "set.tar.gz"
    env = {
        "SOFTMAX_DEVICE": "cpu",
        "SOFTMAX_REFERENCE_QUICK": "1",
        "SOFTMAX_BENCH": f"{sys.executable} -m softmax_core.cli",
        "PYTHON": sys.executable,
        "OMP_NUM_THREADS": "1",
    }
    proc = _run([out, 100], env, timeout=200)
    assert proc.returncode == 0, proc.stderr
    stages = _stages(out / "summary.md")
    assert {s: v[0] for s, v in stages.items() if s not in ("train", "train-torch")} == {
        "environment": "ok",
        "tests": "skipped",
        "sidebyside": "ok",
        "sweep": "ok",
        "report": "ok",
    }, stages
    assert stages["train"][0] in ("ok", "skipped")  # skipped where there is no MNIST
    assert (out / "info.json").exists() and (out / "sweep" / "report.md").exists()
    for plot in ("time_vs_batch.png", "roofline.png"):  # drawn for real
        image = (out / "sweep" / plot).read_bytes()
        assert image[:8] == b"\x89PNG\r\n\x1a\n" and len(image) > 10_000, plot
    grid = Grid(batches=(1, 32), classes=(10,), features=(784,), epochs_on="none")
    assert len((out / "sweep" / "results.csv").read_text().splitlines()) == 1 + len(grid.cases())
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"set/summary.md", "set/info.json", "set/sweep/results.csv"} <= names
    size = archive.stat().st_size
    _one_line_error(_run([out, 100], env), 2, "exists and is not empty")
    assert archive.stat().st_size == size
