"""scikit-learn's bundled handwritten digits (1797 images, 8x8, 17 grey levels), upscaled.

No download: the data ships inside scikit-learn. The train/val split is a permutation drawn
from the run seed; a fifth of the images (359) are held out for validation.
"""

from __future__ import annotations

import numpy as np

from trainer.config import Data
from trainer.data.datasets import ImageDataset
from trainer.data.resize import resize_grey

CLASSES = [str(d) for d in range(10)]
VAL_FRACTION = 0.2
_SPLIT_STREAM = 8  # a random stream of its own, apart from those that seed crops and init


def load(data: Data, split: str, seed: int) -> ImageDataset:
    """The split at ``data.image_size`` px; the first ``num_train`` / ``num_val`` of it (0 = all)."""
    from sklearn.datasets import load_digits  # imported here: only this dataset needs sklearn

    bunch = load_digits()
    grey = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255, (1797, 8, 8)
    order = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(len(grey))
    n_val = int(round(VAL_FRACTION * len(grey)))
    idx = order[:n_val] if split == "val" else order[n_val:]
    n = data.num_train if split == "train" else data.num_val
    idx = idx[:n] if n > 0 else idx
    rgb = np.repeat(resize_grey(grey[idx], data.image_size)[..., None], 3, axis=-1)
    return ImageDataset(rgb, bunch.target[idx].astype(np.int64), list(CLASSES), "digits")
