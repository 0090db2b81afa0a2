"""The math of softmax_core.model.softmax, on every backend of the ``backend`` fixture.

Data are made in NumPy, moved with ``backend.asarray`` and compared in NumPy
after ``backend.to_numpy``.  Reference values come from independent NumPy code
written here (finite differences, a hand-written SGD loop), never from the
functions under test.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from softmax_core import (
    GRADIENTS,
    cross_entropy,
    error_rate,
    get_gradient,
    grad_naive,
    grad_naive_batched,
    grad_structured,
    jacobian_h_theta,
    one_hot,
    sgd_epoch,
    softmax,
    train,
)
from softmax_core.baseline.plain import lecture_epoch, numpy_epoch

GRAD_SHAPES = [(1, 3, 2), (4, 5, 3), (7, 4, 6), (3, 1, 2)]
GRAD_NAMES = list(GRADIENTS)  # structured, naive, naive_batched


def make_problem(rng, B, n, k, dtype=np.float64):
    """Host data (X [B, n], y [B] int64, theta [n, k]) with O(1) logits."""
    X = rng.standard_normal((B, n)).astype(dtype)
    y = rng.integers(0, k, size=B, dtype=np.int64)
    theta = (0.5 * rng.standard_normal((n, k))).astype(dtype)
    return X, y, theta


def on(backend, X, y, theta):
    """Move a host problem to the backend, keeping each array's dtype."""
    return (
        backend.asarray(X, X.dtype.name),
        backend.asarray(y, y.dtype.name),
        backend.asarray(theta, theta.dtype.name),
    )


def np_softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def np_grad(X, y, theta):
    """Reference mean-loss gradient in plain NumPy: Xᵀ(softmax(Xθ) − I_y)/B."""
    R = np_softmax(X @ theta)
    R[np.arange(len(y)), y] -= 1
    return X.T @ R / len(y)


def rel_err(a, b) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("B,n,k", GRAD_SHAPES)
def test_gradients_match_central_finite_differences_float64(backend, rng, B, n, k):
    X, y, theta = make_problem(rng, B, n, k, np.float64)
    Xb, yb, _ = on(backend, X, y, theta)

    def loss(th: np.ndarray) -> float:
        return cross_entropy(Xb @ backend.asarray(th, "float64"), yb)

    eps = 1e-6
    fd = np.empty_like(theta)
    for j in range(n):
        for l in range(k):
            step = np.zeros_like(theta)
            step[j, l] = eps
            fd[j, l] = (loss(theta + step) - loss(theta - step)) / (2 * eps)
    assert np.max(np.abs(fd)) > 1e-3, "degenerate problem: the gradient is ~0"
    np.testing.assert_allclose(fd, np_grad(X, y, theta), rtol=1e-6, atol=1e-8)

    theta_b = backend.asarray(theta, "float64")
    for name in GRAD_NAMES:
        got = backend.to_numpy(get_gradient(name)(Xb, yb, theta_b))
        assert got.shape == (n, k), name
        np.testing.assert_allclose(
            got, fd, rtol=1e-6, atol=1e-8, err_msg=f"{name} vs finite differences"
        )


@pytest.mark.parametrize("B,n,k", GRAD_SHAPES + [(32, 20, 10)])
def test_gradient_methods_agree_in_float32(backend, rng, B, n, k):
    X, y, theta = make_problem(rng, B, n, k, np.float32)
    Xb, yb, tb = on(backend, X, y, theta)
    ref = backend.to_numpy(grad_structured(Xb, yb, tb))
    assert ref.dtype == np.float32
    # float32 structured vs a float64 NumPy reference: float32 rounding only
    assert (
        rel_err(ref.astype(np.float64), np_grad(X.astype(np.float64), y, theta.astype(np.float64)))
        < 1e-5
    )
    for fn in (grad_naive, grad_naive_batched):
        got = backend.to_numpy(fn(Xb, yb, tb))
        assert got.dtype == np.float32
        assert rel_err(got, ref) < 1e-5, fn.__name__


