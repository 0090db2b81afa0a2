"""The suite (softmax_core.suite), the GPU run's scripts (tools/gpu), and the GPU code
paths that a CPU can check against stand-ins, so that the one GPU call finds no surprise
a CPU could have found: the CuPy peak-memory hook, the torch CUDA peak, a CuPy device's
description, and a sweep plus report whose backend times with (stand-in) CUDA events.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
import tarfile
import time
import types
from pathlib import Path

import numpy as np
import pytest

from softmax_core import get_backend
from softmax_core import suite as suite_mod
from softmax_core.backends import EventTimer
from softmax_core.backends import cupy as cupy_backend
from softmax_core.backends import torch as torch_backend
from softmax_core.suite import (
    Stage,
    Suite,
    check_test_error,
    stage_cap,
    sweep_point_budget,
    write_archive,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
GPU_TOOLS = REPO_ROOT / "tools" / "gpu"


# --------------------------------------------------------------------------- budget arithmetic


def test_sweep_point_budget_shrinks_to_fit_and_keeps_the_default_when_there_is_room():
    assert sweep_point_budget(1000) == 20.0  # the default grid's own budget
    lo = suite_mod.SWEEP_BUDGET_RANGE[0]
    assert sweep_point_budget(10) == lo and sweep_point_budget(-5) == lo
    values = [sweep_point_budget(s) for s in range(40, 400, 20)]
    assert values == sorted(values)
    t = sweep_point_budget(150)
    # the calibration: a sweep at this budget takes about the time there is
    assert suite_mod.SWEEP_FIXED_S + suite_mod.SWEEP_S_PER_BUDGET_S * t == pytest.approx(150, abs=1)


def test_stage_caps_have_floors_and_ceilings():
    assert stage_cap("tests", 480) == 96
    assert stage_cap("tests", 60) == 30 and stage_cap("tests", 5000) == 150
    default_caps = sum(stage_cap(n, 480) for n in suite_mod.CAPS)
    assert (
        default_caps < 480 - 90
    )  # at least 90 s are left to the sweep even if every stage hits its cap


@pytest.mark.parametrize(
    "err, ok, says",
    [
        (0.0797, True, "exactly"),
        (0.0799, True, "+2 images"),
        (0.0794, True, "-3 images"),
        (0.0810, False, "outside"),
    ],
)
def test_check_test_error(err, ok, says):
    got, text = check_test_error(err)
    assert got is ok and says in text


# --------------------------------------------------------------------------- the stage runner


def test_a_stage_past_its_deadline_is_killed_with_its_children(tmp_path):
    s = Suite(tmp_path / "out", budget_s=60, skip=("report",))
    s.out.mkdir()
    pidfile = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    st = Stage("tests")
    t0 = time.monotonic()
    assert s._cli(st, ["-c", code], 2.5, "x.log") is None
    assert time.monotonic() - t0 < 2.5 + suite_mod.KILL_GRACE_S + 2
    assert st.status == "timeout" and "deadline" in st.detail and st.files == ["x.log"]
    import psutil

    child = int(pidfile.read_text())
    time.sleep(0.2)
    try:  # killed: gone, or a zombie waiting for whoever adopted it to reap it
        assert psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        pass


def test_a_stage_without_time_left_is_skipped(tmp_path):
    s = Suite(tmp_path / "out", budget_s=5)
    s.out.mkdir()
    st = Stage("train")
    assert s._cli(st, ["-c", "pass"], 30, "x.log") is None
    assert (st.status, st.detail) == ("skipped", "no time left in the budget")


def test_stages_that_cannot_run_are_skipped_with_the_reason(tmp_path, monkeypatch):
    s = Suite(tmp_path / "out", budget_s=60, data_dir=None)
    st = Stage("train")
    s._train(st)
    assert (st.status, st.detail) == ("skipped", "no --data-dir (the MNIST files)")
    import importlib.util

    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else object()
    )
    st = Stage("train-torch")
    s._train_torch(st)
    assert (st.status, st.detail) == ("skipped", "torch is not installed")
    monkeypatch.setattr(suite_mod, "TEST_FILES", ("tests/not_there.py",))
    st = Stage("tests")
    s._tests(st)
    assert st.status == "skipped" and "no tests beside the package" in st.detail


def test_a_stage_that_raises_fails_alone_and_the_archive_is_still_written(tmp_path, monkeypatch):
    def broken(self, st):
        raise KeyError("no such column")

    monkeypatch.setattr(Suite, "_environment", broken)
    s = Suite(
        tmp_path / "out",
        budget_s=60,
        skip=tuple(n for n in suite_mod.STAGES if n != "environment"),
        log=open(os.devnull, "w"),
    )
    assert s.run() == 1
    assert (s.stages[0].status, s.stages[0].detail) == (
        "failed",
        "suite error: KeyError: 'no such column'",
    )
    assert s.archive.exists()


def test_bad_arguments(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        Suite(tmp_path / "full")
    with pytest.raises(ValueError, match="unknown stage"):
        Suite(tmp_path / "new", skip=("nope",))
    with pytest.raises(ValueError, match="budget"):
        Suite(tmp_path / "new", budget_s=0)


def test_suite_cli_failures_are_one_line(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    for args, code in (
        (["--out", tmp_path / "full"], 1),
        (["--out", tmp_path / "n", "--skip", "nope"], 2),
        (["--out", tmp_path / "n", "--budget", "-1"], 2),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "softmax_core.cli", "suite", *map(str, args)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == code
        assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_quick_suite_end_to_end_writes_the_folder_and_one_archive(tmp_path):
    out, archive = tmp_path / "suite", tmp_path / "back" / "suite.tar.gz"
    s = Suite(
        out,
        budget_s=90,
        quick=True,
        archive=archive,
        data_dir=None,
        skip=("tests", "train-torch", "sidebyside", "report"),
        log=open(os.devnull, "w"),
    )
    t0 = time.monotonic()
    assert s.run() == 0, [(x.name, x.status, x.detail) for x in s.stages]
    assert time.monotonic() - t0 < 90
    summary = json.loads((out / "suite.json").read_text())
    status = {st["name"]: st["status"] for st in summary["stages"]}
    assert status == {
        "environment": "ok",
        "tests": "skipped",
        "train": "skipped",
        "train-torch": "skipped",
        "sidebyside": "skipped",
        "sweep": "ok",
        "report": "skipped",
    }
    assert json.loads((out / "environment.json").read_text())["backend"]["label"] == "numpy-cpu"
    assert "of 14 points have a row" in summary["stages"][5]["detail"]
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {
        "suite/suite.json",
        "suite/suite.md",
        "suite/environment.json",
        "suite/sweep/results.csv",
    } <= names
    assert archive.stat().st_size < suite_mod.ARCHIVE_LIMIT_BYTES


def test_archive_leaves_the_plots_out_past_the_limit(tmp_path):
    folder = tmp_path / "set"
    (folder / "sweep").mkdir(parents=True)
    (folder / "sweep" / "plot.png").write_bytes(np.random.default_rng(0).bytes(300_000))
    (folder / "suite.json").write_text("{}")
    size = write_archive(folder, tmp_path / "a.tar.gz", limit=100_000)
    assert size <= 100_000
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["set", "set/suite.json", "set/sweep"]
    assert write_archive(folder, tmp_path / "b.tar.gz") > 300_000  # under the real limit all stays


# --------------------------------------------------------------------------- the GPU run's scripts


def test_gpu_scripts_parse_and_the_device_call_fits_its_limits():
    for name in ("prepare.sh", "rehearse.sh", "device-run.sh"):
        subprocess.run(["bash", "-n", str(GPU_TOOLS / name)], check=True)
    text = (GPU_TOOLS / "device-run.sh").read_text()
    call = 'run(command="bash tools/gpu/device-run.sh", carry=[".whl", ".data"], timeout_s=600)'
    assert call in text and call in (GPU_TOOLS / "prepare.sh").read_text()
    # the install line of the device README, word for word
    assert (
        "-m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "
        '"$SITE" .whl/*.whl'
    ) in text
    # budget + the command's own margin stay inside the 600 s a command may run
    assert "SUITE_BUDGET_S:-480" in text and "BUDGET + 60" in text
    ignored = subprocess.run(
        ["git", "check-ignore", ".whl/x.whl", ".data/mnist/x.gz"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert ignored.stdout.split() == [".whl/x.whl", ".data/mnist/x.gz"]


def test_device_run_without_out_says_so():
    proc = subprocess.run(
        ["bash", str(GPU_TOOLS / "device-run.sh")],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"]},
        timeout=30,
    )
    assert proc.returncode != 0 and "OUT is not set" in proc.stderr


# --------------------------------------------------------------------------- GPU paths, stand-ins


def fake_cupy_with_pool(async_pool: bool = False, foreign: bool = False):
    """A stand-in ``cupy``: a memory pool that calls the active memory hooks as CuPy's does
    (``malloc_postprocess``/``free_postprocess`` with ``device_id, size, mem_size, mem_ptr,
    pmem_id``; ``mem_size`` rounded up to 512 bytes)."""
    hooks = []

    class MemoryHook:
        def __enter__(self):
            hooks.append(self)
            return self

        def __exit__(self, *exc):
            hooks.remove(self)

    class MemoryPool:
        def __init__(self):
            self.next = 0

        def malloc(self, size):
            mem = -(-size // 512) * 512
            self.next += 1
            for h in hooks:
                h.malloc_postprocess(
                    device_id=0, size=size, mem_size=mem, mem_ptr=self.next, pmem_id=self.next
                )
            return (self.next, mem)

        def free(self, block):
            for h in hooks:
                h.free_postprocess(
                    device_id=0, mem_size=block[1], mem_ptr=block[0], pmem_id=block[0]
                )

    class MemoryAsyncPool(MemoryPool):
        pass

    pool = (MemoryAsyncPool if async_pool else MemoryPool)()
    cuda = types.SimpleNamespace(
        MemoryHook=MemoryHook,
        MemoryPool=MemoryPool,
        MemoryAsyncPool=MemoryAsyncPool,
        get_allocator=lambda: (lambda n: None) if foreign else pool.malloc,
    )
    return types.SimpleNamespace(cuda=cuda), pool


def test_cupy_peak_hook_counts_rounded_bytes_in_use_during_the_call():
    cupy, pool = fake_cupy_with_pool()
    synced = []
    peak = functools.partial(cupy_backend.pool_peak, cupy, lambda: synced.append(1))
    before = pool.malloc(10_000)  # in use before: not counted, even when freed inside

    def call():
        a, _b = pool.malloc(1000), pool.malloc(4096)  # 1024 + 4096
        pool.free(a)
        pool.free(before)
        c = pool.malloc(100)  # 512
        return c

    assert peak(call, ()) == 1024 + 4096
    assert len(synced) == 2  # before and after the call


@pytest.mark.parametrize("async_pool, foreign", [(True, False), (False, True)])
def test_cupy_peak_is_none_where_hooks_see_nothing(async_pool, foreign):
    cupy, _ = fake_cupy_with_pool(async_pool, foreign)
    assert not cupy_backend.pool_is_hookable(cupy)
    assert cupy_backend.pool_peak(cupy, lambda: None, lambda: 1, ()) is None
    assert cupy_backend.pool_is_hookable(fake_cupy_with_pool()[0])


def test_torch_cuda_peak_is_the_rise_over_the_bytes_in_use():
    state = {"alloc": 1000, "max": 5000, "log": []}
    cuda = types.SimpleNamespace(
        synchronize=lambda: state["log"].append("sync"),
        reset_peak_memory_stats=lambda: state.update(max=state["alloc"]),
        memory_allocated=lambda: state["alloc"],
        max_memory_allocated=lambda: state["max"],
    )

    def call():
        state["max"] = max(state["max"], state["alloc"] + 3000)
        return "result"

    assert torch_backend.cuda_peak(types.SimpleNamespace(cuda=cuda), call, ()) == 3000
    assert state["log"] == ["sync", "sync"]


def test_describe_a_cupy_device(monkeypatch):
    runtime = types.SimpleNamespace(
        getDeviceProperties=lambda i: {"name": b"NVIDIA H100 80GB HBM3"},
        memGetInfo=lambda: (70 * 2**30, 80 * 2**30),
        driverGetVersion=lambda: 13000,
        runtimeGetVersion=lambda: 13000,
    )
    monkeypatch.setitem(
        sys.modules,
        "cupy",
        types.SimpleNamespace(__version__="14.2.0", cuda=types.SimpleNamespace(runtime=runtime)),
    )
    b = cupy_backend.CupyBackend(sys.modules["cupy"], None, types.SimpleNamespace(id=0))
    info = b.describe()
    assert info["gpu_name"] == "NVIDIA H100 80GB HBM3" and info["cupy"] == "14.2.0"
    assert info["gpu_memory_total_bytes"] == 80 * 2**30 and info["label"] == "cupy-gpu"


class _Event:
    def record(self):
        self.t = time.perf_counter()

    def synchronize(self):
        pass


def test_sweep_and_report_on_a_backend_timed_by_cuda_events(tmp_path):
    """The sweep's and the report's GPU branches (device times, host times beside them, the
    GPU memory fraction, the CPU/GPU comparison) on NumPy timed through stand-in events."""
    from softmax_core.report import make_report
    from softmax_core.runs.cases import Grid
    from softmax_core.runs.sweep import run_sweep

    cpu = get_backend("cpu", "numpy")
    gpu_like = copy.copy(cpu)
    gpu_like.device_kind = "gpu"
    gpu_like.timer = lambda: EventTimer(_Event, lambda a, b: (b.t - a.t) * 1e3, lambda: None)
    grid = Grid(
        methods=("structured",),
        batches=(8, 64),
        classes=(10,),
        features=(784,),
        epochs_on="none",
        time_budget_s=2,
    )
    log = open(os.devnull, "w")
    for name, b in (("cpu", cpu), ("gpu", gpu_like)):
        run_sweep(grid, b, tmp_path / name, progress=False, log=log)
    rows = (tmp_path / "gpu" / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and ",gpu," in rows[1]
    env = json.loads((tmp_path / "gpu" / "environment.json").read_text())
    assert env["backend"]["label"] == "numpy-gpu"
    report = make_report([tmp_path / "cpu", tmp_path / "gpu"], tmp_path / "report").read_text()
    assert "numpy-gpu" in report and "numpy-cpu" in report
    assert (tmp_path / "report" / "cpu_vs_gpu.png").exists(), report
