"""MNIST loader and downloader on the real files, and synthetic data.

Broken copies are built in ``tmp_path``: a folder of symlinks to the real files
in which one file is replaced (never written through the link).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest

from softmax_core import DataError, fetch_mnist, load_mnist, make_synthetic
from softmax_core.data import MNIST_FILES
from softmax_core.data import download as data_module

REPO_ROOT = Path(__file__).resolve().parent.parent
MNIST_FILE_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
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
    b[offset] = (b[offset] + 1) % 10  # still a valid digit label / pixel value
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
        assert X.min() == 0.0 and X.max() == 1.0  # pixels 0 and 255 both occur
    # pixels / 255: every value is a multiple of 1/255
    np.testing.assert_allclose(
        mnist.X_train[:100] * 255, np.round(mnist.X_train[:100] * 255), atol=1e-4
    )
    for y in (mnist.y_train, mnist.y_test):
        assert set(np.unique(y).tolist()) == set(range(10))


def test_mnist_known_facts(mnist):
    assert mnist.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    X = mnist.X_train[:1000].astype(np.float64)
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


@pytest.mark.parametrize("odd", ["folder", "broken link"])
def test_load_a_folder_or_a_broken_link_where_a_file_belongs(mnist_copy, odd):
    remove(mnist_copy, TEST_LABELS)
    path = mnist_copy / f"{TEST_LABELS}.gz"
    path.mkdir() if odd == "folder" else path.symlink_to(mnist_copy / "nowhere")
    with pytest.raises(DataError, match=f"{TEST_LABELS}.gz is not a file; fix: move it away"):
        load_mnist(mnist_copy)


def test_load_wrong_magic_number(mnist_copy, mnist_dir):
    # a labels file where the training images belong
    put(mnist_copy, TRAIN_IMAGES, real_bytes(mnist_dir, TRAIN_LABELS))
    with pytest.raises(DataError, match=f"{TRAIN_IMAGES}.gz has magic number 2049, expected 2051"):
        load_mnist(mnist_copy)


def test_load_truncated_content(mnist_copy):
    put(mnist_copy, TRAIN_IMAGES, header(2051, 60000, 28, 28) + bytes(100))
    with pytest.raises(
        DataError, match=f"{TRAIN_IMAGES}.gz is truncated: 116 bytes, expected 47040016"
    ):
        load_mnist(mnist_copy)


def test_load_truncated_header(mnist_copy):
    put(mnist_copy, TRAIN_IMAGES, header(2051, 60000)[:6])
    with pytest.raises(DataError, match="truncated.*header"):
        load_mnist(mnist_copy)


def test_load_content_too_long(mnist_copy, mnist_dir):
    put(mnist_copy, TRAIN_LABELS, real_bytes(mnist_dir, TRAIN_LABELS) + b"\x00")
    with pytest.raises(DataError, match=f"{TRAIN_LABELS}.gz is too long"):
        load_mnist(mnist_copy)


def test_load_corrupted_byte_fails_checksum(mnist_copy, mnist_dir):
    put(mnist_copy, TRAIN_LABELS, with_byte_changed(real_bytes(mnist_dir, TRAIN_LABELS), 8 + 100))
    with pytest.raises(DataError, match=f"{TRAIN_LABELS}.gz is corrupted: SHA-256"):
        load_mnist(mnist_copy)


def test_load_verify_false_skips_only_the_checksum(mnist_copy, mnist_dir, mnist):
    put(mnist_copy, TRAIN_LABELS, with_byte_changed(real_bytes(mnist_dir, TRAIN_LABELS), 8 + 100))
    data = load_mnist(mnist_copy, verify=False)
    assert data.y_train[100] == (mnist.y_train[100] + 1) % 10
    np.testing.assert_array_equal(np.delete(data.y_train, 100), np.delete(mnist.y_train, 100))


def test_load_wrong_count_in_header(mnist_copy, mnist_dir):
    raw = real_bytes(mnist_dir, TRAIN_LABELS)
    put(mnist_copy, TRAIN_LABELS, header(2049, 59999) + raw[8:])
    with pytest.raises(DataError, match=f"{TRAIN_LABELS}.gz holds 59999 items, expected 60000"):
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


@pytest.mark.slow
def test_load_raw_uncompressed_files(mnist_copy, mnist_dir, mnist):
    for name in (TRAIN_LABELS, TEST_IMAGES, TEST_LABELS):
        put(mnist_copy, name, real_bytes(mnist_dir, name), compress=False)
    assert sorted(p.name for p in mnist_copy.iterdir()) == sorted(
        [f"{TRAIN_IMAGES}.gz", TRAIN_LABELS, TEST_IMAGES, TEST_LABELS]
    )
    data = load_mnist(mnist_copy)
    for field in ("X_train", "y_train", "X_test", "y_test"):
        np.testing.assert_array_equal(getattr(data, field), getattr(mnist, field), err_msg=field)


def test_load_raw_file_is_checked_too(mnist_copy, mnist_dir):
    put(
        mnist_copy,
        TRAIN_LABELS,
        with_byte_changed(real_bytes(mnist_dir, TRAIN_LABELS), 8),
        compress=False,
    )
    with pytest.raises(DataError, match=f"{TRAIN_LABELS} is corrupted"):
        load_mnist(mnist_copy)


# ------------------------------------------------------------ loader: hostile files, bounded memory

MB = 1 << 20
ZEROS_MEMBER = gzip.compress(bytes(MB), compresslevel=9)  # ~1 KB that inflates to 1 MiB


def gzip_zeros(megabytes: int, head: bytes = b"") -> bytes:
    """A multi-member gzip stream of ``head`` then ``megabytes`` MiB of zeros, built without
    inflating it."""
    return (gzip.compress(head) if head else b"") + ZEROS_MEMBER * megabytes


def gz_put(folder: Path, name: str, gz: bytes) -> Path:
    remove(folder, name)
    path = folder / f"{name}.gz"
    path.write_bytes(gz)
    return path


def peak_bytes_of(fn) -> int:
    """Peak traced memory (Python objects and NumPy buffers) while ``fn()`` runs; its exception
    propagates."""
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


TRAIN_IMAGES_BYTES = 16 + 60000 * 784


@pytest.mark.parametrize(
    "gz,match",
    [
        # a small .gz of zeros named train-labels: refused at the magic number, before it is
        # inflated
        (gzip_zeros(256), "magic number 0, expected 2049"),
        # a right header followed by far more than 60000 labels
        (gzip_zeros(256, header(2049, 60000)), "is too long: more than 60008 bytes"),
    ],
    ids=["zeros", "right-header-then-zeros"],
)
def test_load_gzip_bomb_is_refused_with_bounded_memory(mnist_copy, gz, match):
    path = gz_put(mnist_copy, TRAIN_LABELS, gz)

    def load():
        with pytest.raises(DataError, match=match) as info:
            load_mnist(mnist_copy)
        assert str(path) in str(info.value) and "fix:" in str(info.value)

    # the training images (47 MB, legitimately) are in memory when the labels are read
    assert peak_bytes_of(load) < TRAIN_IMAGES_BYTES + 16 * MB


def test_load_huge_sparse_raw_file_is_refused_by_its_size_without_reading_it(mnist_copy):
    remove(mnist_copy, TRAIN_IMAGES)
    path = mnist_copy / TRAIN_IMAGES
    with open(path, "wb") as fh:  # right header, then a hole of 1 GiB (sparse: no disk)
        fh.write(header(2051, 60000, 28, 28))
        fh.truncate(1 << 30)

    def load():
        with pytest.raises(
            DataError, match=f"{TRAIN_IMAGES} is too long: {1 << 30} bytes, expected 47040016"
        ):
            load_mnist(mnist_copy)

    assert peak_bytes_of(load) < 4 * MB


def corrupt_deflate() -> bytes:
    """A gzip header followed by a deflate block of the invalid type 3 (zlib.error, not OSError)."""
    return gzip.compress(b"")[:10] + b"\xff" * 64


def wrong_crc(mnist_dir: Path) -> bytes:
    gz = bytearray((mnist_dir / f"{TEST_LABELS}.gz").read_bytes())
    gz[-8] ^= 0xFF  # the CRC-32 of the trailer
    return bytes(gz)


MALFORMED = {
    # name: (file, gz bytes or raw bytes, compressed?, message)
    "corrupt-deflate": (
        TRAIN_IMAGES,
        lambda d: corrupt_deflate(),
        False,
        "not a readable gzip file",
    ),
    "wrong-crc": (TEST_LABELS, wrong_crc, False, "not a readable gzip file"),
    "empty-gz": (TRAIN_IMAGES, lambda d: b"", False, "truncated"),
    "gz-of-nothing": (TRAIN_IMAGES, lambda d: gzip.compress(b""), False, "truncated"),
    "junk-after-gzip": (
        TRAIN_IMAGES,
        lambda d: gzip.compress(header(2051, 60000, 28, 28)) + b"junk",
        False,
        "not a readable gzip file",
    ),
    "empty-raw": (TRAIN_IMAGES, lambda d: b"", True, "truncated"),
    "negative-count": (TRAIN_IMAGES, lambda d: header(2051, -1, 28, 28), True, "holds -1 items"),
    "huge-dims": (
        TRAIN_IMAGES,
        lambda d: header(2051, 60000, 2**31 - 1, 2**31 - 1),
        True,
        "2147483647x2147483647 images, expected 28x28",
    ),
    "header-only": (
        TRAIN_IMAGES,
        lambda d: header(2051, 60000, 28, 28),
        True,
        "truncated: 16 bytes",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_load_malformed_file_is_one_data_error_without_warnings(mnist_copy, mnist_dir, case):
    name, build, raw, match = MALFORMED[case]
    content = build(mnist_dir)
    path = (
        put(mnist_copy, name, content, compress=False) if raw else gz_put(mnist_copy, name, content)
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DataError, match=match) as info:
            load_mnist(mnist_copy)
    assert str(path) in str(info.value) and "fix:" in str(info.value)
    assert [str(w.message) for w in caught] == []


def test_load_labels_outside_0_to_9_are_refused_even_unverified(mnist_copy, mnist_dir):
    raw = bytearray(real_bytes(mnist_dir, TEST_LABELS))
    raw[8 + 7] = 200
    put(mnist_copy, TEST_LABELS, bytes(raw))
    with pytest.raises(DataError, match=f"{TEST_LABELS}.gz has labels outside 0..9"):
        load_mnist(mnist_copy, verify=False)


# --------------------------------------------------------------------------- fetch_mnist


def sha_of_gz(path: Path) -> str:
    return hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()


def leftovers(folder: Path) -> list[str]:
    """Temporary or partial files a download might have left."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".part")]


