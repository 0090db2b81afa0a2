"""Data: the real MNIST files (loader and checksummed downloader) and synthetic data.

MNIST is found by path: ``--data-dir``, else ``$SOFTMAX_DATA_DIR``, else the
download cache ``~/.cache/softmax-bench/mnist`` (``softmax-bench data fetch``).
Every file is checked against the SHA-256 of its *decompressed* IDX bytes, which
holds for any faithful copy however it was compressed.

Nothing here trusts a file's size: the IDX header is read and checked first, and
no more is read or inflated than that MNIST file can hold, so a gzip bomb or a
sparse 50 GB file fails in milliseconds with bounded memory.  Downloads are bounded
in time (per read, per file, per fetch) and size, never leave https, and leave no
partial file behind (SIGTERM included; a SIGKILLed fetch's is removed by the next).
The downloader is written here rather than taken from pooch: pooch checks hashes and
retries, but caps neither a file's size nor a fetch's total time, and verifies only
after the whole file is on disk; those bounds are this module's promise.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import signal
import socket
import struct
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """A data directory or file is missing, truncated, corrupted or not MNIST."""


@dataclass(frozen=True)
class IdxFile:
    name: str
    magic: int
    count: int
    sha256: str


MNIST_FILES = {
    "train_images": IdxFile(
        "train-images-idx3-ubyte",
        2051,
        60000,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    "train_labels": IdxFile(
        "train-labels-idx1-ubyte",
        2049,
        60000,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    "test_images": IdxFile(
        "t10k-images-idx3-ubyte",
        2051,
        10000,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    "test_labels": IdxFile(
        "t10k-labels-idx1-ubyte",
        2049,
        10000,
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
}
MNIST_SHAPE = (28, 28)
_CHUNK = 1 << 20  # bytes read (or inflated) at a time: memory stays bounded by it
_LOAD_FIX = "fix: replace it with a good copy ('softmax-bench data fetch' or --data-dir)"

#: Mirrors tried in order by :func:`fetch_mnist` (override with ``$SOFTMAX_MNIST_MIRRORS``,
#: a comma-separated list, or ``--mirror``).
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
#: URL schemes a mirror may use (the tests add http:// for their servers on 127.0.0.1).
MIRROR_SCHEMES = ("https://", "file://")


@dataclass(frozen=True)
class MNIST:
    """The four MNIST arrays on the host: X float32 pixels/255 [m, 784], y int64 [m]."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def default_data_dir() -> Path:
    """``$SOFTMAX_DATA_DIR``, else the download cache ``~/.cache/softmax-bench/mnist``."""
    env = os.environ.get("SOFTMAX_DATA_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "softmax-bench" / "mnist"


def load_mnist(data_dir: str | os.PathLike | None = None, *, verify: bool = True) -> MNIST:
    """Read the four standard MNIST IDX files (``.gz`` or raw) from ``data_dir``.

    Checks magic numbers, counts, image dimensions and lengths, then (unless
    ``verify=False``) the SHA-256 of the decompressed bytes.  Returns
    :class:`MNIST` with X = pixels / 255 as float32 and y as int64.

    Raises
    ------
    DataError (a ValueError)
        Missing directory or file, truncated or corrupted content, wrong magic.
    """
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if not root.is_dir():
        raise DataError(
            f"MNIST data directory {str(root)!r} does not exist; fix: pass --data-dir to a folder "
            "with the four IDX files, or run 'softmax-bench data fetch'"
        )
    arrays = {}
    for key, spec in MNIST_FILES.items():
        path = _find_idx(root, spec.name)
        try:
            arrays[key] = _read_idx(path, spec, verify, gz=path.suffix == ".gz", where=str(path))
        except DataError as exc:
            raise DataError(f"{exc}; {_LOAD_FIX}") from None
    X_train, X_test = (
        arrays[k].reshape(arrays[k].shape[0], -1) for k in ("train_images", "test_images")
    )
    return MNIST(
        X_train=(X_train / np.float32(255)).astype(np.float32, copy=False),
        y_train=arrays["train_labels"].astype(np.int64),
        X_test=(X_test / np.float32(255)).astype(np.float32, copy=False),
        y_test=arrays["test_labels"].astype(np.int64),
    )


def _find_idx(root: Path, name: str) -> Path:
    for path in (root / f"{name}.gz", root / name):
        if path.is_file():
            return path
    raise DataError(
        f"{root} has neither {name}.gz nor {name}; fix: run 'softmax-bench data fetch' "
        "or point --data-dir at the MNIST files"
    )


def _idx_layout(spec: IdxFile) -> tuple[int, int, int]:
    """(number of dimensions, header bytes, content bytes) of an MNIST IDX file."""
    ndim = 3 if spec.magic == 2051 else 1
    per_item = MNIST_SHAPE[0] * MNIST_SHAPE[1] if ndim == 3 else 1
    return ndim, 4 * (1 + ndim), spec.count * per_item


def _read_idx(path: Path, spec: IdxFile, verify: bool, *, gz: bool, where: str) -> np.ndarray:
    """The array in one IDX file, read header first and never past its legitimate end.

    Whatever the file holds, memory stays at the size of the real data: the header
    is checked before any content is read, the content is read (and hashed) in
    chunks, and one byte past it is enough to call the file too long.
    """
    try:
        with gzip.open(path, "rb") if gz else open(path, "rb") as fh:
            size = None if gz else os.fstat(fh.fileno()).st_size
            return _parse_idx(fh, size, spec, verify, where)
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: a corrupt deflate stream
        kind = "gzip file" if gz else "file"
        raise DataError(f"{where} is not a readable {kind} ({exc})") from None


def _parse_idx(fh, size: int | None, spec: IdxFile, verify: bool, where: str) -> np.ndarray:
    ndim, header, content = _idx_layout(spec)
    head = fh.read(4)
    if len(head) == 4 and (magic := struct.unpack(">i", head)[0]) != spec.magic:
        raise DataError(f"{where} has magic number {magic}, expected {spec.magic}: not {spec.name}")
    head += fh.read(header - len(head))
    if len(head) < header:
        raise DataError(
            f"{where} is truncated: {len(head)} bytes, shorter than its {header}-byte header"
        )
    dims = struct.unpack(f">{ndim}i", head[4:])
    if dims[0] != spec.count:
        raise DataError(f"{where} holds {dims[0]} items, expected {spec.count}")
    if ndim == 3 and dims[1:] != MNIST_SHAPE:
        raise DataError(f"{where} has {dims[1]}x{dims[2]} images, expected 28x28")
    expected = header + content
    if size is not None and size != expected:  # a raw file: its size is known without reading
        state = "truncated" if size < expected else "too long"
        raise DataError(f"{where} is {state}: {size} bytes, expected {expected}")
    data, sha = np.empty(content, dtype=np.uint8), hashlib.sha256(head)
    view, got = memoryview(data), 0
    while got < content and (n := fh.readinto(view[got : got + _CHUNK])):
        sha.update(view[got : got + n])
        got += n
    if got < content:
        raise DataError(f"{where} is truncated: {header + got} bytes, expected {expected}")
    if fh.read(1):
        raise DataError(
            f"{where} is too long: more than {expected} bytes, expected exactly {expected}"
        )
    if verify and (digest := sha.hexdigest()) != spec.sha256:
        raise DataError(
            f"{where} is corrupted: SHA-256 {digest[:12]}... differs from the "
            f"published {spec.sha256[:12]}..."
        )
    if ndim == 1 and content and data.max() > 9:  # only reachable with verify=False
        raise DataError(f"{where} has labels outside 0..9 (up to {data.max()}): not MNIST labels")
    return data.reshape(dims)


def _max_download(spec: IdxFile) -> int:
    """The most bytes a faithful ``.gz`` of this file can take.

    Even stored (uncompressed) deflate adds only 5 bytes per 64 KiB block, and the
    gzip header at most a file name or comment: 1 % plus 64 KiB is ample.
    """
    _, header, content = _idx_layout(spec)
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
            raise ValueError(f"mirror {url!r} is not an https:// or file:// URL; fix: use HTTPS")
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(root)
    deadline = time.monotonic() + total_timeout
    limits = f"{timeout:g} s per read, {file_timeout:g} s per file, {total_timeout:g} s in all"
    with _sigterm_unwinds():
        for spec in MNIST_FILES.values():
            target = root / f"{spec.name}.gz"
            if target.is_file() and _is_valid(target, spec):
                continue
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
                    "or copy the files in by hand"
                )
    return root