def test_get_gradient_returns_the_named_functions():
    assert get_gradient("structured") is grad_structured
    assert get_gradient("naive") is grad_naive
    assert get_gradient("naive_batched") is grad_naive_batched


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", GRAD_NAMES)
def test_gradient_preserves_dtype(backend, xp, rng, name, dtype):
    X, y, theta = make_problem(rng, 5, 4, 3, np.dtype(dtype))
    g = get_gradient(name)(*on(backend, X, y, theta))
    assert g.dtype == getattr(xp, dtype)
    assert tuple(g.shape) == (4, 3)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_and_sgd_epoch_preserve_dtype(backend, xp, rng, dtype):
    X, y, theta = make_problem(rng, 10, 4, 3, np.dtype(dtype))
    Xb, yb, tb = on(backend, X, y, theta)
    assert softmax(Xb @ tb).dtype == getattr(xp, dtype)
    for name in GRAD_NAMES:
        assert sgd_epoch(Xb, yb, tb, 0.1, 4, get_gradient(name)).dtype == getattr(xp, dtype), name


def test_sgd_epoch_numpy_scalar_lr_keeps_float32(backend, xp, rng):
    """lr may be a NumPy float (it passes the check); it must not promote float32 theta to float64.

    Fails until sgd_epoch converts lr with float(lr): under NumPy 2 (NEP 50)
    np.float64(0.1) * float32-array is float64, and array_api_strict rejects it.
    """
    X, y, theta = make_problem(rng, 10, 4, 3, np.float32)
    Xb, yb, tb = on(backend, X, y, theta)
    out = sgd_epoch(Xb, yb, tb, np.float64(0.1), 4)
    assert out.dtype == xp.float32
    expected = sgd_epoch(Xb, yb, tb, 0.1, 4)
    np.testing.assert_array_equal(backend.to_numpy(out), backend.to_numpy(expected))


@pytest.mark.parametrize("batch", [np.int64(4), np.int32(4)], ids=["int64", "int32"])
@pytest.mark.parametrize(
    "lr", [0.1, np.float32(0.1), np.float64(0.1)], ids=["float", "np.float32", "np.float64"]
)
def test_sgd_epoch_numpy_scalar_hyperparameters_keep_float32(backend, xp, rng, lr, batch):
    """A NumPy integer batch made lr / (stop - start) a np.float64, which promoted float32 theta."""
    X, y, theta = make_problem(rng, 10, 4, 3, np.float32)
    Xb, yb, tb = on(backend, X, y, theta)
    for name in GRAD_NAMES:
        out = sgd_epoch(Xb, yb, tb, lr, batch, get_gradient(name))
        assert out.dtype == xp.float32, name
        expected = sgd_epoch(Xb, yb, tb, float(lr), 4, get_gradient(name))
        np.testing.assert_array_equal(
            backend.to_numpy(out), backend.to_numpy(expected), err_msg=name
        )


@pytest.mark.parametrize("batch", [np.int64(8), np.int32(8)], ids=["int64", "int32"])
def test_train_with_a_numpy_integer_batch_keeps_float32(backend, xp, batch):
    """A NumPy integer batch keeps theta float32 (a float64 theta fails epoch 2's check)."""
    from softmax_core import make_synthetic

    X, y = make_synthetic(60, 5, 3, seed=4, dtype=np.float32)
    Xb, yb = backend.asarray(X, "float32"), backend.asarray(y)
    theta, history = train(Xb, yb, Xb, yb, lr=np.float64(0.5), batch=batch, epochs=3)
    assert theta.dtype == xp.float32 and len(history) == 3
    ref, _ = train(Xb, yb, Xb, yb, lr=0.5, batch=8, epochs=3)
    np.testing.assert_array_equal(backend.to_numpy(theta), backend.to_numpy(ref))


