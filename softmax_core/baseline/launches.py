"""Launches per step and the floors they set: how many operations a step launches (torch's
profiler), the latency of one tiny operation, and the bound of a step, the largest of
launches x latency, traffic / copy bandwidth and FLOPs / GEMM rate."""

from __future__ import annotations

import numpy as np

from ..backends import Backend
from ..measure.engine import measure
from ..model.cost import ceiling_seconds

#: Tiny in-place additions per latency sample (a chain, as a step's operations are).
LATENCY_CHAIN = 100


#: Device events that are launches (torch's activity types); annotations mirror host ranges.
DEVICE_WORK = (None, "kernel", "gpu_memcpy", "gpu_memset")


def count_launches(events, device_kind: str) -> int | None:
    """Operations in torch profiler events (or stand-ins of them): on a GPU the device's kernels,
    copies and fills; on the CPU the outermost ``aten::`` operators (autograd's included)."""

    def outermost_aten(e) -> bool:
        while (e := getattr(e, "cpu_parent", None)) is not None and not str(e.name).startswith(
            "aten::"
        ):
            pass
        return e is None

    if device_kind == "gpu":
        n = sum(
            1
            for e in events
            if str(e.device_type).upper().endswith("CUDA")
            and getattr(e, "activity_type", None) in DEVICE_WORK
        )
    else:
        n = sum(
            1
            for e in events
            if str(e.device_type).upper().endswith("CPU")
            and str(e.name).startswith("aten::")
            and outermost_aten(e)
        )
    return n or None


def profile_launches(fn, args, backend: Backend) -> tuple[int | None, str]:
    """(operations counted in one call, how), through torch's profiler where it can see."""
    if not backend.is_gpu and backend.name != "torch":
        return None, "NumPy: no profiler counts its calls"
    try:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if backend.is_gpu else [])
        backend.synchronize()
        with profile(activities=acts) as prof:
            fn(*args)
            backend.synchronize()
        n = count_launches(prof.events(), backend.device_kind)
    except Exception as exc:  # no torch, or a profiler that fails, must not fail the comparison
        return None, f"profiler failed: {type(exc).__name__}: {exc}".replace("\n", " ")[:200]
    return (n, "torch profiler") if n else (None, "the profiler saw no operations")


def launch_latency_s(backend: Backend, max_time_s: float = 0.3) -> float:
    """Seconds per tiny operation in a chain of :data:`LATENCY_CHAIN` in-place additions
    (device time on a GPU: the launch and dispatch cost a step's small operations pay)."""

    def chain(a):
        for _ in range(LATENCY_CHAIN):
            a += 1

    a = backend.asarray(np.zeros(16), "float32", copy=True)
    return (
        measure(chain, a, backend=backend, max_time_s=max_time_s, min_sample_s=0).median
        / LATENCY_CHAIN
    )


def step_bound(w, launches: float, latency_s: float, probe: dict) -> tuple[float, str, dict]:
    """(seconds, what binds, each bound) of one step: launches x latency, traffic / copy
    bandwidth, FLOPs / GEMM rate, with the cost model's FLOPs and traffic per step."""
    c = w.cost()
    flops_s, traffic_s = ceiling_seconds(
        c.flops / w.steps,
        c.traffic_bytes / w.steps,
        probe["gemm_gflops"] * 1e9,
        probe["copy_gbps"] * 1e9,
    )
    bounds = {"launches": launches * latency_s, "bandwidth": traffic_s, "flops": flops_s}
    which = max(bounds, key=bounds.get)
    return bounds[which], which, bounds


__all__ = ["count_launches", "profile_launches", "launch_latency_s", "step_bound", "LATENCY_CHAIN"]
