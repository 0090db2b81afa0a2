"""Host memory in a defined state: glibc keeps what a measured call frees.

A call that allocates a large array (the naive Jacobian: 3-4 GB at k = 1000)
gets it, under glibc's defaults, as fresh pages from the kernel (``mmap``)
every time, and hands them back (``munmap``) when it returns.  What the next
call then pays to fault those pages in again is not a property of the call:
the kernel zeroes every page it hands out, and a virtual machine whose host
takes back the memory its guest frees (virtio *free page reporting*) pays the
host for each page again once the host has had it back.  When the host gets
there depends on a kernel worker's timer, not on the call, so the same call
reads fast or slow at random.

So the measuring process keeps what it frees: :func:`retain_freed_memory`
makes glibc serve the main thread's allocations (NumPy's arrays here; a worker
thread's arena still maps fresh pages) from the process's own heap and never
give freed memory back.  After the warm-up every call finds its memory already
mapped, as CuPy's memory pool and torch's caching allocator do on a GPU; the
call still allocates and writes its Jacobian every time (that cost, O(k²n)
bytes written, is the method's), and the cost of fresh pages is the cold first
call's (``time_first_s``) when the process has handed its kept memory back
before it (the sweep does so right before each point's cold call).  A
measurement session (:mod:`softmax_core.measure.session`) sets this policy and
restores glibc's defaults when it ends.

Other C libraries (musl, macOS) are left as they are; :func:`allocator`
says which state the process is in, and the environment record keeps it.
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
    """Make glibc keep the memory this process frees, for its next allocations.

    No ``mmap`` for large blocks (they come from the heap) and no trimming of
    the heap (a trim threshold of ``SIZE_MAX``: mallopt takes an int, and -1 is
    what glibc reads as that).  In force until :func:`restore_default_policy` is
    called by the same ``owner`` (the one that set it);
    :func:`release_retained_memory` hands back what is free at that moment.
    True when in force; False where the C library is not glibc or refuses
    (nothing is left changed then).
    """
    libc = _glibc()
    if libc is None:
        return False
    if not _state["retained"]:
        if libc.mallopt(_M_MMAP_MAX, 0) != 1:
            return False
        if libc.mallopt(_M_TRIM_THRESHOLD, -1) != 1:
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
    """Hand the free memory of the heap back to the kernel now (``malloc_trim``).

    The process keeps :func:`retain_freed_memory`'s policy: what it frees from
    now on is kept again.  A no-op off glibc.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def make_room(need_bytes: int, budget_bytes: int) -> bool:
    """Hand the kept memory back when this process's resident memory plus ``need_bytes``
    would pass ``budget_bytes``; True when it did.

    Kept memory is reused by the next allocations, but a heap holding an 8 GB free
    block with a small array placed in front of it may not fit a 10 GB one there
    and grow instead: checked before each point, the process's resident memory
    stays within the budget however the heap is cut up.  The point then starts
    from fresh pages (its cold call and warm-up fault them in again).
    """
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