# --------------------------------------------------------------------------- softmax, loss, error


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_rows_are_distributions(backend, rng, dtype):
    logits = (3 * rng.standard_normal((6, 5))).astype(dtype)
    p = backend.to_numpy(softmax(backend.asarray(logits, dtype)))
    assert p.shape == (6, 5)
    assert np.all(p > 0) and np.all(p < 1)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6 if dtype == "float32" else 1e-12)
    np.testing.assert_allclose(
        p, np_softmax(logits.astype(np.float64)), rtol=1e-5 if dtype == "float32" else 1e-12
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_is_stable_for_huge_logits(backend, dtype):
    cases = [
        ([[1e4, -1e4, 0.0]], [[1.0, 0.0, 0.0]]),
        ([[1e4, 1e4]], [[0.5, 0.5]]),
        ([[-1e4, -1e4]], [[0.5, 0.5]]),
        ([[0.0, -1e4, 1e4, 1e4]], [[0.0, 0.0, 0.5, 0.5]]),
    ]
    for logits, expected in cases:
        p = backend.to_numpy(softmax(backend.asarray(np.array(logits), dtype)))
        assert np.all(np.isfinite(p)), logits
        np.testing.assert_array_equal(p, np.array(expected, dtype=dtype), err_msg=str(logits))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_is_exact_for_huge_logits(backend, dtype):
    logits = backend.asarray(np.array([[1e4, 0.0]]), dtype)
    assert cross_entropy(logits, backend.asarray(np.array([1]))) == 1e4
    assert cross_entropy(logits, backend.asarray(np.array([0]))) == 0.0
    both = backend.asarray(np.array([[1e4, 0.0], [-1e4, 1e4]]), dtype)
    assert cross_entropy(both, backend.asarray(np.array([1, 0]))) == 1.5e4  # mean of 1e4 and 2e4


@pytest.mark.parametrize("k", [2, 3, 10, 1000])
def test_loss_of_zero_logits_is_log_k(backend, k):
    logits = backend.asarray(np.zeros((5, k)), "float64")
    y = backend.asarray(np.arange(5) % k)
    assert math.isclose(cross_entropy(logits, y), math.log(k), rel_tol=1e-12)


def test_cross_entropy_matches_numpy_reference(backend, rng):
    logits = 2 * rng.standard_normal((8, 4))
    y = rng.integers(0, 4, 8)
    expected = float(np.mean(-np.log(np_softmax(logits)[np.arange(8), y])))
    got = cross_entropy(backend.asarray(logits, "float64"), backend.asarray(y))
    assert math.isclose(got, expected, rel_tol=1e-12)


def test_error_rate_on_a_hand_example(backend):
    logits = backend.asarray(
        np.array(
            [
                [1.0, 2.0, 0.0],  # argmax 1, label 1: right
                [3.0, 0.0, 0.0],  # argmax 0, label 0: right
                [0.0, 0.0, 5.0],  # argmax 2, label 0: wrong
                [0.0, 1.0, 0.0],
            ]
        ),  # argmax 1, label 2: wrong
        "float64",
    )
    assert error_rate(logits, backend.asarray(np.array([1, 0, 0, 2]))) == 0.5
    assert error_rate(logits, backend.asarray(np.array([1, 0, 2, 1]))) == 0.0
    assert error_rate(logits, backend.asarray(np.array([0, 1, 0, 0]))) == 1.0


def test_one_hot(backend, xp):
    y = backend.asarray(np.array([2, 0, 1, 2]))
    I = one_hot(y, 3)
    assert I.dtype == xp.float64
    np.testing.assert_array_equal(backend.to_numpy(I), np.eye(3)[[2, 0, 1, 2]])
    assert one_hot(y, 4, dtype=xp.float32).dtype == xp.float32
    np.testing.assert_array_equal(
        backend.to_numpy(one_hot(y, 4, dtype=xp.float32)), np.eye(4, dtype=np.float32)[[2, 0, 1, 2]]
    )


@pytest.mark.parametrize("labels", [[5], [0, 3], [-1, 1]])
def test_one_hot_rejects_labels_out_of_range(backend, labels):
    """A label outside 0..k-1 is refused, never a silent all-zero row."""
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2"):
        one_hot(backend.asarray(np.array(labels)), 3)


@pytest.mark.parametrize("k", [0, -1, 2.0, True])
def test_one_hot_rejects_a_bad_number_of_classes(backend, k):
    with pytest.raises(ValueError, match="k must be"):
        one_hot(backend.asarray(np.array([0, 1])), k)


# --------------------------------------------------------------------------- Jacobian


@pytest.mark.parametrize("n,k", [(3, 2), (5, 4), (1, 3)])
def test_jacobian_h_theta_shape_and_action(backend, xp, rng, n, k):
    x = rng.standard_normal(n)
    theta = rng.standard_normal((n, k))
    xb, tb = backend.asarray(x, "float64"), backend.asarray(theta, "float64")
    J = jacobian_h_theta(xb, k)
    assert tuple(J.shape) == (k, n * k)
    assert J.dtype == xp.float64
    Jn = backend.to_numpy(J)
    # J @ vec(theta) == theta.T @ x, with vec the row-major flatten
    np.testing.assert_allclose(Jn @ theta.reshape(-1), theta.T @ x, rtol=1e-12)
    np.testing.assert_allclose(
        backend.to_numpy(J @ xp.reshape(tb, (n * k,))), backend.to_numpy(tb.T @ xb), rtol=1e-12
    )
    # entry by entry: J[i, j*k + l] = x_j * delta_il
    expected = np.zeros((k, n * k))
    for i in range(k):
        for j in range(n):
            expected[i, j * k + i] = x[j]
    np.testing.assert_array_equal(Jn, expected)


def test_jacobian_h_theta_rejects_a_batch(backend):
    with pytest.raises(ValueError, match="one example"):
        jacobian_h_theta(backend.asarray(np.ones((2, 3)), "float64"), 2)


# --------------------------------------------------------------------------- SGD


def numpy_sgd_epoch(X, y, theta, lr, batch, last="own"):
    """Reference epoch in plain NumPy.  ``last``: how the short last batch is treated
    ("own": averaged over its own size; "nominal": divided by ``batch``; "drop")."""
    theta = theta.copy()
    m = len(y)
    for start in range(0, m, batch):
        Xb, yb = X[start : start + batch], y[start : start + batch]
        if len(yb) < batch and last == "drop":
            break
        R = np_softmax(Xb @ theta)
        R[np.arange(len(yb)), yb] -= 1
        denom = batch if last == "nominal" else len(yb)
        theta -= lr * (Xb.T @ R) / denom
    return theta


def test_sgd_epoch_does_not_modify_theta(backend, rng):
    X, y, theta = make_problem(rng, 10, 4, 3)
    Xb, yb, tb = on(backend, X, y, theta)
    before = backend.to_numpy(tb).copy()
    for name in GRAD_NAMES:
        new = sgd_epoch(Xb, yb, tb, 0.5, 4, get_gradient(name))
        np.testing.assert_array_equal(backend.to_numpy(tb), before, err_msg=name)
        assert np.max(np.abs(backend.to_numpy(new) - before)) > 1e-3, name


@pytest.mark.parametrize("batch", [10, 15])
def test_sgd_epoch_with_batch_at_least_m_is_one_full_batch_step(backend, rng, batch):
    X, y, theta = make_problem(rng, 10, 4, 3)
    Xb, yb, tb = on(backend, X, y, theta)
    got = backend.to_numpy(sgd_epoch(Xb, yb, tb, 0.3, batch))
    np.testing.assert_allclose(got, theta - 0.3 * np_grad(X, y, theta), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", GRAD_NAMES)
def test_sgd_epoch_uses_the_short_last_batch_averaged_over_its_size(backend, rng, name):
    # m = 10, batch = 4: batches of 4, 4 and 2
    X, y, theta = make_problem(rng, 10, 4, 3)
    got = backend.to_numpy(sgd_epoch(*on(backend, X, y, theta), 0.5, 4, get_gradient(name)))
    expected = numpy_sgd_epoch(X, y, theta, 0.5, 4, last="own")
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    # the alternatives really differ, so the check above discriminates
    for wrong in ("nominal", "drop"):
        assert np.max(np.abs(numpy_sgd_epoch(X, y, theta, 0.5, 4, last=wrong) - expected)) > 1e-4


def test_sgd_epoch_seed_gives_a_reproducible_permutation(backend, rng):
    X, y, theta = make_problem(rng, 10, 4, 3)
    Xb, yb, tb = on(backend, X, y, theta)
    in_order = backend.to_numpy(sgd_epoch(Xb, yb, tb, 0.5, 2))
    seeded = backend.to_numpy(sgd_epoch(Xb, yb, tb, 0.5, 2, seed=7))
    again = backend.to_numpy(sgd_epoch(Xb, yb, tb, 0.5, 2, seed=7))
    other = backend.to_numpy(sgd_epoch(Xb, yb, tb, 0.5, 2, seed=8))
    np.testing.assert_array_equal(seeded, again)
    assert np.max(np.abs(seeded - in_order)) > 1e-4
    assert np.max(np.abs(seeded - other)) > 1e-4
    # the permutation keeps each row with its label: a full-batch step is order-free
    full_seeded = backend.to_numpy(sgd_epoch(Xb, yb, tb, 0.5, 10, seed=7))
    np.testing.assert_allclose(
        full_seeded, theta - 0.5 * np_grad(X, y, theta), rtol=1e-10, atol=1e-12
    )


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
def test_sgd_epoch_reports_divergence(backend, rng):
    X, y, theta = make_problem(rng, 10, 4, 3, np.float32)
    X *= np.float32(1e10)  # finite data; lr * gradient overflows float32
    with pytest.raises(ValueError, match="diverged.*lower lr"):
        sgd_epoch(*on(backend, X, y, theta), 1e30, 5)


def test_divergence_is_one_error_without_runtime_warnings(backend, rng):
    """lr 1e308 overflows float32; the ValueError must be the only output (CLI: --lr 1e308)."""
    X, y, theta = make_problem(rng, 10, 4, 3, np.float32)
    Xb, yb, tb = on(backend, X, y, theta)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for name in GRAD_NAMES:
            with pytest.raises(ValueError, match="diverged.*lower lr"):
                sgd_epoch(Xb, yb, tb, 1e308, 5, get_gradient(name))
        with pytest.raises(ValueError, match="diverged.*lower lr"):
            train(Xb, yb, Xb, yb, lr=1e308, batch=5, epochs=2)
        with pytest.raises(ValueError, match="diverged.*lower lr"):
            train(Xb, yb, Xb, yb, tb, lr=1e308, batch=5, epochs=2)


def test_train_reports_an_overflowing_loss_as_divergence_without_warnings(backend, rng):
    """float64, lr 1e308: theta stays finite (~1e308) but the logits and the loss overflow."""
    X, y, theta = make_problem(rng, 10, 4, 3, np.float64)
    Xb, yb, tb = on(backend, X, y, theta)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match="diverged.*loss.*lower lr"):
            train(Xb, yb, Xb, yb, lr=1e308, batch=5, epochs=2)


def test_sgd_epoch_naive_and_structured_give_the_same_theta(backend, rng):
    X, y, theta = make_problem(rng, 10, 5, 4)
    Xb, yb, tb = on(backend, X, y, theta)
    ref = backend.to_numpy(sgd_epoch(Xb, yb, tb, 0.5, 4, grad_structured, seed=3))
    for fn in (grad_naive, grad_naive_batched):
        got = backend.to_numpy(sgd_epoch(Xb, yb, tb, 0.5, 4, fn, seed=3))
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12, err_msg=fn.__name__)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m,batch", [(10, 4), (12, 4), (10, 1), (10, 10), (10, 15), (37, 8)])
def test_sgd_epoch_matches_the_numpy_reference_loops(backend, rng, dtype, m, batch):
    """sgd_epoch against reference.lecture_epoch and reference.numpy_epoch (the tuned loop)."""
    X, y, theta = make_problem(rng, m, 6, 4, np.dtype(dtype))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-13)
    got = backend.to_numpy(sgd_epoch(*on(backend, X, y, theta), 0.5, batch))
    assert got.dtype == np.dtype(dtype)
    before = theta.copy()
    lecture = lecture_epoch(X, y, theta, 0.5, batch)
    tuned = numpy_epoch(X, y, theta, 0.5, batch)
    np.testing.assert_array_equal(theta, before)  # the oracles leave theta alone too
    assert lecture.dtype == tuned.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, lecture, **tol)
    np.testing.assert_allclose(got, tuned, **tol)
    # and both oracles are the independent loop of this file
    expected = numpy_sgd_epoch(X.astype(np.float64), y, theta.astype(np.float64), 0.5, batch)
    np.testing.assert_allclose(lecture, expected, **tol)
    np.testing.assert_allclose(tuned, expected, **tol)


