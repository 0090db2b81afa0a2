"""The environment record: where a number was measured, in one dict.

Every results folder has one (``environment.json``), ``softmax-bench info``
prints it, and ``compare`` shows the two sides' records.  Machine facts come
from well-kept libraries (psutil for CPU, memory and load; threadpoolctl for
the BLAS and its threads); the device's own facts come from the Backend.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import select
import subprocess
import time
from pathlib import Path

import numpy as np

from ..backends import Backend
from .host_memory import allocator

#: Libraries whose versions go into every record, where installed.
LIBRARIES = (
    "softmax-bench",
    "numpy",
    "array-api-compat",
    "array-api-strict",
    "cupy",
    "cupy-cuda11x",
    "cupy-cuda12x",
    "cupy-cuda13x",
    "torch",
    "pandas",
    "matplotlib",
    "dask",
    "asv",
)


def load_average(all_three: bool = False):
    """The 1-minute load average, or with ``all_three`` the list of the 1-, 5- and 15-minute
    ones (None where the OS has none)."""
    try:
        loads = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None
    return loads if all_three else loads[0]


def record(backend: Backend | None = None) -> dict:
    """Everything that decides what a measurement means, as a JSON-able dict.

    Keys: ``machine`` (platform, CPU model, cores, frequency governor, memory,
    load, the host allocator's state), ``blas`` (threadpoolctl's view of each thread
    pool), ``backend`` (the library, device and, on a GPU, card, memory, driver and CUDA versions),
    ``versions`` (Python and libraries), ``git_commit`` and ``git_changes``.  It describes
    the process as it is and changes nothing: taken inside a measurement session
    (:mod:`softmax_core.measure.session`), it describes the state measurements are taken in.
    """
    env = {
        "machine": machine(),
        "blas": blas_pools(),
        "versions": versions(),
        "git_commit": git_commit(),
    }
    env["git_changes"] = git_changes() if env["git_commit"] else None
    if backend is not None:
        env["backend"] = backend.describe()
    return env


def machine() -> dict:
    import psutil

    mem = psutil.virtual_memory()
    return {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_cores_logical": psutil.cpu_count(logical=True),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_governor": _read_text("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "memory_total_bytes": int(mem.total),
        "memory_available_bytes": int(mem.available),
        "allocator": allocator(),
        # a busy machine slows BLAS threads badly: the load says how quiet it was
        "load_average_1_5_15min": load_average(all_three=True),
        "openblas_env": {
            k: os.environ[k]
            for k in (
                "OPENBLAS_CORETYPE",
                "OPENBLAS_L2_SIZE",
                "OMP_NUM_THREADS",
                "OPENBLAS_NUM_THREADS",
            )
            if k in os.environ
        },
    }


def blas_pools() -> list[dict]:
    """Each native thread pool loaded in this process (BLAS, OpenMP): library, version, threads."""
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "version", "num_threads", "threading_layer", "architecture")
    return [{k: pool.get(k) for k in keep if k in pool} for pool in threadpool_info()]


def blas_summary() -> str:
    """One line: e.g. ``openblas 0.3.31 (Zen, 2 threads)``."""
    pools = [p for p in blas_pools() if p.get("user_api") == "blas"]
    if not pools:
        return "no BLAS loaded"
    return "; ".join(
        f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')}, "
        f"{p.get('num_threads')} thread{'' if p.get('num_threads') == 1 else 's'})"
        for p in pools
    )


def versions() -> dict:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def cpu_model() -> str:
    for line in (_read_text("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _package() -> Path:
    """The folder of the softmax_core package: the code whose commit and changes a record
    names."""
    return Path(__file__).resolve().parents[1]


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The commit of the checkout whose tracked files hold ``path`` (default: the package), if
    any; None for a folder git does not track (a package installed into a virtual environment
    inside someone's repository is not that repository's code)."""
    where = Path(path) if path else _package()
    try:
        tracked, out = (
            subprocess.run(["git", *argv], cwd=where, capture_output=True, text=True, timeout=5)
            for argv in (["ls-files", "--error-unmatch", "--", "."], ["rev-parse", "HEAD"])
        )
    except (OSError, subprocess.SubprocessError):
        return None
    ok = tracked.returncode == out.returncode == 0
    return out.stdout.strip() or None if ok else None


def git_changes(path: str | os.PathLike | None = None) -> str | None:
    """The uncommitted changes of the checkout under ``path`` (default: the whole package):
    "none", or ``sha256:`` and 12 hex digits of their diff and untracked files (the same edits
    give the same digest); None where git cannot say (no git, a file it cannot read, changes
    that take past :data:`GIT_TIMEOUT_S` to read)."""
    where = Path(path) if path else _package()
    digest, deadline = hashlib.sha256(), time.monotonic() + GIT_TIMEOUT_S
    try:
        diff = _hash_output(
            ["diff", "HEAD", "--no-ext-diff", "--binary", "--", "."], where, digest, deadline
        )
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--others", "--exclude-standard", "--", "."],
            cwd=where,
            capture_output=True,
            timeout=max(0.1, deadline - time.monotonic()),
        )
        if listed.returncode:
            return None
        for name in sorted(filter(None, listed.stdout.split(b"\0"))):
            digest.update(b"\0" + name + b"\0")
            _hash_entry(where / os.fsdecode(name), digest, deadline)
    except (OSError, subprocess.SubprocessError, TimeoutError):
        return None
    return "none" if not diff and not listed.stdout else "sha256:" + digest.hexdigest()[:12]


#: Seconds git may take to list a checkout's changes before they are called not known.
GIT_TIMEOUT_S = 10.0


def _hash_output(argv: list[str], where: Path, digest, deadline: float) -> int:
    """The bytes git writes, hashed into ``digest`` a chunk at a time; their count. OSError
    where git fails, TimeoutError past ``deadline``."""
    with subprocess.Popen(
        ["git", *argv], cwd=where, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as proc:
        count, fd = 0, proc.stdout.fileno()
        try:
            while True:  # each read waits at most until the deadline, also while git is silent
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise TimeoutError(f"git {argv[0]} took too long")
                chunk = os.read(fd, 2**20)
                if not chunk:
                    break
                digest.update(chunk)
                count += len(chunk)
            failed = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except (TimeoutError, subprocess.TimeoutExpired):
            proc.kill()  # not waited for past the deadline, on leaving the with either
            raise
    if failed:
        raise OSError(f"git {argv[0]} failed")
    return count


def _hash_entry(path: Path, digest, deadline: float) -> None:
    """An untracked entry into ``digest``: a link's target, a folder's name (a repository
    inside), a file's bytes a chunk at a time."""
    if path.is_symlink():
        digest.update(b"link:" + os.fsencode(os.readlink(path)))
    elif path.is_dir():
        digest.update(b"folder")
    else:
        with open(path, "rb") as fh:
            while chunk := fh.read(2**20):
                if time.monotonic() > deadline:
                    raise TimeoutError("untracked files too large to read")
                digest.update(chunk)


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


__all__ = [
    "record",
    "machine",
    "blas_pools",
    "blas_summary",
    "versions",
    "cpu_model",
    "git_commit",
    "git_changes",
    "load_average",
]