@pytest.fixture
def no_env_mirrors(monkeypatch):
    monkeypatch.delenv("SOFTMAX_MNIST_MIRRORS", raising=False)


def test_fetch_from_file_mirror_writes_all_four_and_they_load(
    mnist_dir, tmp_path, mnist, no_env_mirrors
):
    cache = tmp_path / "cache" / "nested"
    assert fetch_mnist(cache, [mnist_dir.as_uri()]) == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in MNIST_FILE_NAMES)
    data = load_mnist(cache)
    np.testing.assert_array_equal(data.y_train, mnist.y_train)
    np.testing.assert_array_equal(data.X_test, mnist.X_test)
    mask = os.umask(0o022)
    os.umask(mask)
    # as a plain open makes them (mkstemp's files are 0600): the data are for every user
    assert {p.stat().st_mode & 0o777 for p in cache.iterdir()} == {0o666 & ~mask}


def test_fetch_from_a_mirror_of_fifos_is_one_line_not_a_hang(tmp_path, cli_run, no_env_mirrors):
    """A file:// mirror whose files are FIFOs would block a read past every deadline: it is
    refused at once, named, and nothing is left in the cache."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in MNIST_FILE_NAMES:
        os.mkfifo(mirror / f"{name}.gz")
    code, _, err = cli_run(
        "data", "fetch", "--mirror", mirror.as_uri(), "--dir", tmp_path / "cache", "--timeout", "5"
    )
    assert code == 1 and "is not a regular file" in err and len(err.splitlines()) == 1
    assert not any((tmp_path / "cache").glob("*.gz"))


def test_fetch_from_corrupted_mirror_leaves_nothing_and_names_the_file(
    mnist_dir, tmp_path, no_env_mirrors
):
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
        if key != "train_images":  # the 47 MB one is verified by the fetch itself
            assert sha_of_gz(cache / f"{spec.name}.gz") == spec.sha256, key


@pytest.mark.parametrize(
    "url", ["http://example.com/mnist/", "ftp://example.com/mnist/", "/some/local/dir"]
)
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
    assert {p.name: os.readlink(p) for p in cache.iterdir()} == before  # nothing replaced


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
    monkeypatch.setenv(
        "SOFTMAX_MNIST_MIRRORS", f" {tmp_path.as_uri()}/nowhere , {mnist_dir.as_uri()} "
    )
    fetch_mnist(cache)
    assert sha_of_gz(cache / f"{TEST_LABELS}.gz") == MNIST_FILES["test_labels"].sha256


# ----------------------------------------------------- fetch_mnist: bounded in time, size and trust


@pytest.fixture
def only_test_labels(monkeypatch, no_env_mirrors):
    """Fetch only the 10 kB test labels (keeps each test fast; the code paths are the same)."""
    monkeypatch.setattr(data_module, "MNIST_FILES", {"test_labels": MNIST_FILES["test_labels"]})


@pytest.fixture
def no_proxy(monkeypatch):
    """The servers below are on 127.0.0.1: no proxy of the environment may stand between."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def allow_http(monkeypatch, no_proxy):
    """Let fetch_mnist use plain http:// (only for the servers on 127.0.0.1 below)."""
    monkeypatch.setattr(data_module, "MIRROR_SCHEMES", (*data_module.MIRROR_SCHEMES, "http://"))


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (made by the openssl command) and its key."""
    if shutil.which("openssl") is None:
        pytest.skip(
            "the openssl command is needed to make a certificate for the local HTTPS server"
        )
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@pytest.fixture
def tls(tls_files, monkeypatch, no_proxy):
    """A server-side TLS context; the client trusts the certificate through $SSL_CERT_FILE."""
    cert, key = tls_files
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@contextlib.contextmanager
def local_server(respond, *, tls=None, lifetime=8.0):
    """An HTTP (or, with ``tls``, HTTPS) server on 127.0.0.1 answering each connection with
    ``respond(conn, alive, request_line)``.  It stops by itself after ``lifetime`` seconds and
    when the test leaves the block.  Yields (base URL, list of request lines received)."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.05)
    end, stop, requests = time.monotonic() + lifetime, threading.Event(), []

    def alive() -> bool:
        return time.monotonic() < end and not stop.is_set()

    def handle(conn):
        try:
            conn.settimeout(2.0)
            if tls:
                conn = tls.wrap_socket(conn, server_side=True)
            requests.append(conn.recv(65536).split(b"\r\n")[0].decode())
            respond(conn, alive, requests[-1])
        except OSError:
            pass  # the client hung up (as it should) or TLS failed
        finally:
            conn.close()

    def serve():
        with srv:
            while alive():
                try:
                    conn, _ = srv.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{srv.getsockname()[1]}", requests
    finally:
        stop.set()
        thread.join(5)


