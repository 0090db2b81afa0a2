"""The side-by-side comparison (softmax_core.baseline.sidebyside) and its command.

Tiny workloads on the CPU (NumPy, and torch where installed); the operation counts
tied to the model's code path; the profiler-event counting on stand-in events; and,
at the end, real-device checks that run only where a GPU is (the suite's ``tests``
stage runs this file on the GPU machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import fake_probe

from softmax_core import BackendError, get_backend, grad_structured
from softmax_core.baseline import sidebyside as sbs
from softmax_core.baseline.launches import count_launches
from softmax_core.baseline.workloads import GRAD_OPS, STEP_OPS
from softmax_core.model import sgd as model
from softmax_core.units import si

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY = [
    (sbs.Workload("mnist_epoch", "tiny epoch", 400, 20, 5, 100, lr=0.2), None),
    (sbs.Workload("gradient", "tiny gradient", 64, 16, 16, 64), None),
]


def has_torch() -> bool:
    try:
        import torch  # noqa: F401

        return True
    except ImportError:
        return False


@pytest.fixture
def one_torch_thread():
    """torch's two intra-op threads spin for milliseconds per operation on a 2-core machine
    that another process loads: the tiny comparisons run with one, as fast tests."""
    if not has_torch():
        yield
        return
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def gpu(name: str):
    try:
        return get_backend("gpu", name)
    except (BackendError, ValueError) as exc:
        pytest.skip(f"no GPU through {name}: {exc}")


# --------------------------------------------------------------------------- operation counts


class Counting(np.ndarray):
    """An ndarray that records every ufunc call made on it (matmul and reductions included)."""

    calls: list = []

    def __array_ufunc__(self, ufunc, method, *inputs, **kw):
        Counting.calls.append(f"{ufunc.__name__}.{method}")
        plain = [np.asarray(a) if isinstance(a, Counting) else a for a in inputs]
        if "out" in kw:
            kw["out"] = tuple(np.asarray(o) for o in kw["out"])
        res = getattr(ufunc, method)(*plain, **kw)
        return res.view(Counting) if isinstance(res, np.ndarray) else res


def test_step_ops_are_the_operations_of_one_structured_sgd_step():
    import array_api_compat.numpy as xp

    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 5)).astype(np.float32).view(Counting)
    I = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)].view(Counting)
    theta = np.zeros((5, 3), np.float32).view(Counting)
    Counting.calls = []
    model._sgd_step_structured(xp, X, I, theta, 0.1, *model._row_reductions(xp))
    assert len(Counting.calls) == len(STEP_OPS), Counting.calls


def test_grad_ops_are_the_operations_of_grad_structured():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 5)).astype(np.float32).view(Counting)
    y = rng.integers(0, 3, 8).view(Counting)
    Counting.calls = []
    grad_structured(X, y, np.zeros((5, 3), np.float32).view(Counting), check=False)
    # arange(k) and astype make arrays without a ufunc: every other entry is one
    assert len(Counting.calls) == len(GRAD_OPS) - 2, Counting.calls


def test_static_launches_per_step():
    assert sbs.MNIST_EPOCH.steps == 600 and sbs.MNIST_EPOCH.profile_steps() == 65
    # 10 per step, and I_y's 2 per chunk of 65 batches: 10 chunks in 600 steps
    assert sbs.MNIST_EPOCH.static_launches_per_step() == pytest.approx(10 + 2 * 10 / 600)
    assert sbs.GRADIENT.static_launches_per_step() == 12 and sbs.GRADIENT.steps == 1


def event(name, device, parent=None, activity=None):
    return types.SimpleNamespace(
        name=name, device_type=f"DeviceType.{device}", cpu_parent=parent, activity_type=activity
    )


def test_count_launches_on_a_gpu_counts_device_work_not_annotations_or_host_ops():
    mm = event("aten::mm", "CPU")
    events = [
        mm,
        event("aten::add_", "CPU"),
        event("sm90_xmma_gemm", "CUDA", activity="kernel"),
        event("Memcpy HtoD", "CUDA", activity="gpu_memcpy"),
        event("Memset", "CUDA", activity="gpu_memset"),
        event("elementwise_kernel", "CUDA"),  # no activity type: counted
        event("ProfilerStep#1", "CUDA", activity="gpu_user_annotation"),
    ]
    assert count_launches(events, "gpu") == 4
    assert count_launches(events[:2], "gpu") is None


def test_count_launches_on_the_cpu_counts_outermost_aten_ops():
    matmul = event("aten::matmul", "CPU")
    engine = event("autograd::engine::evaluate_function: MmBackward0", "CPU")
    events = [
        matmul,
        event("aten::mm", "CPU", matmul),
        event("aten::resolve_conj", "CPU", event("x", "CPU", matmul)),
        event("aten::slice", "CPU"),
        engine,
        event("aten::mm", "CPU", engine),
        event("cudaLaunchKernel", "CPU"),
        event("kernel", "CUDA", activity="kernel"),
    ]
    assert count_launches(events, "cpu") == 3  # matmul, slice, the backward mm
    assert count_launches([], "cpu") is None


def test_step_bound_takes_the_largest_of_launches_bandwidth_and_flops():
    w = sbs.GRADIENT
    c = w.cost()
    probe = {"gemm_gflops": c.flops / 1e9, "copy_gbps": c.traffic_bytes / 1e9}  # 1 s each
    assert sbs.step_bound(w, 12, 1e-3, probe)[:2] == (pytest.approx(1.0), "bandwidth")
    bound, which, each = sbs.step_bound(w, 12, 1.0, probe)
    assert (bound, which) == (12.0, "launches") and each["flops"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- the comparison


@pytest.mark.slow
def test_run_sidebyside_on_tiny_workloads(tmp_path, one_torch_thread, monkeypatch):
    monkeypatch.setattr(sbs, "MIN_CALLS", 0)  # no variant left out for time on a loaded machine
    monkeypatch.setattr(sbs, "probe_machine", fake_probe)  # the real one: the reference set's
    res = sbs.run_sidebyside("cpu", workloads=TINY, time_budget_s=1.5)
    assert [w["name"] for w in res["workloads"]] == ["mnist_epoch", "gradient"]
    assert res["probe"]["gemm_gflops"] > 0 and res["latency_s"]["numpy-cpu"] > 0
    for w in res["workloads"]:
        rows = {r["variant"]: r for r in w["variants"]}
        assert list(rows) == list(sbs.VARIANTS)
        first = rows["softmax-bench"]
        assert first["status"] == "ok" and first["library"] == "numpy-cpu" and first["agrees"]
        assert first["time_median_s"] > 0 and first["repeats"] >= 2
        assert first["launches_how"] == "static"
        assert first["per_step_s"] == pytest.approx(first["time_median_s"] / w["steps"])
        # the plain NumPy loops run beside softmax-bench, the ratios taken round by round
        plain = ["numpy", "numpy-lecture"] if w["kind"] == "epoch" else ["numpy"]
        for name in plain:
            r = rows[name]
            assert r["status"] == "ok" and r["library"] == "numpy-cpu" and r["agrees"], r
        assert rows["numpy"]["vs_baseline"] == 1.0 and rows["numpy"]["baseline"] == "numpy"
        assert first["baseline"] == "numpy" and len(first["vs_baseline_ci"]) == 2
        if w["kind"] == "gradient":
            assert rows["numpy-lecture"]["status"] == "skipped"
        for name in ("softmax-bench-torch", "pytorch", "pytorch-autograd"):
            r = rows[name]
            if not has_torch():
                assert r["status"] == "skipped" and "torch" in r["reason"]
                continue
            assert r["status"] == "ok" and r["library"] == "torch-cpu", r
            assert r["agrees"], (name, r["max_rel_diff"])
            assert r["baseline"] == "pytorch" and len(r["vs_baseline_ci"]) == 2
            assert r["launches_how"].startswith("profiled") and r["launches_per_step"] > 0
        if has_torch():
            assert rows["pytorch"]["vs_baseline"] == 1.0
    md = sbs.write(res, tmp_path)
    text = md.read_text()
    assert "| softmax-bench | numpy-cpu |" in text and "## tiny gradient" in text
    assert json.loads((tmp_path / "sidebyside.json").read_text())["device"] == "cpu"
    for name, ours in sbs.OWN_FILES.items():  # a later run into this folder replaces them
        assert ours((tmp_path / name).read_text()[:4096]), name


def test_without_torch_the_torch_variants_are_skipped_with_the_reason(
    monkeypatch, one_torch_thread
):
    real = sbs.get_backend

    def no_torch(device=None, backend=None):
        if backend == "torch":
            raise BackendError("backend 'torch' was asked for but cannot be imported (stand-in)")
        return real(device, backend)

    monkeypatch.setattr(sbs, "get_backend", no_torch)
    monkeypatch.setattr(sbs, "probe_machine", fake_probe)
    res = sbs.run_sidebyside("cpu", workloads=TINY[1:], time_budget_s=1)
    rows = res["workloads"][0]["variants"]
    status = {r["variant"]: r["status"] for r in rows}
    assert status == {
        "softmax-bench": "ok",
        "numpy": "ok",
        "numpy-lecture": "skipped",  # a gradient workload: the lecture's loop is an epoch
        "softmax-bench-torch": "skipped",
        "pytorch": "skipped",
        "pytorch-autograd": "skipped",
    }
    by_name = {r["variant"]: r for r in rows}
    assert "stand-in" in by_name["pytorch"]["reason"] and "stand-in" in res["torch_skipped"]
    assert by_name["softmax-bench"]["baseline"] == "numpy"
    text = sbs.markdown(res)
    assert "torch variants skipped" in text
    w = res["workloads"][0]  # every figure in the one unit rule of every table
    assert f"per step {si(w['flops'] / w['steps'], 'FLOP')} and" in text


@pytest.mark.skipif(not has_torch(), reason="torch is not installed")
def test_a_variant_predicted_over_the_time_left_is_left_out(monkeypatch, one_torch_thread):
    def slow_autograd(fn, *args, **kw):
        res, seconds = real(fn, *args, **kw)
        name = getattr(getattr(fn, "func", fn), "__name__", "")
        return res, 1e3 if name.startswith("autograd") else seconds

    real = sbs.time_once
    monkeypatch.setattr(sbs, "time_once", slow_autograd)
    res = sbs.run_sidebyside("cpu", workloads=TINY[1:], time_budget_s=2)
    rows = {r["variant"]: r for r in res["workloads"][0]["variants"]}
    assert rows["pytorch-autograd"]["status"] == "skipped"
    assert rows["pytorch-autograd"]["reason"].startswith("predicted 5000.0 s for its least 5 calls")
    assert rows["pytorch"]["status"] == rows["softmax-bench-torch"]["status"] == "ok"


def run_cli(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOFTMAX_")}
    return subprocess.run(
        [sys.executable, "-m", "softmax_core.cli", *map(str, args)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args, code", [(["--time-budget", "0"], 2), (["--data-dir", "/nonexistent/mnist"], 1)]
)
def test_sidebyside_cli_failures_are_one_line(args, code):
    proc = run_cli("sidebyside", *args)
    assert proc.returncode == code
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr


@pytest.mark.parametrize(
    "argv, budget", [(["--quick"], 10), (["--quick", "--time-budget", "3"], 3)]
)
def test_the_quick_side_by_side_takes_seconds(argv, budget, cli_run, monkeypatch):
    """A smoke test is quick: --quick's budget is 10 s unless given, not the MNIST run's 120 s."""
    from softmax_core.baseline import sidebyside as sbs

    given = []

    def run_sidebyside(device, workloads, time_budget_s, **kw):
        given.append(time_budget_s)
        raise KeyboardInterrupt

    monkeypatch.setattr(sbs, "run_sidebyside", run_sidebyside)
    assert cli_run("sidebyside", *argv)[0] == 130
    assert 0.9 * budget <= given[0] <= budget


# --------------------------------------------------------------------------- on a real GPU only


def test_gpu_cupy_peak_hook_sees_an_allocation():
    b = gpu("cupy")
    import cupy

    n = 16 * 2**20
    peak = b.peak_bytes(lambda: cupy.ones(n // 4, dtype=cupy.float32))
    assert peak == pytest.approx(n, rel=0.01)


def test_gpu_event_timer_reads_device_time():
    b = gpu("cupy")
    a = b.asarray(np.ones((2048, 2048)), "float32")
    timer = b.timer()
    timer.start()
    for _ in range(5):
        a @ a
    host, device = timer.stop()
    assert device is not None and 0 < device <= host * 1.1


def test_gpu_torch_backend_gradient_matches_numpy():
    b = gpu("torch")
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((64, 30)), rng.integers(0, 7, 64)
    theta = 0.1 * rng.standard_normal((30, 7))
    want = grad_structured(X, y, theta)
    got = b.to_numpy(
        grad_structured(b.asarray(X, "float64"), b.asarray(y), b.asarray(theta, "float64"))
    )
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert (
        b.peak_bytes(
            grad_structured, b.asarray(X, "float64"), b.asarray(y), b.asarray(theta, "float64")
        )
        > 0
    )


@pytest.mark.parametrize("library", ["torch", "cupy"])
def test_gpu_profiler_counts_kernels_of_an_sgd_epoch(library):
    b = gpu(library)
    pytest.importorskip("torch")
    X, y = (
        np.random.default_rng(0).standard_normal((500, 20)).astype(np.float32),
        np.arange(500) % 5,
    )
    args = (b.asarray(X, "float32"), b.asarray(y), b.asarray(np.zeros((20, 5)), "float32"))
    n, how = sbs.profile_launches(lambda *a: model.sgd_epoch(*a, 0.1, 100), args, b)
    if library == "torch":
        assert n is not None and n >= 5 * len(STEP_OPS), how
    else:  # CUPTI sees CuPy's kernels too, or the count says why not
        assert n is None or n >= 5 * len(STEP_OPS), how


@pytest.mark.parametrize("argv", [["overhead"], ["overhead", "--rounds", "3", "--max-time", "1"]])
def test_overhead_names_its_new_spelling_in_one_line(argv, capsys):
    from softmax_core.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'overhead' is now 'softmax-bench sidebyside'" in err[0]


def test_a_budget_spent_before_the_workloads_gives_them_no_share_not_a_negative_one(
    monkeypatch, one_torch_thread
):
    def slow_probe(backend):
        time.sleep(0.05)  # past the whole budget
        return fake_probe(backend)

    said = []
    monkeypatch.setattr(sbs, "probe_machine", slow_probe)
    res = sbs.run_sidebyside("cpu", workloads=TINY[1:], time_budget_s=0.01, log=said.append)
    assert [s for s in said if s.startswith("sidebyside: tiny")] == [
        "sidebyside: tiny gradient, 0 s"
    ]
    assert res["workloads"][0]["variants"][0]["status"] == "ok"
