"""The cost model: predicted FLOPs, memory traffic and peak memory, as code.

Two views of memory, both in bytes:

* ``lecture_bytes``: the lecture's idealised table, the one array that defines
  each approach: the Jacobian ∂h/∂θ of one example [k, n·k] for ``naive``, the
  batch's Jacobians [B, k, n·k] for ``naive_batched``, the gradient [n, k] for
  ``structured``.  At n = k = 1000, float32: 4 GB, 384 GB at B = 96, and 4 MB.
* ``peak_bytes``: this implementation's full peak above the inputs: every
  temporary :mod:`softmax_core.model.softmax` holds at its worst moment, the returned
  gradient included.  Measurement (:mod:`softmax_core.measure.engine`) must match it.

FLOPs count multiply and add separately (a GEMM [a, b] @ [b, c] is 2abc) and
count exp, max and division as one each.  ``dispatches`` counts the array operations a call
issues from Python, each paying the interpreter's and the library's fixed cost (a kernel
launch on a GPU): a dozen for a structured gradient, a dozen per example for the naive one's
loop, a dozen per step for an epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError, whole

METHODS = ("structured", "naive", "naive_batched")


@dataclass(frozen=True)
class Cost:
    """Predicted cost of one call."""

    flops: float
    traffic_bytes: float  # bytes read + written in main memory, roughly
    peak_bytes: float  # this implementation's peak working memory
    lecture_bytes: float  # the lecture's idealised memory
    dispatches: float = 0.0  # array operations issued from Python


#: Array operations of one call of each gradient kernel (the naive one's per example, plus the
#: sum and the reshape around its loop), and of an SGD step's update.
GRADIENT_DISPATCHES = {"structured": 12, "naive_batched": 14}
NAIVE_EXAMPLE_DISPATCHES, UPDATE_DISPATCHES = 13, 2


def itemsize(dtype) -> int:
    """Bytes per element of a float dtype given by name or NumPy dtype."""
    try:
        return np.dtype(str(dtype).rsplit(".", 1)[-1]).itemsize
    except TypeError:
        raise InputError(f"unknown dtype {dtype!r}: use float32 or float64") from None


def _check(B: int, n: int, k: int) -> None:
    for name, v in (("B", B), ("n", n), ("k", k)):
        whole(v, name, rule="a positive integer")


def _softmax_peak(B: int, k: int) -> int:
    # logits, shifted, exp and the result live together, plus two row vectors
    return 4 * B * k + 2 * B


def gradient_cost(method: str, B: int, n: int, k: int, dtype="float32") -> Cost:
    """Cost of one gradient of the mean loss over a batch: X [B, n], theta [n, k].

    ``method`` is ``structured``, ``naive`` or ``naive_batched``.
    """
    _check(B, n, k)
    s = itemsize(dtype)
    label_bytes = 8 * k + B * k  # arange(k) int64 and the bool comparison before astype
    if method == "structured":
        flops = 4 * B * n * k + 6 * B * k + n * k
        traffic = s * (2 * B * n + 3 * n * k + 6 * B * k)
        # softmax; then Z, I_y and R=Z-I_y; then Z, R and XᵀR; then XᵀR and XᵀR/B
        peak = max(
            s * _softmax_peak(B, k),
            s * 3 * B * k + label_bytes,
            s * (2 * B * k + n * k),
            s * 2 * n * k,
        )
        lecture = s * n * k
    elif method == "naive":
        per_example = 3 * k * k * n + 3 * n * k + 6 * k
        flops = B * per_example + n * k
        traffic = s * B * (2 * k * k * n + n * k + 2 * n * k)
        # running sum g and one Jacobian, with eye(k) while it is built or the
        # product (z - e_y)ᵀ J after; then g, the product and the new sum
        peak = s * max(n * k + k * k * n + max(k * k, n * k), 3 * n * k) + s * 6 * k + 9 * k
        lecture = s * k * n * k
    elif method == "naive_batched":
        flops = B * (2 * n * k + 6 * k + k * k * n + 2 * k * k * n + n * k) + n * k
        traffic = s * (2 * B * k * k * n + B * n + 2 * B * n * k)
        # R, eye(k), the Jacobian tensor, the batched product [B, 1, n·k] and its sum
        peak = max(
            s * _softmax_peak(B, k),
            s * 3 * B * k + label_bytes,
            s * (B * k + k * k + B * k * k * n + B * n * k + n * k),
        )
        lecture = s * B * k * n * k
    else:
        raise InputError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    ops = NAIVE_EXAMPLE_DISPATCHES * B + 3 if method == "naive" else GRADIENT_DISPATCHES[method]
    return Cost(float(flops), float(traffic), float(peak), float(lecture), float(ops))


def sgd_step_cost(method: str, B: int, n: int, k: int, dtype="float32") -> Cost:
    """One SGD step θ ← θ − lr·g: the gradient plus the update (2nk FLOPs, two [n, k])."""
    g = gradient_cost(method, B, n, k, dtype)
    s = itemsize(dtype)
    return Cost(
        g.flops + 2 * n * k,
        g.traffic_bytes + s * 3 * n * k,
        max(g.peak_bytes, s * 3 * n * k) + s * n * k,
        g.lecture_bytes,
        g.dispatches + UPDATE_DISPATCHES,
    )


def epoch_cost(method: str, m: int, n: int, k: int, batch: int, dtype="float32") -> Cost:
    """One epoch of minibatch SGD over m examples: full batches plus the short last one."""
    _check(m, n, k)
    _check(batch, n, k)
    full, rest = divmod(m, batch)
    step = sgd_step_cost(method, min(batch, m), n, k, dtype)
    flops, traffic = full * step.flops, full * step.traffic_bytes
    ops = full * step.dispatches
    if rest:  # the short last batch, or the only one when batch > m
        last = sgd_step_cost(method, rest, n, k, dtype)
        flops, traffic = flops + last.flops, traffic + last.traffic_bytes
        ops += last.dispatches
    peak = _epoch_peak(method, m, n, k, batch, itemsize(dtype))
    return Cost(flops, traffic, peak, step.lecture_bytes, ops)


def _epoch_peak(method: str, m: int, n: int, k: int, batch: int, s: int) -> float:
    """sgd_epoch's working memory: its copy of θ, updated in place, plus per step either
    (structured) I_y for a chunk of whole batches and one [B, k] buffer, or (the
    Jacobian methods) the gradient kernel's own peak."""
    from .sgd import _ONE_HOT_CHUNK  # the chunk size lives with the code that uses it

    B = min(batch, m)
    theta_copy = s * n * k
    if method != "structured":
        return (
            theta_copy
            + gradient_cost(method, B, n, k, "float64" if s == 8 else "float32").peak_bytes
        )
    rows = min(m, max(1, _ONE_HOT_CHUNK // (B * k)) * B)
    labels = s * rows * k
    # while I_y is made, the bool comparison lives beside it; in a step, exp(R)
    # beside R, then R beside the [n, k] product Xᵀ R
    working = max(rows * k, s * max(2 * B * k + B, B * k + n * k))
    return theta_copy + labels + working + 8 * k


def ceiling_seconds(flops, traffic_bytes, gemm_flops_per_s, copy_bytes_per_s):
    """(seconds at the GEMM rate, seconds at the copy bandwidth): the roofline's two ceilings.
    Numbers or arrays (pandas columns) alike."""
    return flops / gemm_flops_per_s, traffic_bytes / copy_bytes_per_s


def roofline_seconds(flops, traffic_bytes, gemm_flops_per_s, copy_bytes_per_s):
    """Seconds the machine's ceilings allow: the slower of FLOPs at the GEMM rate and traffic
    at the copy bandwidth."""
    return np.maximum(*ceiling_seconds(flops, traffic_bytes, gemm_flops_per_s, copy_bytes_per_s))
