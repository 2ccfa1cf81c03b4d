"""ImageNet normalisation, shared by training, k-NN features, probes and display.

Every dataset decodes to uint8 images; the methods, the online k-NN and the analysis pages
all see them through ``normalize``, and pictures go back through ``to_uint8_image``.
"""

from __future__ import annotations

import numpy as np
import torch

# ImageNet statistics: what timm and every DINO/MAE/I-JEPA recipe normalise with.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def normalize(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images -> float (N, 3, S, S) normalised with ``MEAN`` / ``STD``.

    Takes numpy (N, S, S, 3), or a tensor (N, 3, S, S) or (N, S, S, 3); a single image (no N)
    gets a batch axis.
    """
    x = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if isinstance(images, np.ndarray) or (x.shape[1] != 3 and x.shape[-1] == 3):
        x = x.permute(0, 3, 1, 2)  # NHWC -> NCHW
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    mean = torch.tensor(MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def to_uint8_image(x: torch.Tensor) -> np.ndarray:
    """Inverse of ``normalize`` for display: (3, H, W) -> (H, W, 3) or (N, 3, H, W) -> (N, H, W, 3) uint8."""
    x = x.detach().float().cpu()
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    x = (x * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.movedim(-3, -1).numpy()