def trickle_body(conn, alive, request_line):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10008\r\n\r\n")
    while alive():
        conn.sendall(b"\x00")
        time.sleep(0.02)


def trickle_headers(conn, alive, request_line):
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    while alive():
        conn.sendall(b"a")
        time.sleep(0.02)


def serve_bytes(body: bytes, extra_headers: str = ""):
    def respond(conn, alive, request_line):
        conn.sendall(
            f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra_headers}"
            "Connection: close\r\n\r\n".encode()
            + body
        )

    return respond


def redirect_to(location: str):
    def respond(conn, alive, request_line):
        conn.sendall(
            f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )

    return respond


@pytest.mark.parametrize(
    "respond,scheme",
    [(trickle_body, "http"), (trickle_headers, "http"), (trickle_body, "https")],
    ids=["body", "headers", "body-https"],
)
def test_fetch_trickling_mirror_ends_at_the_deadline_per_file(
    request, tmp_path, only_test_labels, allow_http, respond, scheme
):
    tls = request.getfixturevalue("tls") if scheme == "https" else None
    cache = tmp_path / "cache"
    with local_server(respond, tls=tls) as (url, _):
        start = time.monotonic()
        with pytest.raises(DataError, match=f"{TEST_LABELS}.gz.*deadline.*fix:"):
            fetch_mnist(cache, [url], timeout=5.0, file_timeout=0.5)
        assert (
            time.monotonic() - start < 4.0
        )  # the per-read timeout (5 s) never fired: each read got a byte
    assert leftovers(cache) == []


