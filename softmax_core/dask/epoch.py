"""An SGD epoch on Dask, computed in segments, and one timed call of it.

Each op on a lazy Dask array copies the graph's layer dependencies, so one graph
for a whole small-batch epoch costs O(steps²) to build (MNIST at batch 100: 600
steps); in segments of :data:`SEGMENT_STEPS` batches, θ computed after each, it is
linear.  The epoch is the same: the same steps, the same math.
"""

from __future__ import annotations

from typing import Any

from .cluster import materialize

#: Steps of an SGD epoch built into one Dask graph before θ is computed (:func:`sgd_epoch`).
SEGMENT_STEPS = 8


def sgd_epoch(
    X,
    y,
    theta,
    lr: float,
    batch: int,
    grad=None,
    *,
    seed: int | None = None,
    check: bool = True,
    segment_steps: int = SEGMENT_STEPS,
    client: Any = None,
):
    """:func:`softmax_core.model.sgd.sgd_epoch`, computed ``segment_steps`` batches at a time.

    Each segment is the model's ``sgd_epoch`` on rows ``s0:s1`` with ``s0`` a multiple of
    ``batch``, i.e. on exactly the epoch's batches from ``s0`` on, and its θ, computed (on
    ``client``, see :func:`materialize`), starts the next.  With ``seed``, the model's own
    permutation is applied first.  Returns θ computed.
    """
    from array_api_compat import array_namespace

    from ..model import sgd as model

    grad = grad or model.grad_structured
    xp = array_namespace(X, y, theta)
    X, y = model._epoch_order(xp, X, y, seed)  # the permutation model.sgd_epoch would apply
    rows = int(batch) * max(1, int(segment_steps))
    for s0 in range(0, X.shape[0], rows):
        theta = materialize(
            model.sgd_epoch(
                X[s0 : s0 + rows], y[s0 : s0 + rows], theta, lr, batch, grad, check=check
            ),
            client,
        )
    return theta


__all__ = ["SEGMENT_STEPS", "sgd_epoch"]
