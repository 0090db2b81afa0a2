"""Host memory in a defined state: glibc keeps what a measured call frees, so that a call finds
its pages mapped instead of paying for fresh ones from the kernel (docs/measurement.md, "The
measuring loop", says why).  A measurement session (:mod:`softmax_core.measure.session`) sets
this policy and restores glibc's defaults; :func:`allocator` says which state the process is in.
"""

from __future__ import annotations

import ctypes
import functools
import platform
from pathlib import Path

# mallopt parameters, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DEFAULT_MMAP_MAX = 65536  # glibc's own default of M_MMAP_MAX
_DEFAULT_TRIM_THRESHOLD = 128 * 1024  # glibc's own default of M_TRIM_THRESHOLD
#: sysfs folder of the kernel's free page reporting (present where the guest reports to a host)
PAGE_REPORTING = Path("/sys/module/page_reporting/parameters")

_state: dict = {"retained": False, "owner": None}


@functools.cache
def _glibc():
    """The C library's handle where it is glibc (looked up once), else None."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def retain_freed_memory(owner: object = None) -> bool:
    """Make glibc keep the memory this process frees, for its next allocations, until
    :func:`restore_default_policy` is called by the same ``owner``.  True when in force; False
    where the C library is not glibc or refuses (nothing is left changed then)."""
    libc = _glibc()
    if libc is None:
        return False
    if not _state["retained"]:
        if libc.mallopt(_M_MMAP_MAX, 0) != 1:  # large blocks from the heap, not mmap
            return False
        if libc.mallopt(_M_TRIM_THRESHOLD, -1) != 1:  # -1: SIZE_MAX to glibc, never trim
            libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)  # not half of the policy
            return False
        _state.update(retained=True, owner=owner)
    return True


def restore_default_policy(owner: object = None) -> None:
    """glibc's defaults again (large blocks mapped, the heap trimmed), and the kept memory
    handed back, if ``owner`` set the policy; otherwise nothing changes."""
    libc = _glibc()
    if libc is None or not _state["retained"] or _state["owner"] is not owner:
        return
    libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
    libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
    libc.malloc_trim(0)
    _state.update(retained=False, owner=None)


def release_retained_memory() -> None:
    """Hand the heap's free memory back to the kernel now (``malloc_trim``); the policy stays,
    so what the process frees from now on is kept again.  A no-op off glibc."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def make_room(need_bytes: int, budget_bytes: int) -> bool:
    """Hand the kept memory back when this process's resident memory plus ``need_bytes``
    would pass ``budget_bytes`` (a fragmented heap may grow past it); True when it did."""
    if not _state["retained"]:
        return False
    import psutil

    if psutil.Process().memory_info().rss + need_bytes <= budget_bytes:
        return False
    release_retained_memory()
    return True


def allocator() -> dict:
    """The host allocator, for the environment record: the C library, whether this
    process keeps the memory it frees (once a CPU backend has settled; never for
    Dask, whose work runs in other processes), and whether the machine reports
    free pages to a host."""
    libc = platform.libc_ver()
    reporting = PAGE_REPORTING / "page_reporting_order"
    return {
        "libc": " ".join(v for v in libc if v) or None,
        "freed_memory_kept": _state["retained"],
        # the host takes back memory this machine frees: fresh pages cost more than once
        "free_page_reporting": reporting.exists(),
    }


__all__ = [
    "retain_freed_memory",
    "restore_default_policy",
    "release_retained_memory",
    "make_room",
    "allocator",
    "PAGE_REPORTING",
]