def test_sgd_epoch_with_a_seed_matches_the_reference_on_the_permuted_data(backend, rng):
    X, y, theta = make_problem(rng, 23, 5, 3)
    got = backend.to_numpy(sgd_epoch(*on(backend, X, y, theta), 0.5, 4, seed=11))
    perm = np.random.default_rng(11).permutation(23)
    np.testing.assert_allclose(
        got, lecture_epoch(X[perm], y[perm], theta, 0.5, 4), rtol=1e-12, atol=1e-13
    )


def test_sgd_epoch_one_hot_chunks_give_the_same_theta(backend, rng, monkeypatch):
    """I_y is built in chunks of whole batches; tiny chunks must not change the result."""
    import softmax_core.model.sgd as model

    X, y, theta = make_problem(rng, 50, 5, 3)
    args = on(backend, X, y, theta)
    whole = backend.to_numpy(sgd_epoch(*args, 0.5, 7))
    monkeypatch.setattr(model, "_ONE_HOT_CHUNK", 1)  # one batch per chunk
    np.testing.assert_array_equal(backend.to_numpy(sgd_epoch(*args, 0.5, 7)), whole)
    monkeypatch.setattr(
        model, "_ONE_HOT_CHUNK", 3 * 7 * 3
    )  # three batches per chunk, a short last chunk
    np.testing.assert_array_equal(backend.to_numpy(sgd_epoch(*args, 0.5, 7)), whole)
    np.testing.assert_allclose(whole, lecture_epoch(X, y, theta, 0.5, 7), rtol=1e-12, atol=1e-13)