def test_fetch_overall_deadline_stops_trying_further_mirrors(
    tmp_path, only_test_labels, allow_http
):
    cache = tmp_path / "cache"
    with local_server(trickle_body) as (url, _):
        start = time.monotonic()
        with pytest.raises(DataError, match="overall deadline of 0.7 s.*fix:") as info:
            fetch_mnist(
                cache,
                [f"{url}/a", f"{url}/b", f"{url}/c"],
                timeout=5.0,
                file_timeout=0.5,
                total_timeout=0.7,
            )
        assert time.monotonic() - start < 4.0
    assert f"{url}/a/" in str(info.value) and f"{url}/b/" in str(info.value)
    assert f"{url}/c/" not in str(info.value)  # not tried: the 0.7 s were spent
    assert leftovers(cache) == []


@contextlib.contextmanager
def file_size_limit(nbytes: int):
    """Writes past ``nbytes`` fail (EFBIG) instead of filling the disk: a guard for code that may
    not stop."""
    resource = pytest.importorskip("resource")
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_fetch_from_endless_file_mirror_stops_at_the_size_cap(tmp_path, only_test_labels):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with (mirror / f"{TEST_LABELS}.gz").open("wb") as endless:
        endless.truncate(64 * MB)  # far more than the file can be (sparse: no disk is used)
    cache = tmp_path / "cache"
    too_large = r"more than (the )?\d+ .*fix:"
    with file_size_limit(64 * MB), pytest.raises(DataError, match=too_large):
        fetch_mnist(cache, [mirror.as_uri()])
    assert leftovers(cache) == []


