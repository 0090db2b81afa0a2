"""The command line, run as users run it: ``python -m softmax_core.cli ...`` in a subprocess.

Only ``train``, ``info`` and ``data fetch`` are tested here (``sweep``/``report``
have their own tests).  Every user-fixable failure must exit non-zero with
exactly one line on stderr and no traceback.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from softmax_core import BackendError, get_backend

REPO_ROOT = Path(__file__).resolve().parent.parent
EPOCH_COLUMNS = ["epoch", "train_loss", "train_err", "test_loss", "test_err", "seconds"]


def run_cli(*args, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter with no SOFTMAX_* variables except ``env``'s."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SOFTMAX_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "softmax_core.cli", *map(str, args)],
        cwd=REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_metrics(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == EPOCH_COLUMNS
        return list(reader)


def assert_one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected one line on stderr, got {proc.stderr!r}"
    return lines[0]


# --------------------------------------------------------------------------- train


@pytest.mark.slow
def test_train_reference_mnist_run(mnist_dir, tmp_path):
    """10 epochs, lr 0.2, batch 100, float32, in order: the reference test error 0.0797; the
    table printed and the CSV written say the same."""
    out = tmp_path / "tmp" / "m.csv"
    proc = run_cli(
        "train",
        "--data-dir",
        mnist_dir,
        "--epochs",
        10,
        "--lr",
        0.2,
        "--batch",
        100,
        "--dtype",
        "float32",
        "--metrics-out",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == EPOCH_COLUMNS)
    table = [line.split() for line in lines[header + 1 :] if line.strip() and line[0] != "#"]
    assert [row[0] for row in table] == [str(e) for e in range(1, 11)]
    assert "# the command took" in proc.stdout  # the wall time is never hidden

    rows = read_metrics(out)
    assert [int(r["epoch"]) for r in rows] == list(range(1, 11))
    assert round(float(rows[-1]["test_err"]), 4) == 0.0797
    assert float(rows[0]["test_err"]) < 0.10 and float(rows[0]["train_err"]) < 0.15
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    for row, printed in zip(rows, table):
        assert 0 < float(row["test_loss"]) < 1 and 0 < float(row["train_loss"]) < 1
        assert float(row["seconds"]) > 0
        assert printed[1:5] == [f"{float(row[c]):.5f}" for c in EPOCH_COLUMNS[1:5]]
    assert [p.name for p in out.parent.iterdir()] == ["m.csv"]  # no temporary file left


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args,env,code,needle",
    [
        (["--batch", "0"], {}, 2, "--batch"),
        (["--batch", "2.5"], {}, 2, "--batch"),
        (["--lr", "-1"], {}, 2, "--lr"),
        (["--lr", "nan"], {}, 2, "--lr"),
        (["--epochs", "0"], {}, 2, "--epochs"),
        (["--dtype", "float16"], {}, 2, "float16"),
        (["--grad", "fast"], {}, 2, "--grad"),
        (["--data-dir", "/nonexistent"], {}, 1, "does not exist"),
        ([], {"SOFTMAX_BACKEND": "nonsense"}, 1, "SOFTMAX_BACKEND='nonsense'"),
        ([], {"SOFTMAX_DEVICE": "tpu"}, 1, "SOFTMAX_DEVICE='tpu'"),
    ],
    ids=[
        "batch0",
        "batch-float",
        "lr-negative",
        "lr-nan",
        "epochs0",
        "dtype-float16",
        "grad-unknown",
        "data-dir-missing",
        "backend-nonsense",
        "device-tpu",
    ],
)
def test_train_bad_input_is_one_line_error(
    tmp_path, args, env, code, needle, cli_run, monkeypatch, recwarn, caplog
):
    """In this process, so a warning or a logged warning, which pytest would keep from stderr,
    fails the test here (the command would print it beside its one line)."""
    for name in [k for k in os.environ if k.startswith("SOFTMAX_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if "--data-dir" not in args:
        args = [
            "--data-dir",
            tmp_path,
            *args,
        ]  # an empty folder: the data error must not come first
    returncode, stdout, stderr = cli_run("train", *args)
    line = assert_one_line_error(subprocess.CompletedProcess([], returncode, stdout, stderr))
    assert returncode == code
    assert needle in line
    assert not recwarn.list and not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_train_on_gpu_without_gpu_is_one_line_error(tmp_path):
    try:
        get_backend("gpu")
        pytest.skip("a GPU backend works here")
    except BackendError:
        pass
    proc = run_cli("train", "--data-dir", tmp_path, env={"SOFTMAX_DEVICE": "gpu"})
    line = assert_one_line_error(proc)
    assert proc.returncode == 1
    assert line.startswith("softmax-bench train: error:")
    assert ("cupy" in line or "no NVIDIA driver" in line) and "fix:" in line


# --------------------------------------------------------------------------- info, data fetch


def test_info_prints_backend_and_device():
    proc = run_cli("info")
    assert proc.returncode == 0, proc.stderr
    table = dict(line.split(None, 1) for line in proc.stdout.splitlines() if line.strip())
    assert table["backend"].strip() == "numpy"
    assert table["device"].strip() == "cpu"
    assert table["label"].strip() == "numpy-cpu"
    assert not any(c in proc.stdout for c in "{}[]'")  # text to read, no Python repr


def test_info_json_follows_environment():
    proc = run_cli("info", "--json", env={"SOFTMAX_BACKEND": "array_api_strict"})
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert (info["backend"]["backend"], info["backend"]["device"]) == ("array_api_strict", "cpu")
    assert info["versions"]["numpy"] and info["versions"]["array-api-strict"]
    assert any(pool["user_api"] == "blas" and pool["num_threads"] >= 1 for pool in info["blas"])
    assert info["machine"]["cpu_model"] and info["machine"]["memory_total_bytes"] > 0


def test_threads_limits_the_blas_pool():
    proc = run_cli("info", "--json", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    pools = [p for p in json.loads(proc.stdout)["blas"] if p["user_api"] == "blas"]
    assert pools and all(p["num_threads"] == 1 for p in pools)


def test_info_into_a_closed_pipe_is_not_an_error(monkeypatch, capsys):
    """Defect: `softmax-bench info | head -1` sometimes ended with "Broken pipe" and exit 1."""
    from softmax_core.cli import main

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone, as `head` goes after its line
    with open(write_end, "w") as closed_pipe:
        monkeypatch.setattr(sys, "stdout", closed_pipe)
        assert main(["info"]) == 0
    assert "Broken pipe" not in capsys.readouterr().err


def test_negative_seed_is_refused_before_any_output(mnist_dir):
    """Defect: --seed -5 failed only after the table header was printed."""
    proc = run_cli("train", "--data-dir", mnist_dir, "--seed", "-5")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--seed" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_data_fetch_from_file_mirror(mnist_dir, tmp_path):
    target = tmp_path / "tmp"
    proc = run_cli("data", "fetch", "--dir", target, "--mirror", mnist_dir.as_uri())
    assert proc.returncode == 0, proc.stderr
    assert "MNIST verified in" in proc.stdout and str(target) in proc.stdout
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ]
    )


def test_data_fetch_refuses_http_in_one_line(tmp_path):
    proc = run_cli(
        "data", "fetch", "--dir", tmp_path / "d", "--mirror", "http://example.com/mnist/"
    )
    line = assert_one_line_error(proc)
    assert proc.returncode == 1
    assert "https" in line and line.startswith("softmax-bench data fetch: error: ")
    assert not (tmp_path / "d").exists()


def test_data_fetch_from_empty_mirror_is_one_line_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli("data", "fetch", "--dir", tmp_path / "d", "--mirror", empty.as_uri())
    line = assert_one_line_error(proc)
    assert "could not fetch train-images-idx3-ubyte.gz" in line
    assert f"copy the four .gz files into {tmp_path / 'd'} by hand" in line  # where they go


@pytest.mark.parametrize("argv", [["--threads", "1,,2"], ["--batch", "1,,8"], ["--classes", ","]])
def test_a_list_with_an_empty_item_is_refused_in_one_line(argv, cli_run):
    code, out, err = cli_run("sweep", *argv, "--out", "unused")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["sweep", "--time-budget", "1e300", "--rounds", "0"],
        ["scale", "--time-budget", "1e9", "--rounds", "0"],
        ["sidebyside", "--time-budget", "1e300", "--threads", "0"],
        ["gate", "HEAD", "HEAD", "--time-budget", "1e300", "--threads", "0"],
        ["data", "fetch", "--timeout", "1e300", "--mirror", "http://nowhere"],
    ],
)
def test_a_time_past_a_week_is_a_malformed_argument(argv, cli_run):
    """A budget, deadline or timeout is at most a week: a larger one is refused before anything
    runs (no clock takes 1e300 s).  (Each command line ends in an error of its own, so that a
    parser that lets the time through stops there, before it runs.)"""
    code, out, err = cli_run(*argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "at most 604800 seconds" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["sweep", "--batch", "8," + "9" * 20, "--out", "unused"],
        ["train", "--epochs", "9" * 20, "--data-dir", "unused"],
        ["scale", "--out-of-core", "9" * 20, "--out", "unused"],
        ["sweep", "--classes", "9" * 5000, "--out", "unused"],  # past int()'s digits
    ],
)
def test_a_count_past_10_to_the_18_is_a_malformed_argument(argv, cli_run):
    """No size or count past 10^18 has a cost that is a float: refused as the parser reads it,
    in a line that quotes the start of the number."""
    code, out, err = cli_run(*argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "at most 10^18" in err, err
    assert len(err) < 250


def test_a_class_count_below_2_is_a_malformed_argument(cli_run):
    """As `scale --classes 1` and `sweep --batch 0`: exit 2, before anything runs."""
    code, out, err = cli_run("sweep", "--classes", "10,1", "--out", "unused")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--classes" in err, err
    assert "at least 2 classes" in err


def test_the_renamed_commands_stay_out_of_the_help(cli_run):
    code, out, err = cli_run("--help")
    assert code == 0 and "train" in out and "suite" not in out and "overhead" not in out


def test_a_memory_budget_past_any_machine_is_one_line_naming_the_ram(cli_run, tmp_path):
    code, out, err = cli_run("sweep", "--memory-budget", "1e30", "--out", tmp_path / "s")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "exceeds the" in err and "fix:" in err and not (tmp_path / "s").exists()


def test_resume_of_a_folder_without_results_is_refused_in_one_line(cli_run, tmp_path):
    (tmp_path / "typo").mkdir()
    code, out, err = cli_run("sweep", "--resume", "--out", tmp_path / "typo")
    assert code == 1 and "nothing to resume" in err and "fix:" in err
    assert list((tmp_path / "typo").iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_train_refuses_a_metrics_file_it_cannot_write_before_it_trains(cli_run, tmp_path):
    for path in ("/proc/m.csv", "/proc/new/m.csv"):  # a folder to make there, too
        code, out, err = cli_run("train", "--metrics-out", path, "--data-dir", tmp_path)
        assert code == 1 and f"--metrics-out {path}: cannot write in /proc" in err and out == ""


def test_train_refuses_a_metrics_folder_before_it_trains(cli_run, tmp_path):
    code, out, err = cli_run("train", "--metrics-out", tmp_path, "--data-dir", tmp_path / "none")
    assert code == 1 and "is a folder" in err and "epoch" not in out
    (tmp_path / "afile").write_text("")
    metrics = tmp_path / "afile" / "m.csv"
    code, out, err = cli_run("train", "--metrics-out", metrics, "--data-dir", tmp_path / "none")
    assert code == 1 and f"{tmp_path / 'afile'} is a file; fix:" in err and "epoch" not in out


@pytest.mark.parametrize("bug", [ValueError("a bug"), TypeError("a bug"), KeyError("a bug")])
def test_a_bug_keeps_its_traceback_while_bad_input_is_one_line(monkeypatch, cli_run, bug):
    """Only errors of the user's input are printed as one line: a ValueError or TypeError
    from a defect in the code propagates with its traceback."""
    from softmax_core.cli import commands
    from softmax_core.errors import InputError

    def broken(args):
        raise bug

    monkeypatch.setitem(commands.COMMANDS, "info", broken)
    with pytest.raises(type(bug)):
        cli_run("info")

    def bad_input(args):
        raise InputError("--thing is wrong; fix: give another")

    monkeypatch.setitem(commands.COMMANDS, "info", bad_input)
    code, _, err = cli_run("info")
    assert code == 1 and err == "softmax-bench info: error: --thing is wrong; fix: give another\n"


@pytest.mark.parametrize("backend", ["cupy", "torch"])
def test_gpu_without_an_nvidia_driver_says_so_before_any_install_hint(
    monkeypatch, cli_run, tmp_path, backend
):
    from softmax_core.backends import base

    monkeypatch.setattr(base, "NVIDIA_DRIVER_FILES", (str(tmp_path / "no-such-device"),))
    monkeypatch.setenv("SOFTMAX_DEVICE", "gpu")
    monkeypatch.setenv("SOFTMAX_BACKEND", backend)
    code, _, err = cli_run("info")
    assert code == 1 and len(err.splitlines()) == 1
    assert "no NVIDIA driver" in err and "pip install" not in err and "SOFTMAX_DEVICE=cpu" in err
    monkeypatch.delenv("SOFTMAX_DEVICE")
    code, _, err = cli_run("info", "--device", "gpu")  # the option given is named too
    assert code == 1 and "--device gpu" in err and "--device cpu" in err


@pytest.mark.parametrize(
    "command,shown",
    [("sweep", "(default: 1,8,32,96,256,1024)"), ("scale", "(default: 100000,1000000)")],
)
def test_help_shows_list_defaults_as_they_are_typed(cli_run, command, shown):
    code, out, _ = cli_run(command, "--help")
    assert code == 0 and shown in " ".join(out.split()) and "[" not in out.split("options:")[1]


def test_every_option_with_a_default_says_it_in_its_help_and_every_command_says_what_it_does():
    """As README.md promises: ``COMMAND --help`` lists every option with its default."""
    import argparse

    from softmax_core.cli.parser import build_parser

    commands = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    silent = []
    for name, parser in commands.items():
        if not parser.add_help:  # a renamed command's stub
            continue
        if not parser.description:
            silent.append(f"{name}: no description")
        for action in parser._actions:
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                if "default" not in (action.help or ""):
                    silent.append(f"{name} {action.option_strings[0]}")
    assert silent == []


def run_as_info(monkeypatch, cli_run, command) -> tuple[int, str, str]:
    """``softmax-bench info`` running ``command(args)`` instead, with Ctrl-C's handler as in a
    terminal (Python's own)."""
    import signal

    from softmax_core.cli import commands

    monkeypatch.setitem(commands.COMMANDS, "info", command)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return cli_run("info")
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_that_a_library_swallowed_leaves_the_command_stoppable(monkeypatch, cli_run):
    """A KeyboardInterrupt can be lost on its way (a library's ``except BaseException``, a
    garbage-collector callback): the next Ctrl-C after a few seconds stops the command."""
    import signal
    import time

    from softmax_core import cli

    monkeypatch.setattr(cli, "REPEAT_IGNORED_S", 0.0, raising=False)

    def ctrl_c_until_it_stops(swallow: bool) -> None:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(500):
                time.sleep(0.002)  # the handler runs in the main thread, between these
        except KeyboardInterrupt:
            if not swallow:
                raise

    def info(args):
        ctrl_c_until_it_stops(swallow=True)
        ctrl_c_until_it_stops(swallow=False)
        return 0

    code, _, err = run_as_info(monkeypatch, cli_run, info)
    assert code == 130 and err == "softmax-bench info: interrupted\n"


@pytest.mark.parametrize("then", ["goes on", "ends"])
@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_stop_python_drops_in_a_finaliser_is_delivered_again(monkeypatch, cli_run, signum, then):
    """Ctrl-C (or SIGTERM) while a finaliser runs: Python drops the KeyboardInterrupt there
    (``Exception ignored in ...``); the command still stops, at once, in its one line, also
    where it ends before the stop is delivered again."""
    import signal
    import time

    printed = []
    monkeypatch.setattr(sys, "unraisablehook", printed.append)

    class SignalledWhileFreed:
        def __del__(self):
            os.kill(os.getpid(), getattr(signal, signum))
            for _ in range(100):
                time.sleep(0.002)  # the handler runs in here

    def info(args):
        SignalledWhileFreed()
        for _ in range(1000 if then == "goes on" else 0):
            time.sleep(0.002)
        return 0

    code, _, err = run_as_info(monkeypatch, cli_run, info)
    how = {"SIGINT": (130, "interrupted"), "SIGTERM": (143, "terminated")}[signum]
    assert (code, err) == (how[0], f"softmax-bench info: {how[1]}\n") and printed == []


def test_ctrl_c_while_the_arguments_are_read_is_one_line(monkeypatch, cli_run):
    from softmax_core import cli

    def parser():
        raise KeyboardInterrupt  # in a lazy import the parser makes

    monkeypatch.setattr(cli, "build_parser", parser)
    assert cli_run("info") == (130, "", "softmax-bench: interrupted\n")


def test_resume_of_a_folder_that_is_not_there_is_refused_before_it_says_where_it_measures(
    cli_run, tmp_path
):
    code, out, err = cli_run("sweep", "--resume", "--out", tmp_path / "typo")
    assert code == 1 and out == "" and "nothing to resume" in err and "fix:" in err
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize(
    "argv, name, own",
    [
        (["compare", "a", "b", "--out"], "compare.md", "# B = b against A = a\n"),
        (
            ["train", "--data-dir", "no-data", "--metrics-out"],
            "epochs.csv",
            "epoch,train_loss,train_err,test_loss,test_err,seconds\n",
        ),
        (["sidebyside", "--quick", "--out"], "", None),
    ],
)
def test_an_output_file_the_command_did_not_write_is_refused_untouched(
    tmp_path, cli_run, monkeypatch, argv, name, own
):
    """compare's --out, train's --metrics-out and sidebyside's two files replace only a file
    an earlier run of the command wrote: another one is refused in one line, before any work."""
    monkeypatch.chdir(tmp_path)
    target = tmp_path / (name or "sidebyside.md")
    target.write_text("someone else's")
    code, out, err = cli_run(*argv, target.parent if not name else target)
    assert code == 1 and len(err.splitlines()) == 1 and out == "", err
    assert "exists and was not written by this command" in err and str(target) in err
    assert target.read_text() == "someone else's"
    if own is not None:  # an empty file, or the command's own: it goes on (to fail on the
        target.write_text("")  # made-up input)
        code, _, err = cli_run(*argv, target)
        assert code == 1 and "exists and was not written" not in err, err
        target.write_text(own)
        code, _, err = cli_run(*argv, target)
        assert code == 1 and "exists and was not written" not in err, err


def test_a_path_the_system_refuses_is_one_line_with_its_fix(tmp_path, cli_run):
    """An --out under a file: the system's error, in words, with what to do about it."""
    (tmp_path / "f").write_text("")
    argv = ["--batch", "1", "--classes", "10", "--features", "784", "--epochs-on", "none"]
    code, _, err = cli_run("sweep", *argv, "--out", tmp_path / "f" / "x")
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "not a directory; fix: give a path this user can write to" in err
    assert "[Errno" not in err


@pytest.mark.parametrize(
    "argv, code, needle",
    [
        (["train", "--data-dir", "{file}"], 1, "is not a folder; fix: pass --data-dir"),
        (["data"], 2, "required: fetch"),
        (["sweep", "--memory-budget", "0.5", "--out", "{tmp}/m"], 2, "at least 1 byte"),
    ],
)
def test_small_mistakes_are_said_as_what_they_are(tmp_path, cli_run, argv, code, needle):
    (tmp_path / "file").write_text("")
    argv = [a.format(file=tmp_path / "file", tmp=tmp_path) for a in argv]
    got, _, err = cli_run(*argv)
    assert got == code and needle in err and len(err.splitlines()) == 1, err


def test_a_recorded_grid_that_is_no_grid_gives_one_fix(tmp_path, cli_run):
    (tmp_path / "environment.json").write_text('{"grid": {"classes": [1]}}')
    code, _, err = cli_run("sweep", "--resume", "--no-report", "--out", tmp_path)
    assert code == 1 and err.count("fix:") == 1 and "give that option with --resume" in err, err


def test_train_past_the_memory_it_can_spare_is_refused_before_an_epoch(
    cli_run, mnist_dir, monkeypatch
):
    """The Jacobians of a 60,000-row batch (41.4 GB in float64, by the cost model) were a
    MemoryError traceback in the first epoch: the prediction is refused in one line before it."""
    from softmax_core.runs import guard

    monkeypatch.setattr(guard, "default_memory_budget", lambda backend: 10**9)
    argv = ["--data-dir", mnist_dir, "--grad", "naive_batched", "--dtype", "float64"]
    code, out, err = cli_run("train", *argv, "--batch", "60000", "--epochs", "1")
    assert code == 1 and len(err.splitlines()) == 1 and "epoch" not in out.split("\n", 1)[-1]
    assert "needs 41.4 GB a step, over the 1.00 GB" in err and "fix: a smaller --batch" in err
    code, out, err = cli_run("train", "--data-dir", mnist_dir, "--batch", "60000", "--epochs", "1")
    assert code == 0 and err == ""  # the structured gradient's batch fits


def test_train_writes_a_loss_that_grew_in_its_column(cli_run, mnist_dir):
    """A diverging lr's loss of 1e29 is written as a power of ten, not 30 digits."""
    argv = ["--data-dir", mnist_dir, "--dtype", "float64", "--lr", "1e30", "--batch", "60000"]
    code, out, err = cli_run("train", *argv, "--epochs", "1")
    row = out.splitlines()[2].split()
    assert code == 0 and row[0] == "1" and "e+" in row[1] and "e+" in row[3], out
    assert max(map(len, out.splitlines())) < 100


def test_a_file_that_cannot_be_written_is_named_not_its_temporary_file(tmp_path):
    """Every output is written through a temporary file beside it: an error names the file
    asked for, and leaves no temporary file."""
    from softmax_core.cli import _said
    from softmax_core.fileio import atomic_write_text

    target = tmp_path / "report.md"
    target.mkdir()
    with pytest.raises(OSError) as caught:
        atomic_write_text(target, "x")
    assert caught.value.filename == str(target) and list(tmp_path.iterdir()) == [target]
    assert _said(caught.value).startswith(f"{target}: is a directory; fix:")
    longest = tmp_path / ("a" * 252 + ".md")  # the longest name a file may have
    atomic_write_text(longest, "x")
    assert longest.read_text() == "x" and len(list(tmp_path.iterdir())) == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["sweep", "--methods", "z" * 3000],
        ["sweep", "--methods", "a\nb"],
        ["scale", "--dtype", "f" * 3000],
        ["scale", "--data", "12\n34\n" + "x" * 200],
        ["sweep", "--classes", "1\n" * 100],
    ],
)
def test_an_arguments_error_quotes_it_on_one_short_line(argv, cli_run):
    code, out, err = cli_run(*argv, "--out", "unused")
    assert code == 2 and len(err.strip().splitlines()) == 1 and len(err) < 250, err
