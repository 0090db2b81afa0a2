"""Training softmax regression: minibatch SGD epochs and the training loop, on any array API
library, with the gradients of :mod:`.softmax`.

:func:`sgd_epoch`'s structured path updates one copy of theta in place, step by step, with
the standard's in-place operators and I_y made per chunk of batches; its only
library-specific line is the choice of NumPy's ufunc reductions
(:func:`_row_reductions`).  Every step *returns* theta and the loop carries the
returned array on: on a mutable library (NumPy, CuPy, torch) it is the very
array updated in place, while on an array type without in-place operators
(a lazy Dask array: Python turns ``theta -= G`` into ``theta = theta - G``)
it is the new array, which a step that returned nothing would have dropped.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_array_api_strict_namespace, is_numpy_namespace
from array_api_compat import device as device_of

from ..errors import InputError, InputTypeError, whole
from .softmax import (
    _KERNELS,
    Gradient,
    _check_finite,
    _check_problem,
    _classes,
    _cross_entropy,
    _error_rate,
    _grad_structured_sum,
    _one_hot,
    grad_structured,
)


def _check_hyper(lr: float, batch: int) -> tuple[float, int]:
    """Validate lr and batch; return them as a Python float and int.

    NumPy scalars pass the check but must not reach the arithmetic with theta:
    np.float64(lr) or lr / np.int64(B) times a float32 array is float64 (NEP 50).
    """
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)):
        raise InputTypeError(f"batch must be an integer, got {batch!r}")
    if batch <= 0:
        raise InputError(f"batch must be a positive number of examples, got {batch}")
    if (
        isinstance(lr, bool)
        or not isinstance(lr, (int, float, np.integer, np.floating))
        or not math.isfinite(lr)
        or lr <= 0
    ):
        raise InputError(f"lr must be a positive finite number, got {lr!r}")
    return float(lr), int(batch)


def _epoch_order(xp, X, y, seed: int | None):
    if seed is None:
        return X, y
    perm = np.random.default_rng(seed).permutation(X.shape[0])
    idx = xp.asarray(perm, device=device_of(X))
    return xp.take(X, idx, axis=0), xp.take(y, idx, axis=0)


def _sgd_step_structured(xp, X, I, theta, scale: float, row_max, row_sum):
    """θ −= scale · Xᵀ(softmax(Xθ) − I_y), in place where theta allows; returns theta.

    X [B, n], I [B, k] the batch's I_y, theta [n, k]; ``row_max``/``row_sum``
    are :func:`_row_reductions`.  The same math as :func:`_grad_structured_sum`
    with one [B, k] buffer reused in place: the logits are shifted,
    exponentiated, normalised, reduced by I_y and scaled by lr/B (on [B, k]
    rather than on the [n, k] gradient) before the one GEMM.  The caller must
    use the returned theta: an array without in-place operators (Dask) gets a
    new one.
    """
    R = X @ theta  # [B, n] @ [n, k] -> [B, k]
    R -= row_max(R, axis=1, keepdims=True)
    R = xp.exp(R)  # the standard has no out=
    R /= row_sum(R, axis=1, keepdims=True)
    R -= I
    R *= scale
    theta -= X.T @ R  # [n, B] @ [B, k] -> [n, k]
    return theta


def _row_reductions(xp):
    """``(max, sum)`` for the SGD loop: ``xp.max`` and ``xp.sum``, except on NumPy.

    NumPy's ``np.max``/``np.sum`` are Python wrappers around the ufunc
    reductions; at MNIST's batch 100 their few microseconds per call are ~5% of
    an epoch.  The ufuncs' ``reduce`` takes the same arguments and gives the
    same result, without the wrapper.
    """
    if is_numpy_namespace(xp):
        return np.maximum.reduce, np.add.reduce
    return xp.max, xp.sum


# I_y is made for many batches at once (one comparison per chunk, not per batch),
# in chunks of whole batches of at most this many elements (256 KiB in float32),
# or of one batch where a batch is larger: at MNIST's k = 10, B = 100 a chunk is
# 65 batches, and a large B·k keeps the working memory of one batch at a time.
_ONE_HOT_CHUNK = 1 << 16


def _structured_epoch(xp, X, y, theta, lr: float, batch: int, classes):
    m, k = X.shape[0], theta.shape[1]
    row_max, row_sum = _row_reductions(xp)
    rows = max(1, _ONE_HOT_CHUNK // (batch * k)) * batch  # whole batches per chunk
    for c0 in range(0, m, rows):
        c1 = min(c0 + rows, m)
        I = _one_hot(xp, y[c0:c1], classes, X.dtype)  # [c1 - c0, k]
        for start in range(c0, c1, batch):
            stop = min(start + batch, c1)
            theta = _sgd_step_structured(
                xp,
                X[start:stop, :],
                I[start - c0 : stop - c0, :],
                theta,
                lr / (stop - start),
                row_max,
                row_sum,
            )
        del I  # before the next chunk's I_y is made
    return theta


def _quiet_numpy(xp):
    """Silence NumPy's overflow/invalid warnings where NumPy does the math.

    A diverging run overflows to inf and NaN; :func:`_check_trained` reports it
    as one ValueError, so the RuntimeWarnings before it would only be noise.
    """
    if is_numpy_namespace(xp) or is_array_api_strict_namespace(xp):
        return np.errstate(over="ignore", invalid="ignore", divide="ignore")
    return contextlib.nullcontext()


def sgd_epoch(
    X,
    y,
    theta,
    lr: float,
    batch: int,
    grad: Gradient = grad_structured,
    *,
    seed: int | None = None,
    check: bool = True,
):
    """One epoch of minibatch SGD: θ ← θ − lr · ∇θ mean-loss(batch), batch by batch.

    X [m, n], y [m], theta [n, k] -> new theta [n, k] (the input is not modified:
    the epoch updates one copy of it in place).
    Minibatches are taken in order unless ``seed`` is given (then a fixed
    permutation).  The last, shorter batch is used too, averaged over its own
    size.  ``grad`` is one of :data:`GRADIENTS`' functions.  ``lr`` and
    ``batch`` may be NumPy scalars; theta keeps its dtype.
    """
    lr, batch = _check_hyper(lr, batch)
    # X is checked for NaN/inf only if theta comes out non-finite: a full pass
    # over X would cost a fifth of a MNIST epoch, and any NaN/inf in X reaches theta.
    xp = _check_problem(X, y, theta, check, finite_X=False)
    kernel = _KERNELS.get(grad)
    if kernel is None:
        raise InputTypeError(
            f"grad must be one of {', '.join(f.__name__ for f in _KERNELS)}, got {grad!r}"
        )
    X_epoch, y_epoch = _epoch_order(xp, X, y, seed)
    classes = _classes(xp, y, theta.shape[1])
    theta = xp.asarray(theta, copy=True)  # the one copy this epoch updates in place
    m = X.shape[0]
    with _quiet_numpy(xp):
        if kernel is _grad_structured_sum:
            theta = _structured_epoch(xp, X_epoch, y_epoch, theta, lr, batch, classes)
        else:
            for start in range(0, m, batch):
                stop = min(start + batch, m)
                # the kernel's sum is scaled once, by lr/B, instead of /B then *lr
                G = kernel(xp, X_epoch[start:stop, :], y_epoch[start:stop], theta, classes)
                G *= lr / (stop - start)
                theta -= G
    if check:
        _check_trained(xp, X, theta, lr)
    return theta


def _check_trained(xp, X, theta, lr: float) -> None:
    """After training: a non-finite theta means bad X values or divergence."""
    if not bool(xp.all(xp.isfinite(theta))):
        _check_finite(xp, "X", X)
        raise InputError(
            f"training diverged: theta became NaN or infinite; fix: lower lr (now {lr})"
        )


def train(
    X_train,
    y_train,
    X_test,
    y_test,
    theta=None,
    *,
    lr: float = 0.2,
    batch: int = 100,
    epochs: int = 10,
    grad: Gradient = grad_structured,
    seed: int | None = None,
    timer: Callable[..., tuple[Any, float]] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    run_epoch: Callable[..., Any] | None = None,
):
    """Train softmax regression with :func:`sgd_epoch`, recording each epoch.

    X_train [m, n], y_train [m], X_test [t, n], y_test [t]; theta [n, k]
    defaults to zeros with k = max label + 1.  Returns ``(theta, history)``
    where history is a list of dicts with the keys ``epoch, train_loss,
    train_err, test_loss, test_err, seconds`` (seconds: the SGD epoch alone).
    ``timer(fn, *args) -> (result, seconds)`` times each epoch: pass
    :func:`softmax_core.measure.engine.time_once` bound to the device's backend, so
    that asynchronous devices are synchronized and timed with their own
    clock (default: the host clock, right for synchronous libraries only).
    ``on_epoch`` is called with each row as it is made.  ``run_epoch`` is the epoch to run (default
    :func:`sgd_epoch`): a backend's own, where a lazy library must compute θ as it goes (Dask),
    so that the seconds are the epoch's and the evaluation after it does not redo it.
    """
    whole(epochs, "epochs")
    xp = array_namespace(X_train, y_train, X_test, y_test)
    if theta is None:
        if X_train.ndim != 2:
            raise InputError(f"X_train must be 2-D [m, n], got shape {tuple(X_train.shape)}")
        # wrong label dtypes or values, and empty data, are reported by _check_problem below
        k = max(
            [int(xp.max(a)) for a in (y_train, y_test) if a.ndim == 1 and a.shape[0] > 0], default=1
        )
        k = max(k, 1) + 1
        theta = xp.zeros((X_train.shape[1], k), dtype=X_train.dtype, device=device_of(X_train))
    lr, batch = _check_hyper(lr, batch)
    _check_problem(X_train, y_train, theta)
    _check_problem(X_test, y_test, theta)
    timer = timer or _host_timer
    history = []
    for epoch in range(1, epochs + 1):
        theta, seconds = timer(
            run_epoch or sgd_epoch,
            X_train,
            y_train,
            theta,
            lr,
            batch,
            grad,
            seed=None if seed is None else seed + epoch,
            check=False,
        )
        _check_trained(xp, X_train, theta, lr)
        with _quiet_numpy(xp):  # a huge theta may overflow the loss: reported below
            row = {
                "epoch": epoch,
                **_evaluate(xp, X_train, y_train, theta, "train"),
                **_evaluate(xp, X_test, y_test, theta, "test"),
                "seconds": seconds,
            }
        if not math.isfinite(row["train_loss"]):
            raise InputError(
                f"training diverged: the training loss became {row['train_loss']} "
                f"(theta is finite but huge); fix: lower lr (now {lr})"
            )
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
    return theta, history


def _host_timer(fn, *args, **kwargs):
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0


def _evaluate(xp, X, y, theta, prefix: str) -> dict:
    logits = X @ theta
    return {
        f"{prefix}_loss": float(_cross_entropy(xp, logits, y)),
        f"{prefix}_err": float(_error_rate(xp, logits, y)),
    }
