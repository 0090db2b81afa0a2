"""Softmax regression, written once against the Python array API.

Notation (the lecture's): ``X`` is a batch [B, n] of examples, ``y`` [B] integer
labels in ``0..k-1``, ``theta`` [n, k]; the hypothesis is ``h = X @ theta`` [B, k]
and the loss is softmax cross-entropy averaged over the batch.

Every function derives its namespace ``xp`` from its arguments, so the same code
runs on NumPy, CuPy, PyTorch and array-api-strict.  The public functions check
their inputs (``check=False`` skips the O(data) value checks for callers that
already did them, e.g. the SGD loop and the benchmarks); the private ``_``
kernels take ``xp`` explicitly so that a hot loop derives it once, not per op.

The gradient kernels return the batch's sum of gradients and allocate fresh
arrays (their memory is what :mod:`.cost` predicts).  Training with them (SGD epochs, the
training loop) is :mod:`.sgd`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace
from array_api_compat import device as device_of

from ..errors import InputError, InputTypeError, whole

Gradient = Callable[..., Any]


# --------------------------------------------------------------------------- checks


def _check_float(xp, name: str, a) -> None:
    # float16 (and bfloat16 etc.) would run but lose the math's precision
    if a.dtype not in (xp.float32, xp.float64):
        raise InputTypeError(
            f"{name} must be a float32 or float64 array, got dtype {a.dtype}; "
            "fix: cast it, e.g. X.astype('float32')"
        )


def _check_finite(xp, name: str, a) -> None:
    if not bool(xp.all(xp.isfinite(a))):
        raise InputError(f"{name} contains NaN or infinite values; fix: clean or rescale the data")


def _check_labels(xp, y, k: int, check: bool) -> None:
    if y.ndim != 1:
        raise InputError(f"y must be a 1-D array of labels, got shape {tuple(y.shape)}")
    if not xp.isdtype(y.dtype, "integral"):
        raise InputTypeError(
            f"y must hold integer class labels, got dtype {y.dtype}; fix: y.astype('int64')"
        )
    if check and y.shape[0] > 0:
        lo, hi = int(xp.min(y)), int(xp.max(y))
        if lo < 0 or hi >= k:
            raise InputError(f"labels must lie in 0..{k - 1} for k={k} classes, found {lo}..{hi}")


def _check_problem(X, y, theta, check: bool = True, *, finite_X: bool = True):
    """Validate a (X [B, n], y [B], theta [n, k]) triple; return its namespace.

    ``check=False`` keeps the O(1) shape and dtype checks only; ``finite_X=False``
    leaves X's values to a later, cheaper check (see :func:`sgd_epoch`).
    """
    xp = array_namespace(X, y, theta)
    if X.ndim != 2:
        raise InputError(f"X must be 2-D [B, n], got shape {tuple(X.shape)}")
    if theta.ndim != 2:
        raise InputError(f"theta must be 2-D [n, k], got shape {tuple(theta.shape)}")
    B, n = X.shape
    if theta.shape[0] != n:
        raise InputError(
            f"X is [B={B}, n={n}] but theta is {tuple(theta.shape)}: theta must be [n={n}, k]"
        )
    if y.ndim != 1 or y.shape[0] != B:
        raise InputError(f"X has {B} rows, so y must be [{B}] labels; got shape {tuple(y.shape)}")
    if B == 0:
        raise InputError("X has no rows: a batch needs at least one example")
    _check_float(xp, "X", X)
    _check_float(xp, "theta", theta)
    if X.dtype != theta.dtype:
        raise InputTypeError(
            f"X is {X.dtype} but theta is {theta.dtype}; fix: use one float dtype for both"
        )
    _check_labels(xp, y, theta.shape[1], check)
    if check:
        if finite_X:
            _check_finite(xp, "X", X)
        _check_finite(xp, "theta", theta)
    return xp


# --------------------------------------------------------------------------- the math


def _softmax(xp, logits):
    shifted = logits - xp.max(logits, axis=-1, keepdims=True)
    e = xp.exp(shifted)
    return e / xp.sum(e, axis=-1, keepdims=True)


def softmax(logits):
    """Row-wise softmax, stable for any finite logits.

    [B, k] -> [B, k].  The row maximum is subtracted first, so logits of
    +-1e4 give exact probabilities instead of inf/inf.
    """
    xp = array_namespace(logits)
    return _softmax(xp, logits)


def _classes(xp, y, k: int):
    """[k] labels 0..k-1 on y's device, made once per call or per epoch."""
    return xp.arange(k, device=device_of(y))


