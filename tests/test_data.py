"""MNIST loader and downloader on the real files, and synthetic data.

Broken copies are built in ``tmp_path``: a folder of symlinks to the real files
in which one file is replaced (never written through the link).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from softmax_core import DataError, fetch_mnist, load_mnist, make_synthetic
from softmax_core.data import MNIST_FILES

MNIST_FILE_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = MNIST_FILE_NAMES


# --------------------------------------------------------------------------- helpers

def real_bytes(mnist_dir: Path, name: str) -> bytes:
    """The decompressed IDX bytes of one real file."""
    gz = mnist_dir / f"{name}.gz"
    return gzip.decompress(gz.read_bytes()) if gz.is_file() else (mnist_dir / name).read_bytes()


def remove(folder: Path, name: str) -> None:
    """Remove both spellings of ``name`` (unlinking symlinks, never touching their targets)."""
    for p in (folder / f"{name}.gz", folder / name):
        if p.is_symlink() or p.exists():
            p.unlink()


def put(folder: Path, name: str, raw: bytes, *, compress: bool = True) -> Path:
    """Replace ``name`` in ``folder`` by ``raw`` IDX bytes (gzipped unless ``compress=False``)."""
    remove(folder, name)
    path = folder / (f"{name}.gz" if compress else name)
    path.write_bytes(gzip.compress(raw, compresslevel=1) if compress else raw)
    return path


def linked_copy(mnist_dir: Path, folder: Path) -> Path:
    """``folder`` with a symlink to each real MNIST file."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILE_NAMES:
        src = mnist_dir / f"{name}.gz"
        src = src if src.is_file() else mnist_dir / name
        (folder / src.name).symlink_to(src.resolve())
    return folder


def header(magic: int, *dims: int) -> bytes:
    return struct.pack(f">{1 + len(dims)}i", magic, *dims)


def with_byte_changed(raw: bytes, offset: int) -> bytes:
    b = bytearray(raw)
    b[offset] = (b[offset] + 1) % 10   # still a valid digit label / pixel value
    return bytes(b)


@pytest.fixture
def mnist_copy(mnist_dir, tmp_path) -> Path:
    return linked_copy(mnist_dir, tmp_path / "mnist")


# --------------------------------------------------------------------------- facts of the real data

def test_mnist_shapes_and_dtypes(mnist):
    assert mnist.X_train.shape == (60000, 784)
    assert mnist.X_test.shape == (10000, 784)
    assert mnist.y_train.shape == (60000,)
    assert mnist.y_test.shape == (10000,)
    assert mnist.X_train.dtype == np.float32 and mnist.X_test.dtype == np.float32
    assert mnist.y_train.dtype == np.int64 and mnist.y_test.dtype == np.int64


def test_mnist_pixels_scaled_to_unit_interval_and_labels_are_digits(mnist):
    for X in (mnist.X_train, mnist.X_test):
        assert X.min() == 0.0 and X.max() == 1.0          # pixels 0 and 255 both occur
    # pixels / 255: every value is a multiple of 1/255
    np.testing.assert_allclose(mnist.X_train[:100] * 255, np.round(mnist.X_train[:100] * 255), atol=1e-4)
    for y in (mnist.y_train, mnist.y_test):
        assert set(np.unique(y).tolist()) == set(range(10))


def test_mnist_known_facts(mnist):
    assert mnist.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    X = mnist.X_train.astype(np.float64)
    assert math.isclose(np.linalg.norm(X[:10]), 27.892084, rel_tol=1e-6)
    assert math.isclose(np.linalg.norm(X[:1000]), 293.0717, rel_tol=1e-6)


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


# --------------------------------------------------------------------------- loader errors

def test_load_missing_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_mnist(tmp_path / "no-such-dir")


@pytest.mark.parametrize("name", [TRAIN_IMAGES, TEST_LABELS])
def test_load_missing_file(mnist_copy, name):
    remove(mnist_copy, name)
    with pytest.raises(DataError, match=f"neither {name}.gz nor {name}"):
        load_mnist(mnist_copy)


