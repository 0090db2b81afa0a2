"""softmax-bench: what softmax regression really costs on your hardware.

Layers, each importing only those above it in this list (tests/test_layout.py): the math and
its cost model (:mod:`.model`); Dask's cluster, chunked data and engine metrics (:mod:`.dask`);
the array libraries (:mod:`.backends`); data (:mod:`.data`); the measuring loop, its statistics
and the process state it measures in (:mod:`.measure`); cases, the sweep, the result format
and the out-of-core run (:mod:`.runs`); yardsticks (:mod:`.baseline`); the regression gate
(:mod:`.gate`); reports (:mod:`.report`); the command line (:mod:`.cli`).
"""

from .backends import Backend, BackendError, get_backend
from .data import MNIST, DataError, fetch_mnist, load_mnist, make_synthetic
from .model.sgd import sgd_epoch, train
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
    softmax,
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
