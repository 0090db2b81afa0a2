"""Small file helpers: atomic writes, so no reader ever sees half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        # a name's first 64 characters: a file's own name may take all 255 the system allows
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:64]}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            usual_mode(fh.fileno())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.strerror:  # said of the file asked for, not tmp
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


def usual_mode(fd: int) -> None:
    """Give a file made by mkstemp (0600) the mode a plain open gives: 0666 less the umask (a
    result file, a data file, is for every user of the machine)."""
    if hasattr(os, "fchmod"):  # POSIX; Windows' files have no such mode
        os.fchmod(fd, 0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