def test_train_is_repeated_sgd_epochs_and_records_history(backend, xp):
    from softmax_core import make_synthetic

    X, y = make_synthetic(200, 6, 3, seed=1, dtype=np.float64)
    Xt, yt = make_synthetic(50, 6, 3, seed=2, dtype=np.float64)
    Xb, yb, Xtb, ytb = (
        backend.asarray(X, "float64"),
        backend.asarray(y),
        backend.asarray(Xt, "float64"),
        backend.asarray(yt),
    )
    seen = []
    theta, history = train(Xb, yb, Xtb, ytb, lr=0.5, batch=32, epochs=3, on_epoch=seen.append)
    assert tuple(theta.shape) == (6, 3) and theta.dtype == xp.float64
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert seen == history
    for row in history:
        assert set(row) == {"epoch", "train_loss", "train_err", "test_loss", "test_err", "seconds"}
        assert row["seconds"] >= 0 and 0 <= row["train_err"] <= 1 and 0 <= row["test_err"] <= 1
    expected = np.zeros((6, 3))
    for _ in range(3):
        expected = numpy_sgd_epoch(X, y, expected, 0.5, 32)
    np.testing.assert_allclose(backend.to_numpy(theta), expected, rtol=1e-10, atol=1e-12)
    assert math.isclose(
        history[-1]["train_loss"],
        float(np.mean(-np.log(np_softmax(X @ expected)[np.arange(200), y]))),
        rel_tol=1e-9,
    )
    assert history[-1]["train_loss"] < history[0]["train_loss"] < math.log(3)