def _env_mirrors() -> list[str]:
    return [m.strip() for m in os.environ.get("SOFTMAX_MNIST_MIRRORS", "").split(",") if m.strip()]


def _is_valid(path: Path, spec: IdxFile) -> bool:
    try:
        _read_idx(path, spec, verify=True, gz=True, where=str(path))
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
            _copy_bounded(url, out, _max_download(spec), timeout, deadline)
        _read_idx(Path(tmp), spec, verify=True, gz=True, where="the download")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _copy_bounded(url: str, out, limit: int, timeout: float, deadline: float) -> None:
    """Copy ``url`` into ``out``: at most ``limit`` bytes, and done by ``deadline``
    (time.monotonic)."""
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


def make_synthetic(m: int, n: int, k: int, seed: int = 0, dtype=np.float32):
    """Synthetic classification data of any shape: ``(X [m, n], y [m])`` on the host.

    Each class has a random centre; X is centre plus unit noise, scaled by
    1/sqrt(n) so that logits stay O(1) for any n.  y is int64 in 0..k-1.
    """
    for name, v, least in (("m", m, 1), ("n", n, 1), ("k", k, 2)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {v!r}")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=m, dtype=np.int64)
    centres = rng.standard_normal((k, n), dtype=np.float32)
    X = centres[y] + rng.standard_normal((m, n), dtype=np.float32)
    X *= np.float32(1 / np.sqrt(n))
    return X.astype(dtype, copy=False), y
