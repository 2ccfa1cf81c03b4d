"""Token helpers over timm's ``VisionTransformer`` that the trainer and the feature
extraction share: the prefix count and the tokens before the blocks.

Thin on purpose: timm's layered API (``patch_embed``, ``_pos_embed``, ``blocks``, ``norm``)
does the work; the shared backbone is built in ``trainer.models.backbone``.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer


def num_prefix(vit: VisionTransformer) -> int:
    """[CLS] + registers."""
    return int(vit.num_prefix_tokens)


def embed_tokens(vit: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) -> tokens (B, prefix + N, D) with positions, before the blocks.
    Patch tokens are in raster order; prefix = [CLS] then registers."""
    x = vit.patch_embed(x)  # (B, h, w, D) with dynamic_img_size
    x = vit._pos_embed(x)  # (B, prefix + h*w, D)
    x = vit.patch_drop(x)
    return vit.norm_pre(x)


def block_tokens(vit: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) -> the last block's tokens (B, prefix + N, D), before the final norm;
    ``vit.norm`` of them is ``vit.forward_features(x)``."""
    return vit.blocks(embed_tokens(vit, x))
