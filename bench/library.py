"""The names of softmax_core that the suite uses, in one place.

asv runs this ``bench/`` against every commit's ``softmax_core``: the package's layout
by concern (``softmax_core.measure.engine``, ``softmax_core.runs.cases``, ...) and the flat
one of older commits (``softmax_core.measure``, ``softmax_core.cases``, ...) both import.
"""

# ruff: noqa: F401  (re-exports)
try:
    from softmax_core.backends import Backend, BackendError, get_backend
    from softmax_core.baseline.plain import epoch_overhead
    from softmax_core.fileio import atomic_write_text
    from softmax_core.measure import engine
    from softmax_core.measure.environment import cpu_model
    from softmax_core.measure.timemodel import TimeModel
    from softmax_core.runs.cases import (
        DEFAULT_GRID,
        EPOCH_CLASSES,
        EPOCH_FEATURES,
        EPOCH_SAMPLES,
        Case,
        synthetic_data,
    )
    from softmax_core.runs.sweep import POINT_TIME_SHARE

    try:
        from softmax_core.runs.guard import Guard, default_memory_budget
    except ImportError:  # the guard beside the cases
        from softmax_core.runs.cases import Guard, default_memory_budget

    def set_threads(threads: int | None) -> None:
        """Limit the BLAS and OpenMP pools to ``threads``: asv runs each point in a process
        of its own, so the limit lasts for that point."""
        if threads is not None:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=threads)

except ImportError:  # the flat layout
    from softmax_core._io import atomic_write_text
    from softmax_core.backend import Backend, BackendError, get_backend
    from softmax_core.cases import (
        DEFAULT_GRID,
        EPOCH_CLASSES,
        EPOCH_FEATURES,
        EPOCH_SAMPLES,
        Case,
        Guard,
        default_memory_budget,
        synthetic_data,
    )
    from softmax_core.environment import cpu_model, set_threads
    from softmax_core.reference import epoch_overhead
    from softmax_core.sweep import POINT_TIME_SHARE
    from softmax_core.timemodel import TimeModel

    from softmax_core import measure as engine

try:
    from softmax_core.backends.base import check_nvidia_driver
except ImportError:  # a layout without it: the same check

    def check_nvidia_driver() -> None:
        import os
        import sys

        files = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/dxg")
        if sys.platform.startswith("linux") and not any(map(os.path.exists, files)):
            raise BackendError(
                f"SOFTMAX_DEVICE=gpu, but this machine has no NVIDIA driver ({files})"
            )