def _one_hot(xp, y, classes, dtype):
    """I_y: [B] int, [k] classes -> [B, k] with a 1 in each row's label column."""
    return xp.astype(y[:, None] == classes, dtype)


def one_hot(y, k: int, dtype=None):
    """Indicator matrix I_y: [B] int -> [B, k] (float64 unless ``dtype`` says).

    Every label must lie in ``0..k-1``: one outside would give an all-zero row.
    """
    k = whole(k, "k", rule="a positive number of classes")
    xp = array_namespace(y)
    _check_labels(xp, y, k, check=True)
    return _one_hot(xp, y, _classes(xp, y, k), dtype or xp.float64)


def _cross_entropy(xp, logits, y):
    m = xp.max(logits, axis=1, keepdims=True)
    lse = m[:, 0] + xp.log(xp.sum(xp.exp(logits - m), axis=1))
    picked = xp.sum(
        logits * _one_hot(xp, y, _classes(xp, y, logits.shape[1]), logits.dtype), axis=1
    )
    return xp.mean(lse - picked)


def cross_entropy(logits, y) -> float:
    """Mean softmax loss  mean_i( log sum_j exp(h_ij) - h_{i,y_i} ).

    logits [B, k], y [B] -> float.  Uses a stable log-sum-exp.
    """
    xp = array_namespace(logits, y)
    _check_logits(xp, logits, y)
    return float(_cross_entropy(xp, logits, y))


def error_rate(logits, y) -> float:
    """0/1 loss: the fraction of rows whose argmax is not the label.

    logits [B, k], y [B] -> float in [0, 1].
    """
    xp = array_namespace(logits, y)
    _check_logits(xp, logits, y)
    return float(_error_rate(xp, logits, y))


def _error_rate(xp, logits, y):
    return xp.mean(xp.astype(xp.argmax(logits, axis=1) != y, xp.float64))


def _check_logits(xp, logits, y) -> None:
    if logits.ndim != 2:
        raise InputError(f"logits must be 2-D [B, k], got shape {tuple(logits.shape)}")
    if y.ndim != 1 or y.shape[0] != logits.shape[0]:
        raise InputError(
            f"y must be [B={logits.shape[0]}] to match logits, got shape {tuple(y.shape)}"
        )
    _check_labels(xp, y, logits.shape[1], check=True)


def _grad_structured_sum(xp, X, y, theta, classes):
    """Σ_i x_i (z_i − e_{y_i})ᵀ over the batch: the structured gradient times B."""
    Z = _softmax(xp, X @ theta)  # [B, n] @ [n, k] -> [B, k]
    R = Z - _one_hot(xp, y, classes, X.dtype)  # [B, k]
    return X.T @ R  # [n, B] @ [B, k] -> [n, k]


def grad_structured(X, y, theta, *, check: bool = True):
    """Gradient of the mean loss, the structured way: Xᵀ(softmax(Xθ) − I_y) / B.

    X [B, n], y [B], theta [n, k] -> [n, k].  O(Bnk) time and O(Bk + nk)
    memory: nothing of size k² or B·k·n·k is ever formed.
    """
    xp = _check_problem(X, y, theta, check)
    return _grad_structured_sum(xp, X, y, theta, _classes(xp, y, theta.shape[1])) / X.shape[0]