@pytest.mark.slow
def test_an_mnist_epoch_equals_the_reference_loops(mnist):
    """MNIST, float32, theta = 0, lr 0.2, batch 100, in order: one epoch equals the NumPy
    reference loops (10 epochs' 7.97%: tests/test_cli.py, through the command)."""
    X, y = mnist.X_train, mnist.y_train
    theta0 = np.zeros((X.shape[1], 10), dtype=np.float32)
    one = sgd_epoch(X, y, theta0, 0.2, 100)
    assert one.dtype == np.float32
    for ref in (lecture_epoch, numpy_epoch):
        np.testing.assert_allclose(
            one, ref(X, y, theta0, 0.2, 100), rtol=1e-4, atol=1e-6, err_msg=ref.__name__
        )


def test_train_with_seed_reshuffles_every_epoch_reproducibly(backend):
    from softmax_core import make_synthetic

    X, y = make_synthetic(60, 5, 3, seed=4, dtype=np.float64)
    Xb, yb = backend.asarray(X, "float64"), backend.asarray(y)
    theta0 = backend.asarray(np.zeros((5, 3)), "float64")
    t1, _ = train(Xb, yb, Xb, yb, theta0, lr=0.5, batch=8, epochs=3, seed=10)
    t2, _ = train(Xb, yb, Xb, yb, theta0, lr=0.5, batch=8, epochs=3, seed=10)
    np.testing.assert_array_equal(backend.to_numpy(t1), backend.to_numpy(t2))
    # epoch e is shuffled with seed + e: a new order each epoch, fixed by the seed
    expected = theta0
    for e in (1, 2, 3):
        expected = sgd_epoch(Xb, yb, expected, 0.5, 8, seed=10 + e)
    np.testing.assert_allclose(
        backend.to_numpy(t1), backend.to_numpy(expected), rtol=1e-12, atol=1e-14
    )
    same_order = theta0
    for _ in range(3):
        same_order = sgd_epoch(Xb, yb, same_order, 0.5, 8, seed=11)
    assert np.max(np.abs(backend.to_numpy(t1) - backend.to_numpy(same_order))) > 1e-6
    unshuffled, _ = train(Xb, yb, Xb, yb, theta0, lr=0.5, batch=8, epochs=3)
    assert np.max(np.abs(backend.to_numpy(t1) - backend.to_numpy(unshuffled))) > 1e-6


