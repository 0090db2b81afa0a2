"""Synthetic data defined chunk by chunk from a seed: any number of rows, any chunking.

The data set ``(seed, n, k)`` is an unbounded sequence of rows; ``m`` rows are
its first ``m``.  Rows come in *generation blocks* of :data:`BLOCK_ROWS`, each
made from its own seed, ``SeedSequence(seed, spawn_key=(stream, block))``
(NumPy's documented way to derive independent streams), so that

* any range of rows can be made without the rows before it (a Dask chunk, a
  worker, a slice of a 31 GB array that never exists at once);
* the values do not depend on how the rows are chunked, nor on ``m``: NumPy's
  :func:`synthetic` and Dask's :func:`synthetic_dask` give the same arrays for
  the same ``seed`` and ``m``, and so does any ``chunk_rows``.

Each class ``c`` has a centre ``μ_c`` ~ N(0, I) [n]; a row with label ``y`` is
``(μ_y + u) / sqrt(n)`` with ``u`` uniform noise of zero mean and unit variance
(uniform rather than normal: NumPy draws uniform float32 about three times
faster, and making the rows is what streaming a data set larger than memory
spends most of its time on).  Labels are uniform in ``0..k-1`` (int64).  Values
are drawn in float32; float64 data is the same values, widened.

This is not :func:`softmax_core.data.make_synthetic` (one generator for the whole
array, so not chunkable); the Dask backend and its NumPy reference both use this one.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..errors import InputError

#: Rows per generation block: the unit of determinism (chunks of any size cut across blocks).
BLOCK_ROWS = 1000
#: Rows per Dask chunk unless told otherwise: 63 MB of float32 at n = 784 (MNIST: 3 chunks).
#: Dask's overhead is a few ms per task and a gradient is ~13 tasks per chunk, so a chunk
#: should hold ~100 ms of work (see results/dask); a multiple of the usual batch sizes.
DEFAULT_CHUNK_ROWS = 20_000

_CENTRES, _LABELS, _NOISE = 0, 1, 2  # the spawn_key streams


def _check_sizes(m: int, n: int, k: int) -> None:
    for name, v, least in (("m", m, 1), ("n", n, 1), ("k", k, 2)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < least:
            raise InputError(f"{name} must be an integer >= {least}, got {v!r}")


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence(int(seed), spawn_key=tuple(int(x) for x in key))
    )


@functools.lru_cache(maxsize=8)
def _row_terms(seed: int, n: int, k: int) -> tuple[np.ndarray, np.float32]:
    """``(B [k, n], s)`` with a row = ``u01 * s + B[y]`` for u01 uniform in [0, 1):
    B = (μ − sqrt(3)) / sqrt(n), s = sqrt(12 / n) (uniform noise of unit variance)."""
    centres = _rng(seed, _CENTRES).standard_normal((k, n), dtype=np.float32)
    offset = ((centres - np.float32(math.sqrt(3))) * np.float32(1 / math.sqrt(n))).astype(
        np.float32
    )
    offset.setflags(write=False)
    return offset, np.float32(math.sqrt(12 / n))


def block_labels(seed: int, block: int, k: int) -> np.ndarray:
    """The labels of generation block ``block`` [BLOCK_ROWS] (cheap: no rows are made)."""
    return _rng(seed, _LABELS, block).integers(0, k, BLOCK_ROWS, dtype=np.int64)


def block_rows(seed: int, block: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(X [BLOCK_ROWS, n] float32, y [BLOCK_ROWS] int64)`` of one generation block."""
    y = block_labels(seed, block, k)
    offset, scale = _row_terms(int(seed), int(n), int(k))
    X = _rng(seed, _NOISE, block).random((BLOCK_ROWS, n), dtype=np.float32)
    X *= scale
    X += offset[y]
    return X, y


