"""What does I-JEPA predict? For one multi-block draw (seeded): the context block and the
target blocks on the patch grid, and per target patch the cosine similarity of the
predictor's output to the target encoder's (layer-normed) feature -- where in the image the
model can and cannot infer the missing representation.

Uses the I-JEPA method's own mask generator and ``forward_parts``, so this is the training
objective's view, for any seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from trainer.data.datasets import to_uint8_image
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


@torch.inference_mode()
def predict_targets(ijepa: IJEPA, images: torch.Tensor, seed: int = 0) -> JepaPrediction:
    """Run context encoder and predictor on normalised images (B, 3, H, W) with masks drawn
    from a generator seeded by ``seed``; compare with the target encoder on the full image."""
    ijepa.eval()
    b = images.shape[0]
    masks = ijepa.mask_generator(b, torch.Generator().manual_seed(seed))
    loss, pred, target, _, _ = ijepa.forward_parts(images, masks)  # pred, target: (T*B, K, D)
    t, k = masks.target_ids.shape[1:]
    cos = F.cosine_similarity(pred.float(), target.float(), dim=-1)  # (T*B, K), block-major
    cos = cos.reshape(t, b, k).transpose(0, 1).cpu()  # (B, T, K)
    h, w = masks.grid
    ids = masks.target_ids.cpu().reshape(b, t * k)
    total = torch.zeros(b, h * w).scatter_add_(1, ids, cos.reshape(b, t * k))
    count = torch.zeros(b, h * w).scatter_add_(1, ids, torch.ones(b, t * k))
    per_patch = torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))
    return JepaPrediction(
        original=to_uint8_image(images),
        context_mask=masks.context_mask().reshape(b, h, w).numpy(),
        target_masks=masks.target_masks().reshape(b, t, h, w).numpy(),
        pred_cosine=per_patch.reshape(b, h, w).numpy().astype(np.float32),
        block_cosine=cos.mean(-1).numpy().astype(np.float32),
        mean_cosine=float(cos.mean()), loss=float(loss), seed=seed)