# --------------------------------------------------------------------------- bad input


def _bad_problem(case: str):
    """(X, y, theta) on the host with one defect named by ``case``."""
    X = np.arange(12, dtype=np.float64).reshape(4, 3) / 10
    y = np.array([0, 1, 2, 1])
    theta = np.zeros((3, 3))
    if case == "label_negative":
        y = np.array([0, -1, 2, 1])
    elif case == "label_too_big":
        y = np.array([0, 1, 3, 1])
    elif case == "float_labels":
        y = y.astype(np.float64)
    elif case == "y_wrong_length":
        y = y[:3]
    elif case == "y_2d":
        y = y[:, None]
    elif case == "X_1d":
        X = X[0]
    elif case == "theta_shape":
        theta = np.zeros((4, 3))
    elif case == "dtype_mismatch":
        X = X.astype(np.float32)
    elif case == "float16":
        X, theta = X.astype(np.float16), theta.astype(np.float16)
    elif case == "float16_theta":
        theta = theta.astype(np.float16)
    elif case == "integer_X":
        X = np.arange(12, dtype=np.int64).reshape(4, 3)
    elif case == "nan_X":
        X[1, 2] = np.nan
    elif case == "inf_X":
        X[0, 0] = np.inf
    elif case == "nan_theta":
        theta[2, 1] = np.nan
    elif case == "empty_X":
        X, y = X[:0], y[:0]
    return X, y, theta


def on_or_skip(backend, X, y, theta):
    """:func:`on`, skipping where the backend has no such dtype (array_api_strict: float16)."""
    for a in (X, y, theta):
        if not hasattr(backend.xp, a.dtype.name):
            pytest.skip(f"{backend.name} has no {a.dtype.name}")
    return on(backend, X, y, theta)


BAD_PROBLEMS = [
    ("label_negative", ValueError, r"labels must lie in 0\.\.2"),
    ("label_too_big", ValueError, r"labels must lie in 0\.\.2"),
    ("float_labels", TypeError, "integer"),
    ("y_wrong_length", ValueError, "y must be"),
    ("y_2d", ValueError, "y must be"),
    ("X_1d", ValueError, "X must be 2-D"),
    ("theta_shape", ValueError, "theta must be"),
    ("dtype_mismatch", TypeError, "one float dtype"),
    ("integer_X", TypeError, "float32 or float64"),
    ("float16", TypeError, r"X must be a float32 or float64 array, got dtype .*float16.*fix: cast"),
    (
        "float16_theta",
        TypeError,
        r"theta must be a float32 or float64 array, got dtype .*float16.*fix: cast",
    ),
    ("nan_X", ValueError, "X contains NaN"),
    ("inf_X", ValueError, "X contains NaN or infinite"),
    ("nan_theta", ValueError, "theta contains NaN"),
    ("empty_X", ValueError, "no rows"),
]


@pytest.mark.parametrize("case,exc,match", BAD_PROBLEMS, ids=[c[0] for c in BAD_PROBLEMS])
def test_gradients_and_sgd_reject_bad_problems(backend, case, exc, match):
    X, y, theta = on_or_skip(backend, *_bad_problem(case))
    for name in GRAD_NAMES:
        with pytest.raises(exc, match=match):
            get_gradient(name)(X, y, theta)
    with pytest.raises(exc, match=match):
        sgd_epoch(X, y, theta, 0.1, 2)


