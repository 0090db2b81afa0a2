"""Side by side: softmax-bench against plain PyTorch doing the same arithmetic.

Workloads: an epoch of the MNIST recipe (60 000 x 784, k = 10, batch 100, lr 0.2,
θ = 0: 600 SGD steps) and one structured gradient at B = 1024, n = k = 1000.
Variants: ``softmax-bench`` on the device's library (NumPy, CuPy),
``softmax-bench-torch`` (the same code on torch), ``pytorch`` (hand-written:
``torch.softmax``, ``addmm_``; the yardstick) and ``pytorch-autograd``
(``F.cross_entropy``, ``torch.autograd.grad``).  Every time comes from the
measuring loop (:func:`measure_side_by_side`) with each library's own Backend
timer (CUDA events on a GPU): variants of one library alternate round by round,
so their ratio to ``pytorch`` has a per-round CI; across libraries it is a ratio
of medians.  Results are compared too (``max_rel_diff``).

Operations per step and the bound they set: :mod:`.workloads` and :mod:`.launches`.
"""

from __future__ import annotations

import functools
import math
import os
import time

import numpy as np

from ..backends import DEFAULT_BACKEND, Backend, BackendError, get_backend
from ..data import make_synthetic
from ..errors import InputError
from ..measure.alternating import measure_side_by_side
from ..measure.engine import Measurement, probe_machine, time_once
from ..measure.environment import blas_summary
from ..model.sgd import sgd_epoch
from ..model.softmax import grad_structured
from .launches import launch_latency_s, profile_launches, step_bound
from .plain import lecture_epoch, numpy_epoch, numpy_grad
from .sidebyside_output import OWN_FILES, markdown, write
from .workloads import GRADIENT, MNIST_EPOCH, Workload

VARIANTS = (
    "softmax-bench",
    "numpy",
    "numpy-lecture",
    "softmax-bench-torch",
    "pytorch",
    "pytorch-autograd",
)
#: Each library's plain yardstick: the ratios of a library's variants are taken against it,
#: round by round.
BASELINES = {"numpy": "numpy", "torch": "pytorch"}
#: Seconds of measuring: the MNIST epoch and the lecture's gradient; the small workloads.
TIME_BUDGET_S, QUICK_TIME_BUDGET_S = 120.0, 10.0
#: The least calls the loop makes of a variant (cold, two of warm-up, two rounds); results
#: agree when the largest difference is within AGREE_REL of the largest value.
MIN_CALLS, AGREE_REL = 5, 2e-3


# --------------------------------------------------------------------------- the variants


def _inputs(backend: Backend, w: Workload, X, y) -> tuple:
    return (
        backend.asarray(X, "float32", copy=True),
        backend.asarray(y, copy=True),
        backend.asarray(w.theta0(), "float32", copy=True),
    )


def _softmax_bench_call(backend: Backend, w: Workload, X, y):
    args = _inputs(backend, w, X, y)
    if w.lr is None:
        return functools.partial(grad_structured, check=False), args
    return functools.partial(sgd_epoch, lr=w.lr, batch=w.batch, check=False), args


def _pytorch_calls(backend: Backend, w: Workload, X, y) -> dict:
    """The plain PyTorch yardsticks: hand-written and autograd, on ``backend``'s device."""
    import torch
    import torch.nn.functional as F

    def epoch(X, y, theta, lr, batch):
        I = F.one_hot(y, theta.shape[1]).to(X.dtype)
        theta = theta.clone()
        for i in range(0, X.shape[0], batch):
            Xb = X[i : i + batch]
            Z = torch.softmax(Xb @ theta, dim=1)
            Z -= I[i : i + batch]
            theta.addmm_(Xb.T, Z, alpha=-lr / Xb.shape[0])
        return theta

    def autograd_epoch(X, y, theta, lr, batch):
        theta = theta.clone().requires_grad_(True)
        for i in range(0, X.shape[0], batch):
            loss = F.cross_entropy(X[i : i + batch] @ theta, y[i : i + batch])
            (g,) = torch.autograd.grad(loss, theta)
            with torch.no_grad():
                theta -= lr * g
        return theta.detach()

    def grad(X, y, theta):
        Z = torch.softmax(X @ theta, dim=1)
        Z -= F.one_hot(y, theta.shape[1]).to(X.dtype)
        return (X.T @ Z).div_(X.shape[0])

    def autograd_grad(X, y, theta):
        theta = theta.detach().requires_grad_(True)
        return torch.autograd.grad(F.cross_entropy(X @ theta, y), theta)[0]

    args = _inputs(backend, w, X, y)
    if w.lr is None:
        return {"pytorch": (grad, args), "pytorch-autograd": (autograd_grad, args)}
    return {
        "pytorch": (functools.partial(epoch, lr=w.lr, batch=w.batch), args),
        "pytorch-autograd": (functools.partial(autograd_epoch, lr=w.lr, batch=w.batch), args),
    }