def test_fetch_refuses_a_download_announced_too_large(tmp_path, only_test_labels, allow_http):
    cache = tmp_path / "cache"
    body = gzip_zeros(4)  # what it really sends: 4 MiB of zeros, compressed

    def lying(conn, alive, request_line):  # announces a terabyte
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n" + body)

    with (
        local_server(lying) as (url, _),
        pytest.raises(DataError, match="announces 1000000000000 bytes.*fix:"),
    ):
        fetch_mnist(cache, [url])
    assert leftovers(cache) == []


def test_fetch_verifies_the_download_header_first_with_bounded_memory(tmp_path, only_test_labels):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    # 67 kB, within what a .gz of this file may take, that inflates to 64 MiB
    (mirror / f"{TEST_LABELS}.gz").write_bytes(gzip_zeros(64, header(2049, 10000)))
    cache = tmp_path / "cache"

    def fetch():
        with pytest.raises(DataError, match="too long: more than 10008 bytes"):
            fetch_mnist(cache, [mirror.as_uri()])

    assert peak_bytes_of(fetch) < 16 * MB
    assert leftovers(cache) == []


def test_redirect_from_https_to_http_is_refused():
    handler = data_module._NoDowngradeRedirect()
    req = urllib.request.Request("https://mirror.example/mnist/x.gz")
    with pytest.raises(DataError, match="redirect from https to http://other.example/x.gz"):
        handler.redirect_request(req, None, 302, "Found", {}, "http://other.example/x.gz")
    assert (
        handler.redirect_request(req, None, 302, "Found", {}, "https://other.example/x.gz")
        is not None
    )


def test_fetch_refuses_https_to_http_redirect_end_to_end(
    mnist_dir, tmp_path, only_test_labels, tls
):
    body = (mnist_dir / f"{TEST_LABELS}.gz").read_bytes()
    with (
        local_server(serve_bytes(body)) as (plain, plain_requests),
        local_server(redirect_to(f"{plain}/{TEST_LABELS}.gz"), tls=tls) as (secure, _),
    ):
        with pytest.raises(DataError, match="redirect from https to http://127.0.0.1"):
            fetch_mnist(tmp_path / "cache", [secure])
        assert plain_requests == []


