"""Shared fixtures: array backends (in the spirit of SciPy's ``xp``) and the real MNIST files.

``backend`` is parametrized over (device, library) pairs and yields a
:class:`softmax_core.Backend`; ``xp`` is its namespace.  Tests build their data in
NumPy, move it with ``backend.asarray(a, dtype)`` and bring results back with
``backend.to_numpy``.  numpy and array_api_strict always run; torch runs when it
is importable; cupy runs only where ``get_backend("gpu", "cupy")`` works.

``mnist_dir`` is ``$SOFTMAX_MNIST_DIR`` or ``<repo>/../shared/data/mnist``; when it
is missing the MNIST tests are skipped locally and fail on CI (``CI=true``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from softmax_core import Backend, BackendError, get_backend, load_mnist

REPO_ROOT = Path(__file__).resolve().parent.parent
MNIST_FILE_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# (device, library) pairs the math is tested on; the id is the library's name.
BACKEND_PARAMS = [
    pytest.param(("cpu", "numpy"), id="numpy"),
    pytest.param(("cpu", "array_api_strict"), id="array_api_strict"),
    pytest.param(("cpu", "torch"), id="torch"),
    pytest.param(("gpu", "cupy"), id="cupy"),
]


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request) -> Backend:
    """A softmax_core Backend: numpy and array_api_strict always, torch/cupy where they work."""
    device, name = request.param
    if name == "torch":
        pytest.importorskip("torch", reason="torch is not installed")
    try:
        return get_backend(device, name)
    except BackendError as exc:
        if name == "cupy":
            pytest.skip(f"cupy backend unavailable: {exc}")
        raise


@pytest.fixture
def xp(backend):
    """The array-API namespace of ``backend``."""
    return backend.xp


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder with the four real MNIST IDX files (``.gz``)."""
    env = os.environ.get("SOFTMAX_MNIST_DIR")
    path = Path(env) if env else (REPO_ROOT / ".." / "shared" / "data" / "mnist").resolve()
    missing = [
        n for n in MNIST_FILE_NAMES if not (path / f"{n}.gz").is_file() and not (path / n).is_file()
    ]
    if not path.is_dir() or missing:
        reason = (
            f"MNIST files not found in {path} (missing: {', '.join(missing) or 'the folder'}); "
            "set SOFTMAX_MNIST_DIR to a folder with the four IDX files, place them in "
            "../shared/data/mnist beside the repository, "
            "or run 'softmax-bench data fetch --dir DIR'"
        )
        if _on_ci():
            pytest.fail("CI=true requires the MNIST data: " + reason)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    """The real MNIST arrays, loaded (and checksum-verified) once per session."""
    return load_mnist(mnist_dir)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240607)