def _numpy_calls(backend: Backend, w: Workload, X, y) -> dict:
    """The plain NumPy yardsticks (:mod:`softmax_core.baseline.plain`): the tuned loop and
    the lecture's, or the gradient written out; on the CPU only."""
    args = _inputs(backend, w, X, y)
    if w.lr is None:
        return {"numpy": (numpy_grad, args)}
    return {
        "numpy": (functools.partial(numpy_epoch, lr=w.lr, batch=w.batch), args),
        "numpy-lecture": (functools.partial(lecture_epoch, lr=w.lr, batch=w.batch), args),
    }


# --------------------------------------------------------------------------- the comparison


def _prefix(args: tuple, rows: int) -> tuple:  # an epoch's (X, y, theta), its first rows (views)
    return (args[0][:rows, :], args[1][:rows], *args[2:])


def run_sidebyside(
    device: str | None = None,
    *,
    workloads=None,
    time_budget_s: float = 120.0,
    log=None,
    on_workload=None,
) -> dict:
    """Measure every variant of every workload; return the JSON-able result.

    ``workloads``: ``[(Workload, (X, y) or None), ...]`` (None: synthetic data of its
    shape); default the MNIST epoch on synthetic data and the gradient.  Variants
    that cannot run (torch missing) are kept with ``status: skipped`` and why.
    ``on_workload(result)`` is called after each workload with the result so far.
    """
    if not (isinstance(time_budget_s, (int, float)) and 0 < time_budget_s < math.inf):
        raise InputError(f"time budget must be a positive number of seconds, got {time_budget_s!r}")
    t_start = time.monotonic()
    deadline, say = t_start + time_budget_s, log or (lambda s: None)
    workloads = (
        list(workloads) if workloads is not None else [(MNIST_EPOCH, None), (GRADIENT, None)]
    )
    kind = (device or os.environ.get("SOFTMAX_DEVICE") or "cpu").strip().lower()
    primary = get_backend(kind, DEFAULT_BACKEND.get(kind, "numpy"))  # the device's own library
    try:
        torch_b, torch_why = get_backend(primary.device_kind, "torch"), None
    except (BackendError, ValueError) as exc:
        torch_b, torch_why = None, str(exc)
    backends = {primary.label: primary, **({torch_b.label: torch_b} if torch_b else {})}
    say(f"sidebyside: {', '.join(backends)}; probing the machine and the launch latency")
    probe = probe_machine(primary)
    latency = {label: launch_latency_s(b) for label, b in backends.items()}
    out = {
        "device": primary.device_kind,
        "backends": {k: b.describe() for k, b in backends.items()},
        "threads": {
            "blas": blas_summary(),
            "torch": torch_b and __import__("torch").get_num_threads(),
        },
        "probe": probe,
        "latency_s": latency,
        "torch_skipped": torch_why,
        "workloads": [],
        "wall_s": time.monotonic() - t_start,
    }
    weight = [
        2.0 if w.lr else 1.0 for w, _ in workloads
    ]  # an epoch's Python loop: twice a gradient's time
    for i, (w, data) in enumerate(workloads):
        # past the deadline (a budget the probe used up): no share, the least rounds
        share = max(deadline - time.monotonic(), 0.0) * weight[i] / sum(weight[i:])
        say(f"sidebyside: {w.title}, {share:.0f} s")
        out["workloads"].append(
            _run_workload(w, data, primary, torch_b, torch_why, probe, latency, share)
        )
        out["wall_s"] = time.monotonic() - t_start
        if on_workload is not None:
            on_workload(out)
    return out