def test_fetch_follows_https_to_https_redirect(mnist_dir, tmp_path, only_test_labels, tls):
    body = (mnist_dir / f"{TEST_LABELS}.gz").read_bytes()

    def respond(conn, alive, request_line):
        answer = (
            serve_bytes(body)
            if "/real/" in request_line
            else redirect_to(f"{url}/real/{TEST_LABELS}.gz")
        )
        answer(conn, alive, request_line)

    cache = tmp_path / "cache"
    with local_server(respond, tls=tls) as (url, _):
        fetch_mnist(cache, [url])
    assert sha_of_gz(cache / f"{TEST_LABELS}.gz") == MNIST_FILES["test_labels"].sha256
    assert leftovers(cache) == []


def wait_for(predicate, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX signals and named pipes")
def test_sigterm_during_fetch_removes_the_partial_file(tmp_path, no_proxy):
    """A fetch killed by SIGTERM while a mirror sends a little, then nothing, leaves no part."""
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "SOFTMAX_MNIST_MIRRORS"}
    code = (
        "import sys; from softmax_core.data import download as d; "
        "d.MIRROR_SCHEMES = (*d.MIRROR_SCHEMES, 'http://'); "  # the local server is plain HTTP
        "d.fetch_mnist(sys.argv[1], [sys.argv[2]])"
    )

    def a_little_then_nothing(conn, alive, request_line):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 9999999\r\n\r\n")
        conn.sendall(gzip.compress(b"partial"))
        while alive():
            time.sleep(0.05)

    with local_server(a_little_then_nothing, lifetime=40) as (url, _):
        child = subprocess.Popen(
            [sys.executable, "-c", code, str(cache), url], cwd=REPO_ROOT, env=env
        )
        try:
            assert wait_for(lambda: cache.is_dir() and leftovers(cache), 30)
            wait_for(lambda: any(p.stat().st_size for p in cache.iterdir()), 1)
            child.send_signal(signal.SIGTERM)
            assert child.wait(timeout=10) == -signal.SIGTERM  # still ends by the signal
            assert leftovers(cache) == []
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()


def test_fetch_removes_partial_files_of_killed_runs(mnist_dir, tmp_path, only_test_labels):
    cache = tmp_path / "cache"
    cache.mkdir()
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(ended.stdout)
    stale = [
        cache / f".{TEST_LABELS}.{dead_pid}.k3j2h1g0.part",  # a fetch killed by SIGKILL
        cache / f".{TEST_LABELS}.abc_defg.part",
    ]  # the second: a name without a process id
    kept = [
        cache / f".{TEST_LABELS}.{os.getpid()}.zzzz0000.part",  # a fetch running now (this process)
        cache / "notes.part",
        cache / ".hidden",
    ]  # not ours
    for p in stale + kept:
        p.write_bytes(b"x" * 1000)
    fetch_mnist(cache, [mnist_dir.as_uri()])
    assert [p.name for p in stale if p.exists()] == []
    assert all(p.exists() for p in kept)
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


@pytest.mark.parametrize(
    "args,name",
    [
        ((0, 5, 3), "m"),
        ((-1, 5, 3), "m"),
        ((2.5, 5, 3), "m"),
        ((True, 5, 3), "m"),
        ((10, 0, 3), "n"),
        ((10, "5", 3), "n"),
        ((10, 5, 1), "k"),
        ((10, 5, 0), "k"),
        ((10, 5, 3.0), "k"),
    ],
)
def test_make_synthetic_rejects_bad_arguments(args, name):
    with pytest.raises(ValueError, match=rf"^{name} must be an integer >= "):
        make_synthetic(*args)


def test_fetch_never_replaces_a_file_that_is_not_a_damaged_download(
    mnist_dir, tmp_path, cli_run, no_env_mirrors
):
    """A damaged download of ours is repaired (a gzip file); a file that is not one is
    someone's, refused in one line and left as it was; a folder that cannot be made is named."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{TRAIN_IMAGES}.gz").write_text("mine")
    code, _, err = cli_run("data", "fetch", "--mirror", mnist_dir.as_uri(), "--dir", cache)
    assert code == 1 and "is not an MNIST file" in err and len(err.splitlines()) == 1
    assert (cache / f"{TRAIN_IMAGES}.gz").read_text() == "mine"
    (tmp_path / "a-file").write_text("")
    code, _, err = cli_run("data", "fetch", "--dir", tmp_path / "a-file" / "mnist")
    assert code == 1 and "cannot make the folder" in err and "fix:" in err