@pytest.mark.parametrize("case,exc,match", BAD_PROBLEMS, ids=[c[0] for c in BAD_PROBLEMS])
def test_train_rejects_bad_training_data(backend, case, exc, match):
    X, y, theta = on_or_skip(backend, *_bad_problem(case))
    good_X, good_y, _ = on(backend, *_bad_problem("none"))
    with pytest.raises(exc, match=match):
        train(X, y, good_X, good_y, theta, epochs=1)


@pytest.mark.parametrize("which", ["train", "test"])
def test_train_with_default_theta_reports_empty_data_clearly(backend, which):
    """theta=None makes train compute k from the labels; empty data must still say 'no rows'.

    Fails until train() guards the max-label reduction against empty arrays (NumPy
    raises 'zero-size array to reduction operation maximum', torch a RuntimeError).
    """
    X, y, _ = on(backend, *_bad_problem("none"))
    E, ey, _ = on(backend, *_bad_problem("empty_X"))
    args = (E, ey, X, y) if which == "train" else (X, y, E, ey)
    with pytest.raises(ValueError, match="no rows"):
        train(*args, epochs=1)


def test_train_with_default_theta_rejects_bad_labels(backend):
    X, y, _ = on(backend, *_bad_problem("none"))
    Xf, yf, _ = on(backend, *_bad_problem("float_labels"))
    with pytest.raises(TypeError, match="integer"):
        train(Xf, yf, X, y, epochs=1)
    Xn, yn, _ = on(backend, *_bad_problem("label_negative"))
    with pytest.raises(ValueError, match="labels must lie"):
        train(Xn, yn, X, y, epochs=1)


@pytest.mark.parametrize(
    "lr,batch,exc,match",
    [
        (0.1, 0, ValueError, "batch must be a positive"),
        (0.1, -3, ValueError, "batch must be a positive"),
        (0.1, 2.5, TypeError, "batch must be an integer"),
        (0.1, 2.0, TypeError, "batch must be an integer"),
        (0.1, True, TypeError, "batch must be an integer"),
        (0.0, 2, ValueError, "lr must be"),
        (-0.1, 2, ValueError, "lr must be"),
        (float("nan"), 2, ValueError, "lr must be"),
        (float("inf"), 2, ValueError, "lr must be"),
        ("0.1", 2, ValueError, "lr must be"),
    ],
)
def test_bad_hyperparameters_are_rejected(backend, lr, batch, exc, match):
    X, y, theta = on(backend, *_bad_problem("none"))
    with pytest.raises(exc, match=match):
        sgd_epoch(X, y, theta, lr, batch)
    with pytest.raises(exc, match=match):
        train(X, y, X, y, theta, lr=lr, batch=batch, epochs=1)


@pytest.mark.parametrize("epochs", [0, -1, 1.0, True])
def test_train_rejects_bad_epochs(backend, epochs):
    X, y, theta = on(backend, *_bad_problem("none"))
    with pytest.raises(ValueError, match="epochs"):
        train(X, y, X, y, theta, epochs=epochs)


def test_sgd_epoch_rejects_an_unknown_gradient_function(backend):
    X, y, theta = on(backend, *_bad_problem("none"))
    with pytest.raises(TypeError, match="grad must be one of"):
        sgd_epoch(X, y, theta, 0.1, 2, grad=lambda X, y, theta: theta)


@pytest.mark.parametrize("name", ["fast", "Structured", ""])
def test_get_gradient_rejects_unknown_names(name):
    with pytest.raises(ValueError, match="unknown gradient"):
        get_gradient(name)


@pytest.mark.parametrize("fn", [cross_entropy, error_rate])
def test_loss_functions_reject_bad_labels_and_shapes(backend, fn):
    logits = backend.asarray(np.zeros((3, 2)), "float64")
    with pytest.raises(ValueError, match="labels must lie"):
        fn(logits, backend.asarray(np.array([0, 2, 1])))
    with pytest.raises(ValueError, match="labels must lie"):
        fn(logits, backend.asarray(np.array([0, -1, 1])))
    with pytest.raises(TypeError, match="integer"):
        fn(logits, backend.asarray(np.array([0.0, 1.0, 1.0]), "float64"))
    with pytest.raises(ValueError, match="y must be"):
        fn(logits, backend.asarray(np.array([0, 1])))
    with pytest.raises(ValueError, match="logits must be 2-D"):
        fn(backend.asarray(np.zeros(3), "float64"), backend.asarray(np.array([0, 1, 1])))
