"""What does I-JEPA predict? For one multi-block draw (seeded): the context block and the
target blocks on the patch grid, and per target patch the cosine similarity of the
predictor's output to the target encoder's (layer-normed) feature -- where in the image the
model can and cannot infer the missing representation.

Uses the I-JEPA method's own ``predict`` (what its probe saves), so this is the training
objective's view, for any seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.images import to_uint8_image
from trainer.methods.ijepa import IJEPA


@dataclass
class JepaPrediction:
    """One multi-block draw over B images on an (h, w) patch grid."""

    original: np.ndarray  # (B, H, W, 3) uint8
    context_mask: np.ndarray  # (B, h, w) bool, patches the context encoder saw
    target_masks: np.ndarray  # (B, T, h, w) bool, each target block
    pred_cosine: np.ndarray  # (B, h, w) float32, mean cosine over the blocks covering a patch; NaN elsewhere
    block_cosine: np.ndarray  # (B, T) float32, mean cosine per target block
    mean_cosine: float  # over every predicted patch
    loss: float  # the training loss on this draw
    seed: int

    @property
    def targets(self) -> np.ndarray:
        """(B, h, w) bool: the patches any target block covers."""
        return self.target_masks.any(1)


@torch.inference_mode()
def predict_targets(ijepa: IJEPA, images: torch.Tensor, seed: int = 0) -> JepaPrediction:
    """Run context encoder and predictor on normalised images (B, 3, H, W) with masks drawn
    from a generator seeded by ``seed``; compare with the target encoder on the full image."""
    pr = ijepa.predict(images, torch.Generator().manual_seed(seed))
    b, t = images.shape[0], pr.masks.target_ids.shape[1]
    h, w = pr.masks.grid
    return JepaPrediction(
        original=to_uint8_image(images),
        context_mask=pr.masks.context_mask().reshape(b, h, w).numpy(),
        target_masks=pr.masks.target_masks().reshape(b, t, h, w).numpy(),
        pred_cosine=pr.per_patch.numpy().astype(np.float32),
        block_cosine=pr.cosine.mean(-1).numpy().astype(np.float32),
        mean_cosine=float(pr.cosine.mean()), loss=pr.loss, seed=seed)
