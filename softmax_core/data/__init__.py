"""Data: the real MNIST files (:mod:`.mnist`, the loader; :mod:`.download`, the
checksummed, bounded downloader) and synthetic data of any shape (:mod:`.synthetic`)."""

from .download import DEFAULT_MIRRORS, fetch_mnist
from .mnist import MNIST, MNIST_FILES, DataError, default_data_dir, load_mnist
from .synthetic import make_synthetic

__all__ = [
    "DEFAULT_MIRRORS",
    "MNIST",
    "MNIST_FILES",
    "DataError",
    "default_data_dir",
    "fetch_mnist",
    "load_mnist",
    "make_synthetic",
]
