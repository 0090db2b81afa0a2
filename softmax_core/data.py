"""Data: the real MNIST files (loader and checksummed downloader) and synthetic data.

MNIST is found by path: ``--data-dir``, else ``$SOFTMAX_DATA_DIR``, else the
download cache ``~/.cache/softmax-bench/mnist`` (``softmax-bench data fetch``).
Every file is checked against the SHA-256 of its *decompressed* IDX bytes, which
holds for any faithful copy however it was compressed.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import tempfile
import urllib.request
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
    "train_images": IdxFile("train-images-idx3-ubyte", 2051, 60000,
                            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train_labels": IdxFile("train-labels-idx1-ubyte", 2049, 60000,
                            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "test_images": IdxFile("t10k-images-idx3-ubyte", 2051, 10000,
                           "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "test_labels": IdxFile("t10k-labels-idx1-ubyte", 2049, 10000,
                           "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}
MNIST_SHAPE = (28, 28)

#: Mirrors tried in order by :func:`fetch_mnist` (override with ``$SOFTMAX_MNIST_MIRRORS``,
#: a comma-separated list, or ``--mirror``).
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


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
        raw = _read_idx_bytes(root, spec.name)
        arrays[key] = _parse_idx(raw, spec, verify)
    X_train, X_test = (arrays[k].reshape(arrays[k].shape[0], -1) for k in ("train_images", "test_images"))
    return MNIST(
        X_train=(X_train / np.float32(255)).astype(np.float32, copy=False),
        y_train=arrays["train_labels"].astype(np.int64),
        X_test=(X_test / np.float32(255)).astype(np.float32, copy=False),
        y_test=arrays["test_labels"].astype(np.int64),
    )


def _read_idx_bytes(root: Path, name: str) -> bytes:
    gz, plain = root / f"{name}.gz", root / name
    if gz.is_file():
        try:
            with gzip.open(gz, "rb") as fh:
                return fh.read()
        except (OSError, EOFError) as exc:
            raise DataError(f"{gz} is not a readable gzip file ({exc}); fix: fetch it again") from exc
    if plain.is_file():
        return plain.read_bytes()
    raise DataError(f"{root} has neither {name}.gz nor {name}; fix: run 'softmax-bench data fetch' "
                    "or point --data-dir at the MNIST files")


def _parse_idx(raw: bytes, spec: IdxFile, verify: bool) -> np.ndarray:
    where = spec.name
    ndim = 3 if spec.magic == 2051 else 1
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise DataError(f"{where} is truncated: {len(raw)} bytes, shorter than its {header}-byte header")
    magic, *dims = struct.unpack(f">{1 + ndim}i", raw[:header])
    if magic != spec.magic:
        raise DataError(f"{where} has magic number {magic}, expected {spec.magic}: not this IDX file")
    if dims[0] != spec.count:
        raise DataError(f"{where} holds {dims[0]} items, expected {spec.count}")
    if ndim == 3 and tuple(dims[1:]) != MNIST_SHAPE:
        raise DataError(f"{where} has {dims[1]}x{dims[2]} images, expected 28x28")
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "too long"
        raise DataError(f"{where} is {state}: {len(raw)} bytes, expected {expected}; fix: fetch it again")
    if verify:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != spec.sha256:
            raise DataError(f"{where} is corrupted: SHA-256 {digest[:12]}... differs from the "
                            f"published {spec.sha256[:12]}...; fix: fetch it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def fetch_mnist(cache_dir: str | os.PathLike | None = None, mirrors=None, *,
                timeout: float = 60.0) -> Path:
    """Download the four MNIST files into ``cache_dir`` with checksum verification.

    Each file is tried from each mirror in turn (``https://`` or ``file://``
    URLs of a folder).  A download is written to a temporary file beside its
    target, verified against the SHA-256 of its decompressed content, and only
    then renamed into place: a failed or mismatched download leaves nothing.
    Files already present and valid are kept.  Returns the directory.
    """
    root = Path(cache_dir) if cache_dir is not None else default_data_dir()
    mirrors = list(mirrors) if mirrors else _env_mirrors() or list(DEFAULT_MIRRORS)
    for url in mirrors:
        if not url.startswith(("https://", "file://")):
            raise ValueError(f"mirror {url!r} is not an https:// or file:// URL; fix: use HTTPS")
    root.mkdir(parents=True, exist_ok=True)
    for spec in MNIST_FILES.values():
        target = root / f"{spec.name}.gz"
        if target.is_file() and _is_valid(target, spec):
            continue
        failures = []
        for base in mirrors:
            url = base.rstrip("/") + f"/{spec.name}.gz"
            try:
                _download_verified(url, target, spec, timeout)
                break
            except (OSError, DataError, ValueError) as exc:
                failures.append(f"{url}: {exc}")
        else:
            raise DataError(f"could not fetch {spec.name}.gz from any mirror: " + "; ".join(failures))
    return root


def _env_mirrors() -> list[str]:
    return [m.strip() for m in os.environ.get("SOFTMAX_MNIST_MIRRORS", "").split(",") if m.strip()]


def _is_valid(path: Path, spec: IdxFile) -> bool:
    try:
        with gzip.open(path, "rb") as fh:
            _parse_idx(fh.read(), spec, verify=True)
        return True
    except (OSError, EOFError, DataError):
        return False


def _download_verified(url: str, target: Path, spec: IdxFile, timeout: float) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{spec.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out)
        if not _is_valid(Path(tmp), spec):
            raise DataError("content does not match the published checksum")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
