"""The yardstick: a plain, hand-written NumPy SGD epoch, and the overhead check.

:func:`numpy_epoch` is the lecture's loop written directly in NumPy, with no
array-API layer, no checks and in-place updates where NumPy allows them.  It
serves twice: as the oracle that :func:`softmax_core.model.sgd_epoch` must
match, and as the baseline for the abstraction's cost (:func:`epoch_overhead`):
the array-API epoch must stay within 10% of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .model import sgd_epoch


def numpy_epoch(X: np.ndarray, y: np.ndarray, theta: np.ndarray, lr: float, batch: int) -> np.ndarray:
    """One SGD epoch in plain NumPy: X [m, n], y [m], theta [n, k] -> new theta [n, k]."""
    for i in range(0, X.shape[0], batch):
        Xb, yb = X[i:i + batch], y[i:i + batch]
        logits = Xb @ theta
        Z = np.exp(logits - logits.max(axis=1, keepdims=True))
        Z /= Z.sum(axis=1, keepdims=True)
        Z[np.arange(yb.shape[0]), yb] -= 1
        theta = theta - lr / yb.shape[0] * (Xb.T @ Z)
    return theta


@dataclass(frozen=True)
class OverheadResult:
    """Median seconds of an epoch both ways, and the relative overhead."""

    numpy_s: float
    softmax_core_s: float
    rounds: int

    @property
    def overhead(self) -> float:
        """(softmax_core − numpy) / numpy: 0.05 means 5% slower."""
        return self.softmax_core_s / self.numpy_s - 1


def epoch_overhead(X: np.ndarray, y: np.ndarray, *, lr: float = 0.2, batch: int = 100,
                   rounds: int = 15) -> OverheadResult:
    """Time :func:`sgd_epoch` against :func:`numpy_epoch` on the same NumPy data.

    The two run alternately, ``rounds`` times each, so that drifts of a shared
    machine hit both alike; the medians are compared.  ``sgd_epoch`` runs
    with its input checks on, as a user calls it.
    """
    if not isinstance(X, np.ndarray) or not isinstance(y, np.ndarray):
        raise TypeError("epoch_overhead compares NumPy code: pass NumPy arrays")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    theta = np.zeros((X.shape[1], int(y.max()) + 1), dtype=X.dtype)
    runs = {"numpy": lambda: numpy_epoch(X, y, theta, lr, batch),
            "softmax_core": lambda: sgd_epoch(X, y, theta, lr, batch)}
    times = {name: [] for name in runs}
    for name, fn in runs.items():  # warm-up
        fn()
    for _ in range(rounds):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return OverheadResult(float(np.median(times["numpy"])), float(np.median(times["softmax_core"])), rounds)
