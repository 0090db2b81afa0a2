"""MNIST on the host: the loader of the four IDX files, each checked as it is read.

MNIST is found by path: ``--data-dir``, else ``$SOFTMAX_DATA_DIR``, else the
download cache ``~/.cache/softmax-bench/mnist`` (``softmax-bench data fetch``,
:mod:`.download`).  Every file is checked against the SHA-256 of its *decompressed*
IDX bytes, which holds for any faithful copy however it was compressed.

Nothing here trusts a file's size: the IDX header is read and checked first, and
no more is read or inflated than that MNIST file can hold, so a gzip bomb or a
sparse 50 GB file fails in milliseconds with bounded memory.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError


class DataError(InputError):
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
            f"MNIST data directory {str(root)!r} "
            + ("is not a folder" if root.exists() else "does not exist")
            + "; fix: pass --data-dir to a folder "
            "with the four IDX files, or run 'softmax-bench data fetch'"
        )
    arrays = {}
    for key, spec in MNIST_FILES.items():
        path = _find_idx(root, spec.name)
        try:
            arrays[key] = read_idx(path, spec, verify, gz=path.suffix == ".gz", where=str(path))
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
    candidates = (root / f"{name}.gz", root / name)
    for path in candidates:
        if path.is_file():
            return path
    odd = next(filter(os.path.lexists, candidates), None)  # a folder, a broken link...
    if odd is not None:
        raise DataError(
            f"{odd} is not a file; fix: move it away and run 'softmax-bench data fetch', or "
            "point --data-dir at the MNIST files"
        )
    raise DataError(
        f"{root} has neither {name}.gz nor {name}; fix: run 'softmax-bench data fetch' "
        "or point --data-dir at the MNIST files"
    )


def idx_layout(spec: IdxFile) -> tuple[int, int, int]:
    """(number of dimensions, header bytes, content bytes) of an MNIST IDX file."""
    ndim = 3 if spec.magic == 2051 else 1
    per_item = MNIST_SHAPE[0] * MNIST_SHAPE[1] if ndim == 3 else 1
    return ndim, 4 * (1 + ndim), spec.count * per_item


def read_idx(path: Path, spec: IdxFile, verify: bool, *, gz: bool, where: str) -> np.ndarray:
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
    ndim, header, content = idx_layout(spec)
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