def _blocks(start: int, stop: int) -> range:
    return range(start // BLOCK_ROWS, (stop - 1) // BLOCK_ROWS + 1)


def rows(
    seed: int, start: int, stop: int, n: int, k: int, dtype="float32"
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``start:stop`` of the data set: ``(X [stop-start, n], y [stop-start])``."""
    if not 0 <= start < stop:
        raise InputError(f"need 0 <= start < stop, got {start}:{stop}")
    X = np.empty((stop - start, n), dtype=dtype)
    y = np.empty(stop - start, dtype=np.int64)
    for b in _blocks(start, stop):
        b0 = b * BLOCK_ROWS
        lo, hi = max(start, b0), min(stop, b0 + BLOCK_ROWS)
        Xb, yb = block_rows(seed, b, n, k)
        X[lo - start : hi - start] = Xb[lo - b0 : hi - b0]
        y[lo - start : hi - start] = yb[lo - b0 : hi - b0]
    return X, y


def labels(seed: int, start: int, stop: int, k: int) -> np.ndarray:
    """Labels ``start:stop`` alone, without making the rows."""
    blocks = _blocks(start, stop)
    y = np.concatenate([block_labels(seed, b, k) for b in blocks])
    first = blocks[0] * BLOCK_ROWS
    return y[start - first : stop - first]


def synthetic(
    m: int, n: int, k: int, seed: int = 0, dtype="float32"
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``m`` rows in NumPy, all at once: ``(X [m, n], y [m])``."""
    _check_sizes(m, n, k)
    return rows(seed, 0, m, n, k, dtype)


def chunk_bounds(m: int, chunk_rows: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]``: ``m`` rows cut into chunks of ``chunk_rows`` (the last shorter)."""
    if (
        isinstance(chunk_rows, bool)
        or not isinstance(chunk_rows, (int, np.integer))
        or chunk_rows < 1
    ):
        raise InputError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    return [(s, min(s + chunk_rows, m)) for s in range(0, m, chunk_rows)]


def _x_chunk(seed, n, k, dtype, block_info=None):
    (start, stop), _ = block_info[None]["array-location"]
    return rows(seed, start, stop, n, k, dtype)[0]


def _y_chunk(seed, k, block_info=None):
    ((start, stop),) = block_info[None]["array-location"]
    return labels(seed, start, stop, k)


def synthetic_dask(
    m: int, n: int, k: int, seed: int = 0, chunk_rows: int = DEFAULT_CHUNK_ROWS, dtype="float32"
):
    """The first ``m`` rows as lazy Dask arrays ``(X [m, n], y [m])``, row-chunked.

    Nothing is made until computed: each chunk of X is made by the task that
    needs it (from its generation blocks), so X may be far larger than memory.
    Chunks of y make only labels.  Equal to :func:`synthetic` for the same
    ``seed`` and ``m``, whatever ``chunk_rows``.
    """
    import dask.array as da

    _check_sizes(m, n, k)
    sizes = tuple(b - a for a, b in chunk_bounds(m, chunk_rows))
    dtype = np.dtype(dtype)
    X = da.map_blocks(
        _x_chunk,
        seed,
        n,
        k,
        dtype.name,
        chunks=(sizes, (n,)),
        dtype=dtype,
        meta=np.empty((0, n), dtype),
        token="synthetic-X",
    )
    y = da.map_blocks(
        _y_chunk,
        seed,
        k,
        chunks=(sizes,),
        dtype=np.int64,
        meta=np.empty((0,), np.int64),
        token="synthetic-y",
    )
    return X, y


def reference_gradient(
    theta: np.ndarray,
    m: int,
    k: int,
    seed: int = 0,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    dtype="float32",
) -> np.ndarray:
    """NumPy in one process: Σ over chunks of ``rows · grad_structured(X_c, y_c, θ)``, / m.

    The mean-loss gradient over the first ``m`` rows, made one chunk at a time
    with the same chunks a Dask array of ``chunk_rows`` has (bounded memory: one
    chunk), summed in float64 and returned in θ's dtype.  What the Dask
    full-batch gradient must equal.
    """
    from ..model.softmax import grad_structured

    n = theta.shape[0]
    _check_sizes(m, n, k)
    total = np.zeros(theta.shape, dtype=np.float64)
    for start, stop in chunk_bounds(m, chunk_rows):
        X, y = rows(seed, start, stop, n, k, dtype)
        total += (stop - start) * grad_structured(X, y, theta, check=False).astype(np.float64)
        del X, y
    return (total / m).astype(theta.dtype)


__all__ = [
    "BLOCK_ROWS",
    "DEFAULT_CHUNK_ROWS",
    "block_rows",
    "block_labels",
    "rows",
    "labels",
    "synthetic",
    "synthetic_dask",
    "chunk_bounds",
    "reference_gradient",
]
