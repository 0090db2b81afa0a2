"""A point's inputs on a backend: X and y (MNIST or synthetic, whole or in chunks, in this
process or in Dask's workers), and the streamed gradient's call, whose rows are made inside it.
``case`` is a :class:`softmax_core.runs.cases.Case`."""

from __future__ import annotations

import functools

from ..backends import Backend
from ..data import make_synthetic
from ..errors import InputError
from ..model.softmax import get_gradient


@functools.lru_cache(maxsize=1)
def synthetic_data(m: int, n: int, k: int):
    """Host (X, y) of the given shape (seed 0), kept for the next call of the same shape (a
    point's next round): one shape at a time, which the guard counts beside the point's own
    copy on the device (:meth:`softmax_core.runs.guard.Guard.memory_need`)."""
    return make_synthetic(m, n, k, seed=0)


def inputs(case, backend: Backend, data):
    """X and y of ``case`` on ``backend``: MNIST or synthetic, whole or in chunks."""
    if data is not None or not case.chunk_rows:
        X, y = (
            data if data is not None else synthetic_data(case.samples, case.features, case.classes)
        )
        return backend.asarray(X, case.dtype, copy=True), backend.asarray(y, copy=True)
    from ..dask import chunked

    shape = (case.samples, case.features, case.classes)
    if backend.name == "dask":  # made in the workers, held there (persisted) before timing
        from distributed import wait

        X, y = chunked.synthetic_dask(*shape, 0, case.chunk_rows, case.dtype)
        X, y = backend.client.persist([X, y])
        wait([X, y])
        return X, y
    X, y = chunked.synthetic(*shape, 0, case.dtype)
    return backend.asarray(X, copy=False), backend.asarray(y, copy=False)


def streamed(case, backend: Backend, theta):
    """The full-batch gradient over ``case.samples`` rows made chunk by chunk in the call."""
    from ..dask import chunked

    if case.kind != "gradient":
        raise InputError("only a gradient streams its rows")
    shape = (case.samples, case.features, case.classes)
    if backend.name == "dask":
        X, y = chunked.synthetic_dask(*shape, 0, case.chunk_rows, case.dtype)
        fn = functools.partial(get_gradient(case.method), check=False)
        return backend.complete(fn), (X, y, theta)
    if backend.name != "numpy":
        raise InputError(f"a stream point runs on numpy or dask, not {backend.name}")
    fn = functools.partial(
        chunked.reference_gradient,
        m=case.samples,
        k=case.classes,
        seed=0,
        chunk_rows=case.chunk_rows,
        dtype=case.dtype,
    )
    return fn, (theta,)


__all__ = ["inputs", "streamed", "synthetic_data"]