def _jacobian(xp, x, k: int):
    eye = xp.eye(k, dtype=x.dtype, device=device_of(x))
    # J[i, j*k + l] = x_j * δ_il  (θ flattened row-major)
    return xp.reshape(eye[:, None, :] * x[None, :, None], (k, x.shape[0] * k))


def jacobian_h_theta(x, k: int):
    """The explicit Jacobian ∂h/∂θ of h = θᵀx, with θ flattened row-major.

    x [n], k -> [k, n·k]: O(k²n) memory, almost all of it zeros.
    """
    xp = array_namespace(x)
    if x.ndim != 1:
        raise InputError(f"x must be one example [n], got shape {tuple(x.shape)}")
    return _jacobian(xp, x, k)


def _example_grad_naive(xp, x, label, theta, classes):
    z = _softmax(xp, x @ theta)  # [n] @ [n, k] -> [k]
    r = z - xp.astype(classes == label, x.dtype)  # z - e_y  [k]
    return r @ _jacobian(xp, x, theta.shape[1])  # [k] @ [k, n·k] -> [n·k]


def _grad_naive_sum(xp, X, y, theta, classes):
    B, n = X.shape
    k = theta.shape[1]
    g = xp.zeros(n * k, dtype=X.dtype, device=device_of(X))
    for i in range(B):
        # one Jacobian alive at a time: it dies with _example_grad_naive's frame
        g = g + _example_grad_naive(xp, X[i, :], y[i], theta, classes)
    return xp.reshape(g, (n, k))


def grad_naive(X, y, theta, *, check: bool = True):
    """The lecture's Approach 1: the gradient through explicit per-example Jacobians.

    For each example, build ∂h/∂θ as a dense [k, n·k] array, multiply
    (z − e_y)ᵀ [k] by it, and average over the batch.
    X [B, n], y [B], theta [n, k] -> [n, k].  O(k²n) memory, O(B·k²n) time.
    """
    xp = _check_problem(X, y, theta, check)
    return _grad_naive_sum(xp, X, y, theta, _classes(xp, y, theta.shape[1])) / X.shape[0]


def _grad_naive_batched_sum(xp, X, y, theta, classes):
    B, n = X.shape
    k = theta.shape[1]
    R = _softmax(xp, X @ theta) - _one_hot(xp, y, classes, X.dtype)  # [B, k]
    eye = xp.eye(k, dtype=X.dtype, device=device_of(X))
    J = xp.reshape(eye[None, :, None, :] * X[:, None, :, None], (B, k, n * k))  # [B, k, n·k]
    g = xp.sum(R[:, None, :] @ J, axis=0)  # [B, 1, k] @ [B, k, n·k] -> [1, n·k]
    return xp.reshape(g, (n, k))


def grad_naive_batched(X, y, theta, *, check: bool = True):
    """Approach 1 for the whole batch at once: the Jacobian tensor [B, k, n·k].

    X [B, n], y [B], theta [n, k] -> [n, k].  O(B·k²n) memory and time: at
    n = k = 1000, B = 96 in float32 the tensor alone is 384 GB.
    """
    xp = _check_problem(X, y, theta, check)
    return _grad_naive_batched_sum(xp, X, y, theta, _classes(xp, y, theta.shape[1])) / X.shape[0]


GRADIENTS: dict[str, Gradient] = {
    "structured": grad_structured,
    "naive": grad_naive,
    "naive_batched": grad_naive_batched,
}
# the kernels return the batch's *sum* of gradients: SGD scales it once, by lr/B
_KERNELS = {
    grad_structured: _grad_structured_sum,
    grad_naive: _grad_naive_sum,
    grad_naive_batched: _grad_naive_batched_sum,
}


def get_gradient(name: str) -> Gradient:
    """The gradient function called ``name`` (structured, naive, naive_batched)."""
    try:
        return GRADIENTS[name]
    except KeyError:
        raise InputError(f"unknown gradient {name!r}: use one of {', '.join(GRADIENTS)}") from None
