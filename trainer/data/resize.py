"""Batched resizing of small grey images (Fashion-MNIST, digits) to the training size."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize_grey(images: np.ndarray, size: int, chunk: int = 8192) -> np.ndarray:
    """(N, h, w) uint8 -> (N, size, size) uint8, bilinear with antialiasing when shrinking.

    Runs in chunks so 60k images never need more than a few tens of MB of float memory.
    """
    n, h, w = images.shape
    if (h, w) == (size, size):
        return np.ascontiguousarray(images)
    out = np.empty((n, size, size), np.uint8)
    for lo in range(0, n, chunk):
        x = torch.from_numpy(np.array(images[lo: lo + chunk])).float().unsqueeze(1)  # (n, 1, h, w)
        y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < max(h, w))
        out[lo: lo + chunk] = y.squeeze(1).round().clamp(0, 255).to(torch.uint8).numpy()
    return out