def test_load_wrong_magic_number(mnist_copy, mnist_dir):
    # a labels file where the training images belong
    put(mnist_copy, TRAIN_IMAGES, real_bytes(mnist_dir, TRAIN_LABELS))
    with pytest.raises(DataError, match=f"{TRAIN_IMAGES} has magic number 2049, expected 2051"):
        load_mnist(mnist_copy)


def test_load_truncated_content(mnist_copy):
    put(mnist_copy, TRAIN_IMAGES, header(2051, 60000, 28, 28) + bytes(100))
    with pytest.raises(DataError, match=f"{TRAIN_IMAGES} is truncated: 116 bytes, expected 47040016"):
        load_mnist(mnist_copy)


def test_load_truncated_header(mnist_copy):
    put(mnist_copy, TRAIN_IMAGES, header(2051, 60000)[:6])
    with pytest.raises(DataError, match="truncated.*header"):
        load_mnist(mnist_copy)


def test_load_content_too_long(mnist_copy, mnist_dir):
    put(mnist_copy, TRAIN_LABELS, real_bytes(mnist_dir, TRAIN_LABELS) + b"\x00")
    with pytest.raises(DataError, match=f"{TRAIN_LABELS} is too long"):
        load_mnist(mnist_copy)


def test_load_corrupted_byte_fails_checksum(mnist_copy, mnist_dir):
    put(mnist_copy, TRAIN_LABELS, with_byte_changed(real_bytes(mnist_dir, TRAIN_LABELS), 8 + 100))
    with pytest.raises(DataError, match=f"{TRAIN_LABELS} is corrupted: SHA-256"):
        load_mnist(mnist_copy)


def test_load_verify_false_skips_only_the_checksum(mnist_copy, mnist_dir, mnist):
    put(mnist_copy, TRAIN_LABELS, with_byte_changed(real_bytes(mnist_dir, TRAIN_LABELS), 8 + 100))
    data = load_mnist(mnist_copy, verify=False)
    assert data.y_train[100] == (mnist.y_train[100] + 1) % 10
    np.testing.assert_array_equal(np.delete(data.y_train, 100), np.delete(mnist.y_train, 100))


def test_load_wrong_count_in_header(mnist_copy, mnist_dir):
    raw = real_bytes(mnist_dir, TRAIN_LABELS)
    put(mnist_copy, TRAIN_LABELS, header(2049, 59999) + raw[8:])
    with pytest.raises(DataError, match=f"{TRAIN_LABELS} holds 59999 items, expected 60000"):
        load_mnist(mnist_copy)


def test_load_test_labels_in_place_of_training_labels(mnist_copy, mnist_dir):
    put(mnist_copy, TRAIN_LABELS, real_bytes(mnist_dir, TEST_LABELS))
    with pytest.raises(DataError, match="holds 10000 items, expected 60000"):
        load_mnist(mnist_copy)


def test_load_wrong_image_size(mnist_copy):
    put(mnist_copy, TRAIN_IMAGES, header(2051, 60000, 27, 28))
    with pytest.raises(DataError, match="27x28 images, expected 28x28"):
        load_mnist(mnist_copy)


def test_load_non_gzip_gz(mnist_copy):
    (mnist_copy / f"{TRAIN_IMAGES}.gz").unlink()
    (mnist_copy / f"{TRAIN_IMAGES}.gz").write_bytes(b"this is not gzip data at all")
    with pytest.raises(DataError, match=f"{TRAIN_IMAGES}.gz is not a readable gzip file"):
        load_mnist(mnist_copy)


