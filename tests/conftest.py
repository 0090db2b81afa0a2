"""Shared fixtures: array backends (in the spirit of SciPy's ``xp``) and the real MNIST files.

``backend`` is parametrized over (device, library) pairs and yields a
:class:`softmax_core.Backend`; ``xp`` is its namespace.  Tests build their data in
NumPy, move it with ``backend.asarray(a, dtype)`` and bring results back with
``backend.to_numpy``.  numpy and array_api_strict always run; torch runs when it
is importable; cupy runs only where ``get_backend("gpu", "cupy")`` works.

``mnist_dir`` is ``$SOFTMAX_MNIST_DIR`` or ``<repo>/../shared/data/mnist``; when it
is missing the MNIST tests are skipped locally and fail on CI (``CI=true``).

``fake_measuring`` holds the keyword arguments that make ``run_sweep`` take its numbers
from :class:`FakeMeasure` and :func:`fake_probe` instead of the machine: a test of the
sweep's orchestration (lock, resume, rows, guards, summary, reports) runs in
milliseconds and gets the same numbers every time.  ``cli_run`` runs a command in this
process, for tests of what the command line says rather than of the interpreter's start.
"""

from __future__ import annotations

import gc
import importlib
import inspect
import os
from pathlib import Path

import numpy as np
import pytest

from softmax_core import Backend, BackendError, get_backend, load_mnist
from softmax_core.measure import engine
from softmax_core.measure.session import blas_threads
from softmax_core.measure.stats import Measurement

REPO_ROOT = Path(__file__).resolve().parent.parent
MNIST_FILE_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: Libraries the tests load sooner or later, loaded before the first freeze.
HEAVY_IMPORTS = ("matplotlib.pyplot", "pandas", "dask.array", "distributed", "asv_runner")
_FROZEN_AT: list = [None]


#: The most test processes ``-n auto`` starts: past 4 the suite's wall time is its longest tests'.
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (pyproject's addopts): one test process a core this process may use, at most
    :data:`MAX_WORKERS`; one process a core keeps the timing tests' machine no busier than a
    test that measures expects of a shared one.  ``-n 0`` runs the tests in this process."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count())
    return max(1, min(len(usable), MAX_WORKERS))


def pytest_collection_finish(session):
    for name in HEAVY_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def pytest_runtest_setup(item):
    """At each test module's first test, what is alive (modules, libraries, pytest's own
    records) is frozen out of the cyclic garbage collector: the full collection that
    ``Backend.peak_bytes`` makes before each count then walks only what this module's tests
    made (a tenth of a second or more a count otherwise, in a process this big)."""
    if item.module is not _FROZEN_AT[0]:
        _FROZEN_AT[0] = item.module
        gc.collect()
        gc.freeze()


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


class FakeMeasure:
    """Stands in for :func:`softmax_core.measure.engine.measure`, with its signature.

    It calls ``fn(*args)`` once, so a call that fails still raises where the sweep
    makes it an error row, and returns ``min_samples`` samples of about ``seconds``
    each (spread by 0.1% steps, so the interval is not a single value), the cold
    call twice as long.  ``calls`` holds each call's arguments, defaults filled in, and the
    BLAS threads it ran under (``blas_threads``).
    """

    def __init__(self, seconds: float = 1e-4):
        self.seconds = seconds
        self.calls: list[dict] = []

    def __call__(self, fn, *args, **kwargs) -> Measurement:
        bound = inspect.signature(engine.measure).bind(fn, *args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        if a["cold"] and not a["warm_up"]:
            raise ValueError("warm_up=False needs cold=False: a cold call is never a steady state")
        a["blas_threads"] = blas_threads()  # the thread count the call ran under
        self.calls.append(a)
        fn(*args)
        t = self.seconds
        return Measurement.from_samples(
            [t * (1 + 0.001 * i) for i in range(a["min_samples"])],
            first_s=2 * t if a["cold"] else None,
            others_cpu=0.0,
            others_raw_s=(0.0, 1.0, 0.0),
        )


def fake_probe(backend) -> dict:
    """Stands in for :func:`softmax_core.measure.engine.probe_machine`: fixed ceilings."""
    return {
        "gemm_gflops": 50.0,
        "copy_gbps": 10.0,
        "probe_gemm_size": 1024,
        "probe_copy_bytes": 64 * 2**20,
        "probe_version": engine.PROBE_VERSION,
    }


@pytest.fixture(scope="session")
def make_fake_measuring():
    """``make_fake_measuring(seconds=1e-4)``: ``run_sweep``'s keyword arguments for a fresh
    :class:`FakeMeasure` of calls of ``seconds`` and :func:`fake_probe` (for fixtures of any
    scope)."""

    def make(seconds: float = 1e-4) -> dict:
        return {"measure": FakeMeasure(seconds), "probe": fake_probe}

    return make


@pytest.fixture
def fake_measuring(make_fake_measuring) -> dict:
    """``run_sweep(..., **fake_measuring)``: a fresh :class:`FakeMeasure`, :func:`fake_probe`."""
    return make_fake_measuring()


@pytest.fixture
def cli_run(capsys):
    """``cli_run(*argv)``: ``softmax-bench argv`` in this process, as (exit status, stdout,
    stderr); a bad argument's exit (argparse's ``SystemExit``) gives its status."""
    from softmax_core.cli import main

    def run(*argv) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


#: What :func:`unrendered_plots` writes for a plot: a PNG signature and no image.
UNRENDERED_PNG = b"\x89PNG\r\n\x1a\n(unrendered)"


def skip_rendering(monkeypatch) -> None:
    """Reports build every figure but write :data:`UNRENDERED_PNG` instead of rendering it (a
    second or so a report)."""
    from softmax_core import report
    from softmax_core.fileio import atomic_write_bytes

    def save(fig, path: Path) -> None:
        atomic_write_bytes(path, UNRENDERED_PNG)

    monkeypatch.setattr(report, "save", save)
    monkeypatch.setattr(report.plots, "save", save)  # the scale report's


@pytest.fixture
def unrendered_plots(monkeypatch):
    """:func:`skip_rendering`, for tests of report.md and of which files a report writes; the
    tests that look at the images render them."""
    skip_rendering(monkeypatch)
