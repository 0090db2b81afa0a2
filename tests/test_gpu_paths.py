"""The GPU code paths that a CPU can check against stand-ins, so that a run on a machine with
an NVIDIA GPU finds no surprise a CPU could have found: the CuPy peak-memory hook, the torch
CUDA peak, a CuPy device's description, and a sweep plus report whose backend times with
(stand-in) CUDA events.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import sys
import time
import types

import pytest

from softmax_core import get_backend
from softmax_core.backends import EventTimer
from softmax_core.backends import cupy as cupy_backend
from softmax_core.backends import torch as torch_backend

# reports here are read, not looked at: they are not rendered
pytestmark = pytest.mark.usefixtures("unrendered_plots")


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


@pytest.mark.slow
def test_sweep_and_report_on_a_backend_timed_by_cuda_events(tmp_path):
    """The sweep's and the report's GPU branches (device times, host times beside them, the
    GPU memory fraction, the CPU/GPU comparison) on NumPy timed through stand-in events."""
    from conftest import fake_probe

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
        run_sweep(grid, b, tmp_path / name, progress=False, log=log, probe=fake_probe)
    rows = (tmp_path / "gpu" / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and ",gpu," in rows[1]
    env = json.loads((tmp_path / "gpu" / "environment.json").read_text())
    assert env["backend"]["label"] == "numpy-gpu"
    report = make_report([tmp_path / "cpu", tmp_path / "gpu"], tmp_path / "report").read_text()
    assert "numpy-gpu" in report and "numpy-cpu" in report
    assert (tmp_path / "report" / "cpu_vs_gpu.png").exists(), report
