"""The yardsticks: plain, hand-written NumPy SGD epochs, and the overhead check.

Two loops written directly in NumPy, with no array-API layer and no checks,
computing exactly what :func:`softmax_core.model.sgd.sgd_epoch` computes (stable
softmax, the short last batch averaged over its own size, the caller's theta
left alone), so both serve as oracles for it and as baselines for the
abstraction's cost (:func:`epoch_overhead`):

* :func:`lecture_epoch`: hw0's plain loop, the lecture's code with in-place
  updates (``/=``, ``-= 1`` at the labels, ``theta -=``);
* :func:`numpy_epoch`: a tuned loop, with buffers preallocated once per epoch
  and every operation writing into them (``out=``).

The array-API epoch must stay within 5% of the tuned loop.  ``softmax-bench sidebyside``
measures these loops beside softmax-bench (and plain PyTorch); :func:`epoch_overhead` is
the epoch's three-way comparison on its own, for the asv suite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends import get_backend
from ..errors import InputError, InputTypeError
from ..measure.alternating import SideBySide, measure_side_by_side
from ..measure.engine import Measurement
from ..model.sgd import sgd_epoch


def lecture_epoch(
    X: np.ndarray, y: np.ndarray, theta: np.ndarray, lr: float, batch: int
) -> np.ndarray:
    """hw0's plain NumPy loop: X [m, n], y [m], theta [n, k] -> new theta [n, k].

    The lecture's code (softmax, minus 1 at the labels, Xᵀ times that) with
    in-place updates, on a copy of theta made once.
    """
    theta = theta.copy()
    for i in range(0, X.shape[0], batch):
        Xb, yb = X[i : i + batch], y[i : i + batch]
        logits = Xb @ theta
        Z = np.exp(logits - logits.max(axis=1, keepdims=True))
        Z /= Z.sum(axis=1, keepdims=True)
        Z[np.arange(yb.shape[0]), yb] -= 1
        theta -= lr / yb.shape[0] * (Xb.T @ Z)
    return theta


def numpy_epoch(
    X: np.ndarray, y: np.ndarray, theta: np.ndarray, lr: float, batch: int
) -> np.ndarray:
    """A tuned NumPy loop with preallocated buffers: X [m, n], y [m], theta [n, k] -> new
    theta [n, k].

    The [B, k] logits, the [B, 1] row statistics and the [n, k] gradient are
    allocated once per epoch; every step writes into them (``out=``, in-place
    operators, ufunc ``reduce`` rather than the slower ``np.max``/``np.sum``
    wrappers) and scales the [B, k] residual by lr/B rather than the [n, k]
    gradient.  theta is updated in place on a copy made once.
    """
    theta = theta.copy()
    m, (n, k) = X.shape[0], theta.shape
    rows_max = min(batch, m)
    H = np.empty((rows_max, k), dtype=theta.dtype)
    stat = np.empty((rows_max, 1), dtype=theta.dtype)
    G = np.empty((n, k), dtype=theta.dtype)
    rows = np.arange(rows_max)
    for i in range(0, m, batch):
        Xb, yb = X[i : i + batch], y[i : i + batch]
        b = yb.shape[0]
        h, s = (H, stat) if b == rows_max else (H[:b], stat[:b])
        np.matmul(Xb, theta, out=h)
        np.maximum.reduce(h, axis=1, keepdims=True, out=s)
        h -= s
        np.exp(h, out=h)
        np.add.reduce(h, axis=1, keepdims=True, out=s)
        h /= s
        h[rows[:b], yb] -= 1
        h *= lr / b
        np.matmul(Xb.T, h, out=G)
        theta -= G
    return theta


def numpy_grad(X: np.ndarray, y: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """The structured gradient in plain NumPy: X [B, n], y [B], theta [n, k] -> [n, k],
    Xᵀ(softmax(Xθ) − I_y) / B."""
    logits = X @ theta
    Z = np.exp(logits - logits.max(axis=1, keepdims=True))
    Z /= Z.sum(axis=1, keepdims=True)
    Z[np.arange(y.shape[0]), y] -= 1
    return X.T @ Z / y.shape[0]


@dataclass(frozen=True)
class OverheadResult:
    """An epoch three ways, measured side by side."""

    side_by_side: SideBySide

    def ratio(self, baseline: str = "numpy") -> Measurement:
        """``sgd_epoch`` / ``baseline`` round by round: median, CI and spread."""
        return self.side_by_side.ratio("softmax_core", baseline)


def epoch_overhead(
    X: np.ndarray,
    y: np.ndarray,
    *,
    lr: float = 0.2,
    batch: int = 100,
    rounds: int = 31,
    max_time_s: float = 60.0,
) -> OverheadResult:
    """Measure :func:`sgd_epoch` against :func:`numpy_epoch` and :func:`lecture_epoch`.

    The three run in alternating rounds through the measuring loop
    (:func:`softmax_core.measure.alternating.measure_side_by_side`: cold call and warm-up
    first, at least ``rounds`` rounds, more until every median has converged or
    ``max_time_s`` is spent), so that drifts of a shared machine hit all alike;
    ratios are taken within each round.  ``sgd_epoch`` runs with its input
    checks on, as a user calls it.
    """
    if not isinstance(X, np.ndarray) or not isinstance(y, np.ndarray):
        raise InputTypeError("epoch_overhead compares NumPy code: pass NumPy arrays")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise InputError(f"rounds must be a positive integer, got {rounds!r}")
    theta = np.zeros((X.shape[1], int(y.max()) + 1), dtype=X.dtype)
    calls = {
        "softmax_core": (sgd_epoch, (X, y, theta, lr, batch)),
        "numpy": (numpy_epoch, (X, y, theta, lr, batch)),
        "lecture": (lecture_epoch, (X, y, theta, lr, batch)),
    }
    cpu = get_backend("cpu", "numpy")
    return OverheadResult(
        measure_side_by_side(calls, backend=cpu, min_rounds=rounds, max_time_s=max_time_s)
    )