def test_load_cut_off_gz(mnist_copy, mnist_dir):
    data = (mnist_dir / f"{TRAIN_IMAGES}.gz").read_bytes()
    (mnist_copy / f"{TRAIN_IMAGES}.gz").unlink()
    (mnist_copy / f"{TRAIN_IMAGES}.gz").write_bytes(data[: len(data) // 100])
    with pytest.raises(DataError, match=f"{TRAIN_IMAGES}.gz is not a readable gzip file"):
        load_mnist(mnist_copy)


def test_load_raw_uncompressed_files(mnist_copy, mnist_dir, mnist):
    for name in (TRAIN_LABELS, TEST_IMAGES, TEST_LABELS):
        put(mnist_copy, name, real_bytes(mnist_dir, name), compress=False)
    assert sorted(p.name for p in mnist_copy.iterdir()) == sorted(
        [f"{TRAIN_IMAGES}.gz", TRAIN_LABELS, TEST_IMAGES, TEST_LABELS])
    data = load_mnist(mnist_copy)
    for field in ("X_train", "y_train", "X_test", "y_test"):
        np.testing.assert_array_equal(getattr(data, field), getattr(mnist, field), err_msg=field)


def test_load_raw_file_is_checked_too(mnist_copy, mnist_dir):
    put(mnist_copy, TRAIN_LABELS, with_byte_changed(real_bytes(mnist_dir, TRAIN_LABELS), 8), compress=False)
    with pytest.raises(DataError, match=f"{TRAIN_LABELS} is corrupted"):
        load_mnist(mnist_copy)


# --------------------------------------------------------------------------- fetch_mnist

def sha_of_gz(path: Path) -> str:
    return hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()


def leftovers(folder: Path) -> list[str]:
    """Temporary or partial files a download might have left."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".part")]


@pytest.fixture
def no_env_mirrors(monkeypatch):
    monkeypatch.delenv("SOFTMAX_MNIST_MIRRORS", raising=False)


def test_fetch_from_file_mirror_writes_all_four_and_they_load(mnist_dir, tmp_path, mnist, no_env_mirrors):
    cache = tmp_path / "cache" / "nested"
    assert fetch_mnist(cache, [mnist_dir.as_uri()]) == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in MNIST_FILE_NAMES)
    data = load_mnist(cache)
    np.testing.assert_array_equal(data.y_train, mnist.y_train)
    np.testing.assert_array_equal(data.X_test, mnist.X_test)


def test_fetch_from_corrupted_mirror_leaves_nothing_and_names_the_file(mnist_dir, tmp_path, no_env_mirrors):
    mirror = linked_copy(mnist_dir, tmp_path / "mirror")
    put(mirror, TRAIN_LABELS, with_byte_changed(real_bytes(mnist_dir, TRAIN_LABELS), 8 + 5))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=f"{TRAIN_LABELS}.gz"):
        fetch_mnist(cache, [mirror.as_uri()])
    assert not (cache / f"{TRAIN_LABELS}.gz").exists()
    assert not (cache / TRAIN_LABELS).exists()
    assert leftovers(cache) == []
    # what did arrive is complete and verified
    for p in cache.iterdir():
        assert p.name == f"{TRAIN_IMAGES}.gz"
        assert sha_of_gz(p) == MNIST_FILES["train_images"].sha256


def test_fetch_non_gzip_on_mirror_leaves_nothing(mnist_dir, tmp_path, no_env_mirrors):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / f"{TRAIN_IMAGES}.gz").write_bytes(b"<html>404</html>")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=f"{TRAIN_IMAGES}.gz"):
        fetch_mnist(cache, [mirror.as_uri()])
    assert list(cache.iterdir()) == []


def test_fetch_falls_through_bad_mirrors_to_a_good_one(mnist_dir, tmp_path, no_env_mirrors):
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = linked_copy(mnist_dir, tmp_path / "corrupt")
    put(corrupt, TEST_LABELS, with_byte_changed(real_bytes(mnist_dir, TEST_LABELS), 8 + 3))
    cache = tmp_path / "cache"
    fetch_mnist(cache, [empty.as_uri(), corrupt.as_uri(), mnist_dir.as_uri() + "/"])
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in MNIST_FILE_NAMES)
    for key, spec in MNIST_FILES.items():
        if key != "train_images":       # the 47 MB one is verified by the fetch itself
            assert sha_of_gz(cache / f"{spec.name}.gz") == spec.sha256, key


@pytest.mark.parametrize("url", ["http://example.com/mnist/", "ftp://example.com/mnist/", "/some/local/dir"])
def test_fetch_refuses_non_https_mirrors(tmp_path, url, no_env_mirrors):
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="not an https:// or file:// URL"):
        fetch_mnist(cache, [url])
    assert not cache.exists()


def test_fetch_keeps_valid_files_without_downloading(mnist_dir, tmp_path, no_env_mirrors):
    cache = linked_copy(mnist_dir, tmp_path / "cache")
    empty = tmp_path / "empty"
    empty.mkdir()
    before = {p.name: os.readlink(p) for p in cache.iterdir()}
    assert fetch_mnist(cache, [empty.as_uri()]) == cache
    assert {p.name: os.readlink(p) for p in cache.iterdir()} == before   # nothing replaced


def test_fetch_replaces_only_an_invalid_cached_file(mnist_dir, tmp_path, no_env_mirrors):
    cache = linked_copy(mnist_dir, tmp_path / "cache")
    put(cache, TEST_LABELS, with_byte_changed(real_bytes(mnist_dir, TEST_LABELS), 8 + 1))
    fetch_mnist(cache, [mnist_dir.as_uri()])
    assert not (cache / f"{TEST_LABELS}.gz").is_symlink()
    assert sha_of_gz(cache / f"{TEST_LABELS}.gz") == MNIST_FILES["test_labels"].sha256
    assert all((cache / f"{n}.gz").is_symlink() for n in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES))
    assert leftovers(cache) == []


def test_fetch_reads_mirrors_from_environment(mnist_dir, tmp_path, monkeypatch):
    cache = linked_copy(mnist_dir, tmp_path / "cache")
    remove(cache, TEST_LABELS)
    monkeypatch.setenv("SOFTMAX_MNIST_MIRRORS", f" {tmp_path.as_uri()}/nowhere , {mnist_dir.as_uri()} ")
    fetch_mnist(cache)
    assert sha_of_gz(cache / f"{TEST_LABELS}.gz") == MNIST_FILES["test_labels"].sha256


# --------------------------------------------------------------------------- synthetic data

@pytest.mark.parametrize("m,n,k", [(1, 1, 2), (50, 7, 3), (300, 784, 10)])
def test_make_synthetic_shapes_dtype_labels(m, n, k):
    X, y = make_synthetic(m, n, k, seed=3)
    assert X.shape == (m, n) and y.shape == (m,)
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert y.min() >= 0 and y.max() < k
    assert np.all(np.isfinite(X))


def test_make_synthetic_dtype_option_and_label_coverage():
    X, y = make_synthetic(1000, 5, 4, dtype=np.float64)
    assert X.dtype == np.float64
    assert set(np.unique(y).tolist()) == {0, 1, 2, 3}


def test_make_synthetic_rows_have_unit_order_scale():
    # centre + noise, each ~N(0, 1) per coordinate, scaled by 1/sqrt(n): E|x|^2 = 2
    X, _ = make_synthetic(2000, 400, 5, seed=0)
    assert 1.5 < float(np.mean(np.sum(X.astype(np.float64) ** 2, axis=1))) < 2.5


def test_make_synthetic_is_deterministic_by_seed():
    X1, y1 = make_synthetic(40, 6, 3, seed=11)
    X2, y2 = make_synthetic(40, 6, 3, seed=11)
    X3, y3 = make_synthetic(40, 6, 3, seed=12)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(X1, X3)
    assert not np.array_equal(y1, y3)


@pytest.mark.parametrize("args,name", [
    ((0, 5, 3), "m"), ((-1, 5, 3), "m"), ((2.5, 5, 3), "m"), ((True, 5, 3), "m"),
    ((10, 0, 3), "n"), ((10, "5", 3), "n"),
    ((10, 5, 1), "k"), ((10, 5, 0), "k"), ((10, 5, 3.0), "k"),
])
def test_make_synthetic_rejects_bad_arguments(args, name):
    with pytest.raises(ValueError, match=rf"^{name} must be an integer >= "):
        make_synthetic(*args)
