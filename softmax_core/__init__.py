"""softmax-bench: what softmax regression really costs on your hardware.

The math lives in :mod:`softmax_core.model.softmax`, backends in :mod:`.backend`, data in
:mod:`.data`, the cost model in :mod:`.costmodel`, timing and memory in
:mod:`.measure`, the benchmark grid and its guard in :mod:`.cases`, the sweep in
:mod:`.sweep`, reports in :mod:`.report` and the command line in :mod:`.cli`.
"""

from .backends import Backend, BackendError, get_backend
from .data import MNIST, DataError, fetch_mnist, load_mnist, make_synthetic
from .model.softmax import (
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

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendError",
    "get_backend",
    "DataError",
    "MNIST",
    "fetch_mnist",
    "load_mnist",
    "make_synthetic",
    "GRADIENTS",
    "cross_entropy",
    "error_rate",
    "get_gradient",
    "grad_naive",
    "grad_naive_batched",
    "grad_structured",
    "jacobian_h_theta",
    "one_hot",
    "sgd_epoch",
    "softmax",
    "train",
]
