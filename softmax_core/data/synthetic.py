"""Synthetic classification data of any shape, made on the host from a seed."""

from __future__ import annotations

import numpy as np

from ..errors import whole


def make_synthetic(m: int, n: int, k: int, seed: int = 0, dtype=np.float32):
    """Synthetic classification data of any shape: ``(X [m, n], y [m])`` on the host.

    Each class has a random centre; X is centre plus unit noise, scaled by
    1/sqrt(n) so that logits stay O(1) for any n.  y is int64 in 0..k-1.
    """
    for name, v, least in (("m", m, 1), ("n", n, 1), ("k", k, 2)):
        whole(v, name, least)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=m, dtype=np.int64)
    centres = rng.standard_normal((k, n), dtype=np.float32)
    X = centres[y] + rng.standard_normal((m, n), dtype=np.float32)
    X *= np.float32(1 / np.sqrt(n))
    return X.astype(dtype, copy=False), y
