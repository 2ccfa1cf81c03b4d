"""Fashion-MNIST from the idx files of Debian's ``dataset-fashion-mnist`` package (no download).

Split 'train' reads ``train-*`` (60k images), 'val' reads ``t10k-*`` (10k). Files may be gzipped
or not. Images are 28 px grey: they are resized to ``image_size`` and repeated to 3 channels.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from trainer.config import Data
from trainer.data.datasets import DataError, ImageDataset
from trainer.data.resize import resize_grey

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_PREFIX = {"train": "train", "val": "t10k"}
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049  # idx: 0x0000 08 (uint8) 03 / 01 (dimensions)
INSTALL_HINT = ("install it with: sudo apt-get install dataset-fashion-mnist, or pass --data-path DIR "
                "holding train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz) and the t10k-* pair")


def load(data: Data, split: str, seed: int) -> ImageDataset:
    """The split at ``data.image_size`` px; the first ``num_train`` / ``num_val`` images (0 = all)."""
    root = Path(data.path or DEFAULT_DIR).expanduser()
    if not root.is_dir():
        raise DataError(f"Fashion-MNIST folder '{root}' does not exist; {INSTALL_HINT}")
    prefix = _PREFIX[split]
    n = data.num_train if split == "train" else data.num_val
    images = read_idx(_find(root, f"{prefix}-images-idx3-ubyte"), _IMAGES_MAGIC)
    labels = read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"), _LABELS_MAGIC)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"Fashion-MNIST files in '{root}' do not match: images {images.shape}, "
                        f"labels {labels.shape}; {INSTALL_HINT}")
    if len(labels) and labels.max() >= len(CLASSES):
        raise DataError(f"Fashion-MNIST labels in '{root}' go up to {labels.max()}, beyond its "
                        f"{len(CLASSES)} classes; the files are not Fashion-MNIST")
    if n > 0:  # resize only what is used
        images, labels = images[:n], labels[:n]
    grey = resize_grey(images, data.image_size)  # (N, S, S) uint8
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    return ImageDataset(rgb, labels.astype(np.int64), list(CLASSES), "fashion-mnist")


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An idx file (gzipped or not) as a uint8 array of its declared shape."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read '{path}' ({e}); {INSTALL_HINT}") from None
    if len(raw) < 4 or int.from_bytes(raw[:4], "big") != magic:
        found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
        raise DataError(f"'{path}' is not an idx file of the expected kind (magic number {found}, "
                        f"expected {magic}); {INSTALL_HINT}")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(shape)):
        raise DataError(f"'{path}' is truncated or padded: header says {shape} = {int(np.prod(shape))} "
                        f"bytes, file has {len(body)}; {INSTALL_HINT}")
    return np.frombuffer(body, np.uint8).reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise DataError(f"'{root}' has no {stem}(.gz); {INSTALL_HINT}")
