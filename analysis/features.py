"""Features of a dataset split from an analysed backbone (cached beside the run), and the
references every score is compared with: the same architecture at random initialisation and
raw pixels. The features themselves ([CLS], pooled) are ``core.features.extract``'s: the
online k-NN and the collapse statistics read the same definition.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np
import torch

from core.features import PIXEL_SIZE, Features, extract
from core.features import pixel_features as core_pixel_features
from core.vit import ViT

if TYPE_CHECKING:  # annotation only: the pure functions here need no run or checkpoint machinery
    from analysis.source import Source


def random_init_like(vit: ViT, seed: int = 0) -> ViT:
    """The same architecture with fresh timm initialisation (seeded): the reference every
    score of a trained backbone is compared with."""
    fresh = copy.deepcopy(vit).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh.init_weights(needs_reset=True)  # resets every submodule (norms, LayerScale too)
    return fresh.eval()


def pixel_features(images: np.ndarray, size: int = PIXEL_SIZE) -> np.ndarray:
    """Raw-pixel baseline features (N, 3 * size * size) of uint8 images (N, S, S, 3):
    ``core.features.pixel_features``, the definition the trainer's step-0 reference uses."""
    return core_pixel_features(images, size).numpy()


def split_features(source: Source, split: str, max_images: int = 0, baseline: str | None = None,
                   batch_size: int | None = None) -> Features:
    """Cached features of the first ``max_images`` (0 = all) of ``split`` of an
    ``analysis.source.Source``'s data. ``baseline="random_init"`` uses the same architecture
    at random initialisation instead (seeded by the data seed)."""
    from analysis.source import split_images

    if baseline not in (None, "random_init"):
        raise ValueError(f"baseline '{baseline}' is not known; use None or 'random_init'")
    params = {"split": split, "max_images": max_images, "baseline": baseline, **source.data_params()}

    def compute() -> Features:
        images, labels, _, _ = split_images(source, split, max_images)
        vit = source.vit if baseline is None else random_init_like(source.vit, source.seed)
        feats = extract(vit, images, labels, batch_size=batch_size)
        source.vit.cpu()
        return feats

    key = source.checkpoint if baseline is None else f"{source.checkpoint}|random_init"
    return source.cache.cached_dataclass(Features, "features", key, params, compute)
