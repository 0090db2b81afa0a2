"""The MNIST downloader: ``softmax-bench data fetch``, checksummed and bounded.

Downloads are bounded in time (per read, per file, per fetch) and size, never leave
https, and leave no partial file behind (SIGTERM included; a SIGKILLed fetch's is
removed by the next).  Each file is verified as the loader reads it (:mod:`.mnist`).
The downloader is written here rather than taken from pooch: pooch checks hashes and
retries, but caps neither a file's size nor a fetch's total time, and verifies only
after the whole file is on disk; those bounds are this module's promise.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import stat
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from ..errors import InputError
from ..fileio import usual_mode
from .mnist import _CHUNK, MNIST_FILES, DataError, IdxFile, default_data_dir, idx_layout, read_idx

#: Mirrors tried in order by :func:`fetch_mnist` (override with ``$SOFTMAX_MNIST_MIRRORS``,
#: a comma-separated list, or ``--mirror``).
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
#: URL schemes a mirror may use (the tests add http:// for their servers on 127.0.0.1).
MIRROR_SCHEMES = ("https://", "file://")


def _max_download(spec: IdxFile) -> int:
    """The most bytes a faithful ``.gz`` of this file can take.

    Even stored (uncompressed) deflate adds only 5 bytes per 64 KiB block, and the
    gzip header at most a file name or comment: 1 % plus 64 KiB is ample.
    """
    _, header, content = idx_layout(spec)
    return header + content + (header + content) // 100 + (64 << 10)


def fetch_mnist(
    cache_dir: str | os.PathLike | None = None,
    mirrors=None,
    *,
    timeout: float = 60.0,
    file_timeout: float = 600.0,
    total_timeout: float = 1800.0,
) -> Path:
    """Download the four MNIST files into ``cache_dir`` with checksum verification.

    Each file is tried from each mirror in turn (``https://`` or ``file://``
    URLs of a folder).  A download is written to a temporary file beside its
    target, verified against the SHA-256 of its decompressed content, and only
    then renamed into place: a failed or mismatched download leaves nothing.
    Files already present and valid are kept.  Returns the directory.

    Bounds: ``timeout`` seconds per read, ``file_timeout`` per download of one
    file from one mirror, ``total_timeout`` for the whole fetch; a download larger
    than the file can be is cut off; a redirect from https to another scheme is
    refused.  Partial files of earlier, killed fetches in ``cache_dir`` are removed.
    """
    root = Path(cache_dir) if cache_dir is not None else default_data_dir()
    mirrors = list(mirrors) if mirrors else _env_mirrors() or list(DEFAULT_MIRRORS)
    for url in mirrors:
        if not url.startswith(MIRROR_SCHEMES):
            raise InputError(
                f"mirror {url!r} is not an https:// or file:// URL; fix: give https://HOST/PATH "
                "or file:///ABSOLUTE/FOLDER"
            )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot make the folder {root} ({exc.strerror}); fix: choose a folder you can write"
            " (--dir)"
        ) from None
    _remove_stale_parts(root)
    deadline = time.monotonic() + total_timeout
    limits = f"{timeout:g} s per read, {file_timeout:g} s per file, {total_timeout:g} s in all"
    with _sigterm_unwinds():
        for spec in MNIST_FILES.values():
            target = root / f"{spec.name}.gz"
            if target.is_file() and _is_valid(target, spec):
                continue
            if target.exists() and not _gzip(target):  # not a damaged copy: someone's file
                raise DataError(
                    f"{target} exists and is not an MNIST file; fix: move it away, or choose "
                    "another --dir"
                )
            failures = []
            for base in mirrors:
                url = base.rstrip("/") + f"/{spec.name}.gz"
                try:
                    _download_verified(
                        url, target, spec, timeout, min(time.monotonic() + file_timeout, deadline)
                    )
                    break
                except (OSError, DataError, ValueError, http.client.HTTPException) as exc:
                    failures.append(f"{url}: {exc}")
                if time.monotonic() >= deadline:
                    raise DataError(
                        f"could not fetch {spec.name}.gz within the overall deadline of "
                        f"{total_timeout:g} s: "
                        + "; ".join(failures)
                        + f"; fix: try a faster mirror (--mirror) or longer limits ({limits})"
                    )
            else:
                raise DataError(
                    f"could not fetch {spec.name}.gz from any mirror: "
                    + "; ".join(failures)
                    + f"; fix: try another mirror (--mirror URL) or longer limits ({limits}), "
                    f"or copy the four .gz files into {root} by hand"
                )
    return root


def _gzip(path: Path) -> bool:
    """Whether ``path`` is a regular file that starts as gzip does (a download of ours, if
    damaged, is one)."""
    try:
        with open(path, "rb") as fh:
            return path.is_file() and fh.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def _env_mirrors() -> list[str]:
    return [m.strip() for m in os.environ.get("SOFTMAX_MNIST_MIRRORS", "").split(",") if m.strip()]


def _is_valid(path: Path, spec: IdxFile) -> bool:
    try:
        read_idx(path, spec, verify=True, gz=True, where=str(path))
        return True
    except DataError:
        return False


def _download_verified(
    url: str, target: Path, spec: IdxFile, timeout: float, deadline: float
) -> None:
    # The process id in the name tells a later fetch whether this file's owner still runs.
    fd, tmp = tempfile.mkstemp(
        prefix=f".{spec.name}.{os.getpid()}.", suffix=".part", dir=target.parent
    )
    try:
        with os.fdopen(fd, "wb") as out:
            usual_mode(out.fileno())
            _copy_bounded(url, out, _max_download(spec), timeout, deadline)
        read_idx(Path(tmp), spec, verify=True, gz=True, where="the download")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _copy_bounded(url: str, out, limit: int, timeout: float, deadline: float) -> None:
    """Copy ``url`` into ``out``: at most ``limit`` bytes, and done by ``deadline``
    (time.monotonic)."""
    if url.startswith("file://"):  # a FIFO or a device would block the read past any deadline
        local = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
        if local.exists() and not stat.S_ISREG(local.stat().st_mode):
            raise DataError(f"{local} is not a regular file")
    watchdog = _Watchdog(deadline)
    try:
        with _opener(watchdog).open(url, timeout=timeout) as resp:
            announced = resp.headers.get("Content-Length", "")
            if announced.isdigit() and int(announced) > limit:
                raise DataError(
                    f"the mirror announces {announced} bytes, "
                    f"more than the {limit} this file can take"
                )
            size = 0
            # read1: whatever has arrived, so that the deadline is checked even on a trickle
            while time.monotonic() < deadline and (chunk := resp.read1(_CHUNK)):
                size += len(chunk)
                if size > limit:
                    raise DataError(
                        f"the download is more than {limit} bytes, more than this file can be"
                    )
                out.write(chunk)
    except (OSError, http.client.HTTPException):
        if not watchdog.fired:  # else: the watchdog shut the socket
            raise
    finally:
        watchdog.cancel()
    if watchdog.fired or time.monotonic() >= deadline:
        raise DataError("the download was not complete by its deadline")


class _Watchdog(threading.Timer):
    """Shuts a download's sockets at its deadline (``cancel()`` when done).

    A socket timeout bounds each read, not their sum: a mirror that sends a byte a
    second, in its body or its headers, would otherwise never end.
    """

    def __init__(self, deadline: float):
        super().__init__(max(0.0, deadline - time.monotonic()), self._fire)
        self.daemon, self.fired, self._socks = True, False, []
        self.start()

    def watch(self, sock: socket.socket) -> None:
        self._socks.append(sock)
        if self.fired:  # _fire sets fired before it looks at the list: no socket is missed
            _shut(sock)

    def _fire(self) -> None:
        self.fired = True
        for sock in list(self._socks):
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:  # the plain socket's shutdown: wakes a blocked read, even one inside TLS
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _opener(watchdog: _Watchdog) -> urllib.request.OpenerDirector:
    """A urllib opener whose connections ``watchdog`` can shut, refusing https -> http redirects."""

    def watched(base):
        class Watched(base):
            def connect(self):
                super().connect()
                watchdog.watch(self.sock)

        return Watched

    class Handler(urllib.request.HTTPSHandler, urllib.request.HTTPHandler):
        def https_open(self, req):
            return self.do_open(watched(http.client.HTTPSConnection), req)

        def http_open(self, req):
            return self.do_open(watched(http.client.HTTPConnection), req)

    return urllib.request.build_opener(Handler, _NoDowngradeRedirect)


class _NoDowngradeRedirect(urllib.request.HTTPRedirectHandler):
    """Follows redirects, except from https to any other scheme (plain http, ftp)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if (
            urllib.parse.urlsplit(req.full_url).scheme
            == "https"
            != urllib.parse.urlsplit(newurl).scheme
        ):
            if fp is not None:
                fp.close()
            raise DataError(f"refused the redirect from https to {newurl} (only https is trusted)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _remove_stale_parts(root: Path) -> None:
    """Remove partial downloads left by fetches that were killed (SIGKILL, power loss).

    They are named ``.<file>.<pid>.<random>.part``; one whose process no longer runs
    (or whose name has no process id) is stale.  A running fetch's stay.
    """
    names = {spec.name for spec in MNIST_FILES.values()}
    for path in root.glob(".*.part"):
        name, _, rest = path.name[1:].partition(".")
        pid = rest.split(".")[0]
        if name in names and not (pid.isdigit() and _is_running(int(pid))):
            path.unlink(missing_ok=True)


def _is_running(pid: int) -> bool:
    if os.name != "posix":  # os.kill would end the process there: assume it runs
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class _Terminated(BaseException):
    """SIGTERM during a fetch: unwinds through ``finally`` so that partial files go."""


@contextlib.contextmanager
def _sigterm_unwinds():
    """While fetching, SIGTERM unwinds the stack (removing partial files), then ends the process
    as before.

    Only in the main thread (where Python runs signal handlers) and where SIGTERM has
    its default action; elsewhere the next fetch's stale-file cleanup covers it.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
    ):
        yield
        return

    def handler(signum, frame):
        raise _Terminated

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)  # ends the process as SIGTERM always did
        raise SystemExit(128 + signal.SIGTERM) from None  # only if the signal is blocked
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