def _run_workload(w, data, primary, torch_b, torch_why, probe, latency, share_s) -> dict:
    t0 = time.monotonic()
    X, y = data if data is not None else make_synthetic(w.samples, w.features, w.classes, seed=0)
    groups = {primary.label: {"softmax-bench": _softmax_bench_call(primary, w, X, y)}}
    if primary.name == "numpy":
        groups[primary.label].update(_numpy_calls(primary, w, X, y))
    if torch_b is not None:
        groups[torch_b.label] = {
            "softmax-bench-torch": _softmax_bench_call(torch_b, w, X, y),
            **_pytorch_calls(torch_b, w, X, y),
        }
    backend_of = {name: b for b in (primary, torch_b) if b for name in groups.get(b.label, {})}
    calls = {name: call for g in groups.values() for name, call in g.items()}
    # each on a prefix (an epoch's first steps, a whole gradient): the result to compare (a cold
    # call: kernels compile), a warm call's time to size the rounds, the operations counted
    steps = w.profile_steps()
    results, counted, once = {}, {}, {}
    for name, (fn, args) in calls.items():
        b, pre = backend_of[name], _prefix(args, steps * w.batch) if w.lr else args
        results[name] = b.to_numpy(time_once(fn, *pre, backend=b)[0])
        once[name] = time_once(fn, *pre, backend=b)[1] * w.steps / steps
        counted[name] = profile_launches(fn, pre, b)
    ref, scale = results["softmax-bench"], float(np.max(np.abs(results["softmax-bench"]))) or 1.0
    left = max(share_s - (time.monotonic() - t0), 0.1)
    measured: dict[str, Measurement] = {}
    per_round_ratio, over, baseline_of = {}, {}, {}
    for _label, group in groups.items():
        group_share = left * len(group) / len(calls)
        # the guard: the costliest variants (never softmax-bench itself) are left out until the
        # least the loop does (a cold call, two of warm-up, two rounds) fits the time
        for name in sorted(group, key=once.get, reverse=True):
            if MIN_CALLS * sum(once[n] for n in group) <= group_share or name == "softmax-bench":
                break
            over[name] = (
                f"predicted {MIN_CALLS * once[name]:.1f} s for its least {MIN_CALLS} calls, "
                f"over the {group_share:.1f} s left to its library"
            )
            group = {n: c for n, c in group.items() if n != name}
        if not group:
            continue
        round_s = max(sum(once[n] for n in group), 1e-9)
        # the cold call and two warm-up calls of each come first, then the rounds
        rounds = int(min(21, max(2, group_share / round_s - 3)))
        sb = measure_side_by_side(
            group,
            backend=backend_of[next(iter(group))],
            min_rounds=rounds,
            max_time_s=max(0.1, 0.8 * (group_share - 3 * round_s)),
        )
        measured.update(sb.measurements)
        baseline = BASELINES.get(backend_of[next(iter(group))].name)
        if baseline in group:
            per_round_ratio.update({n: sb.ratio(n, baseline) for n in group})
        baseline_of.update(dict.fromkeys(group, baseline))
    rows = []
    for name in VARIANTS:
        if name not in measured:
            rows.append(
                {
                    "variant": name,
                    "status": "skipped",
                    "reason": over.get(name) or _why_not(name, primary, torch_why),
                }
            )
            continue
        m, b = measured[name], backend_of[name]
        n_ops, note = counted[name]
        if n_ops:
            launches, how = (
                n_ops / steps,
                "profiled" + (f", first {steps} steps" if steps < w.steps else ""),
            )
        elif name.startswith("softmax-bench"):
            launches, how = w.static_launches_per_step(), "static"
        else:
            launches, how = None, "not counted"
        bound, which, bounds = step_bound(w, launches or 0.0, latency[b.label], probe)
        per_step = m.median / w.steps
        row = {
            "variant": name,
            "library": b.label,
            "status": "ok",
            **m.row(),
            "per_step_s": per_step,
            "launches_per_step": launches,
            "launches_how": how,
            "launches_note": note,
            "latency_s": latency[b.label],
            "bound_s": bound,
            "bound_by": which,
            **{f"bound_{k}_s": v for k, v in bounds.items()},
            "over_bound": per_step / bound,
            "max_rel_diff": float(np.max(np.abs(results[name] - ref))) / scale,
        }
        row["agrees"] = row["max_rel_diff"] <= AGREE_REL
        if name in per_round_ratio:
            r = per_round_ratio[name]
            row.update(baseline=baseline_of[name], vs_baseline=r.median, vs_baseline_ci=list(r.ci))
        rows.append(row)
    c = w.cost()
    return {
        "name": w.name,
        "title": w.title,
        "kind": w.kind,
        "steps": w.steps,
        "compared_steps": steps,
        "flops": c.flops,
        "traffic_bytes": c.traffic_bytes,
        "static_launches_per_step": w.static_launches_per_step(),
        "synthetic": data is None,
        "variants": rows,
        "wall_s": time.monotonic() - t0,
    }


def _why_not(name: str, primary: Backend, torch_why: str | None) -> str:
    if name.startswith("numpy") and primary.name != "numpy":
        return "plain NumPy runs on the CPU: measured beside softmax-bench on NumPy only"
    if name == "numpy-lecture":
        return "the lecture's loop is an epoch"
    return torch_why or "not available on this device"


__all__ = [
    "Workload",
    "MNIST_EPOCH",
    "GRADIENT",
    "VARIANTS",
    "run_sidebyside",
    "profile_launches",
    "launch_latency_s",
    "step_bound",
    "markdown",
    "write",
    "OWN_FILES",
]
