"""The cost model: the lecture's numbers, and this implementation's peak as measured."""

import numpy as np
import pytest

from softmax_core import get_backend
from softmax_core.model.cost import epoch_cost, gradient_cost, sgd_step_cost
from softmax_core.model.sgd import sgd_epoch
from softmax_core.runs.cases import Case
from softmax_core.units import si


def test_lecture_table_at_imagenet_scale():
    naive = gradient_cost("naive", 1, 1000, 1000, "float32")
    structured = gradient_cost("structured", 1, 1000, 1000, "float32")
    batched = gradient_cost("naive_batched", 96, 1000, 1000, "float32")
    assert naive.lecture_bytes == 4e9  # one Jacobian [k, n·k]: 4 GB
    assert structured.lecture_bytes == 4e6  # the gradient [n, k]: 4 MB
    assert batched.lecture_bytes == 384e9  # 96 Jacobians: 384 GB
    assert si(batched.lecture_bytes, "B") == "384 GB"
    assert si(naive.lecture_bytes, "B") == "4.00 GB"
    assert si(structured.lecture_bytes, "B") == "4.00 MB"


def test_float64_doubles_memory():
    a = gradient_cost("naive", 4, 50, 20, "float32")
    b = gradient_cost("naive", 4, 50, 20, "float64")
    assert b.lecture_bytes == 2 * a.lecture_bytes
    assert b.flops == a.flops


@pytest.mark.parametrize("k", [10, 100, 1000])
def test_naive_over_structured_grows_like_k(k):
    n, B = 784, 8
    naive, structured = gradient_cost("naive", B, n, k), gradient_cost("structured", B, n, k)
    assert naive.flops / structured.flops == pytest.approx(3 * k / 4, rel=0.1)
    assert naive.lecture_bytes / structured.lecture_bytes == k


def test_naive_time_is_quadratic_and_structured_linear_in_k():
    f = {
        m: [gradient_cost(m, 32, 784, k).flops for k in (100, 1000)]
        for m in ("naive", "structured")
    }
    assert np.log10(f["naive"][1] / f["naive"][0]) == pytest.approx(2, abs=0.05)
    assert np.log10(f["structured"][1] / f["structured"][0]) == pytest.approx(1, abs=0.05)


def test_batched_peak_scales_with_batch_and_per_example_does_not():
    assert (
        gradient_cost("naive", 64, 100, 50).peak_bytes
        == gradient_cost("naive", 1, 100, 50).peak_bytes
    )
    ratio = (
        gradient_cost("naive_batched", 64, 100, 50).peak_bytes
        / gradient_cost("naive_batched", 1, 100, 50).peak_bytes
    )
    assert ratio == pytest.approx(64, rel=0.05)


def test_epoch_counts_the_short_last_batch():
    full = epoch_cost("structured", 250, 10, 3, 100)
    steps = (
        2 * sgd_step_cost("structured", 100, 10, 3).flops
        + sgd_step_cost("structured", 50, 10, 3).flops
    )
    assert full.flops == pytest.approx(steps)


@pytest.mark.parametrize("bad", [dict(method="fast"), dict(B=0), dict(k=-1), dict(dtype="int8x")])
def test_bad_arguments(bad):
    args = dict(method="naive", B=1, n=3, k=2, dtype="float32") | bad
    with pytest.raises(ValueError):
        gradient_cost(args["method"], args["B"], args["n"], args["k"], args["dtype"])


@pytest.mark.parametrize(
    "method,B,n,k,dtype",
    [
        ("naive", 1, 300, 300, "float32"),
        ("naive", 3, 300, 300, "float64"),
        ("naive_batched", 2, 300, 100, "float32"),
        ("structured", 512, 784, 1000, "float32"),
    ],
)
def test_measured_peak_matches_implementation_prediction(method, B, n, k, dtype):
    """tracemalloc's peak of one NumPy call is within 15% of costmodel's peak_bytes."""
    backend = get_backend("cpu", "numpy")
    case = Case("gradient", method, B, n, k, dtype)
    fn, args = case.prepare(backend)
    measured = backend.peak_bytes(fn, *args)
    assert measured == pytest.approx(case.cost.peak_bytes, rel=0.15)


@pytest.mark.parametrize("batch,k", [(100, 10), (512, 1000), (1, 10), (5000, 10)])
def test_measured_epoch_peak_matches_the_prediction(batch, k):
    """sgd_epoch's working memory (θ copy, I_y chunk, one step's buffers) as the cost model says."""
    backend = get_backend("cpu", "numpy")
    X = np.random.default_rng(0).standard_normal((6000, 784)).astype(np.float32)
    y = np.arange(6000) % k
    theta = np.zeros((784, k), np.float32)
    fn = lambda: sgd_epoch(X, y, theta, 0.1, batch, check=False)  # noqa: E731
    fn()  # warm: the first call's one-time allocations are not the epoch's
    measured = backend.peak_bytes(fn)
    assert measured == pytest.approx(
        epoch_cost("structured", 6000, 784, k, batch).peak_bytes, rel=0.15
    )


def test_epoch_with_batch_larger_than_the_data_is_one_step():
    one_step = sgd_step_cost("structured", 50, 10, 3).flops
    assert epoch_cost("structured", 50, 10, 3, batch=100).flops == pytest.approx(one_step)
    assert epoch_cost("structured", 50, 10, 3, batch=100).flops > 0
