"""The in-memory image dataset every source produces, and the one place a split is built from a
config. The normalisation (``MEAN``, ``STD``, ``normalize``, ``to_uint8_image``) is
``core.images``'s, re-exported here for the data code.

Every source (shapes, fashion-mnist, digits, folder) decodes to the same form: uint8 images
(N, S, S, 3) held in memory, int64 labels (-1 = unlabelled), class names and, for the
procedural shapes, exact per-pixel object masks. Small images make this cheap (60k Fashion-MNIST
images at 32 px are 184 MB) and let the loader gather batches with one fancy index.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np
import torch

from core.images import MEAN, STD, normalize, to_uint8_image
from trainer.config import Data

__all__ = ["MEAN", "STD", "SPLITS", "DataError", "ImageDataset", "build_dataset", "normalize", "to_uint8_image"]

SPLITS = ("train", "val")

# data.name -> module under trainer.data with a ``load(data, split, seed) -> ImageDataset``.
# Imported on demand so that, e.g., reading Fashion-MNIST never imports scikit-learn.
_SOURCES = {"shapes": "shapes", "fashion-mnist": "fashion_mnist", "digits": "digits", "folder": "folder"}


class DataError(ValueError):
    """Bad or missing data. The message is one line naming the problem and the fix."""


@dataclass(eq=False)
class ImageDataset(torch.utils.data.Dataset):
    """Decoded images of one split.

    images: (N, S, S, 3) uint8; labels: (N,) int64, -1 where unlabelled; classes: names of
    labels 0..C-1; masks: (N, S, S) bool object masks (shapes only); skipped: files that
    could not be read (folder only), a few of their names in ``skipped_examples`` and of the
    images refused, "name: reason", in ``skipped_reasons``.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    name: str
    masks: np.ndarray | None = None
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    skipped_reasons: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n, h, w, c = self.images.shape
        assert self.images.dtype == np.uint8 and c == 3 and h == w, \
            f"images must be (N, S, S, 3) uint8, got {self.images.shape} {self.images.dtype}"
        assert self.labels.shape == (n,), f"labels {self.labels.shape} do not match {n} images"
        self.labels = self.labels.astype(np.int64, copy=False)
        assert self.masks is None or self.masks.shape == (n, h, w)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """Image i as a uint8 tensor (3, S, S) and its label."""
        return torch.from_numpy(self.images[i]).permute(2, 0, 1).contiguous(), int(self.labels[i])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())


def build_dataset(data: Data, split: str, seed: int) -> ImageDataset:
    """The ``split`` ('train' | 'val') of the dataset ``data.name`` at ``data.image_size`` px.

    shapes: ``num_train`` / ``num_val`` images generated from ``seed`` (different streams per
    split). Real data: the first ``num_train`` / ``num_val`` images of the split (0 = all).
    """
    if split not in SPLITS:
        raise DataError(f"split '{split}' is not known; use one of: {', '.join(SPLITS)}")
    if data.name not in _SOURCES:
        raise DataError(f"data.name='{data.name}' is not a dataset; choose one of: {', '.join(_SOURCES)}")
    module = importlib.import_module(f"trainer.data.{_SOURCES[data.name]}")
    return module.load(data, split, seed)
