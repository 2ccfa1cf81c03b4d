"""Token helpers over timm's vision transformers that the trainer and the feature extraction
share: the prefix count, the tokens before the blocks (optionally with masked patches) and the
blocks themselves.

Two timm classes are served, never forked: ``VisionTransformer`` (learnt absolute positions
added to the patch tokens) and ``Eva`` in the layout of timm's DINOv3 port
(``vit_*_patch16_dinov3``: rotary position embeddings applied inside every attention block,
storage tokens, layer scale). Their layered APIs differ in one place: ``Eva._pos_embed``
returns the rotary embedding beside the tokens and every block takes it, so ``embed`` returns
it and ``run_blocks`` passes it on.

Masked image modelling (iBOT, DINOv2) replaces the embeddings of masked patches by a learnable
mask token *before* positions are added: ``embed(vit, x, mask, mask_token)`` does that
between timm's ``patch_embed`` and ``_pos_embed``, so a masked token still knows where it is.
"""

from __future__ import annotations

import torch
from timm.models.eva import Eva
from timm.models.vision_transformer import VisionTransformer

ViT = VisionTransformer | Eva  # the backbones every layer of SSLScope accepts


def num_prefix(vit: ViT) -> int:
    """[CLS] + registers (DINOv3: storage tokens)."""
    return int(vit.num_prefix_tokens)


def uses_rope(vit: ViT) -> bool:
    """True for backbones whose positions are rotary embeddings applied in the blocks."""
    return getattr(vit, "rope", None) is not None


def embed(vit: ViT, x: torch.Tensor, mask: torch.Tensor | None = None,
          mask_token: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images (B, 3, H, W) -> tokens before the blocks (B, prefix + N, D), patch tokens in
    raster order after the prefix ([CLS], then registers), and the rotary embedding the
    blocks need (None for learnt positions, which are already added).

    ``mask`` (B, N) bool, True = masked: those patch embeddings are replaced by ``mask_token``
    (D,) or (1, D) before the positions are added (iBOT / DINOv2 ``prepare_tokens_with_masks``).
    """
    x = vit.patch_embed(x)  # (B, h, w, D) with dynamic_img_size, else (B, N, D)
    if mask is not None:
        assert mask_token is not None, "a mask needs the mask token that replaces the masked patches"
        m = mask.reshape(*x.shape[:-1], 1)  # (B, h, w, 1) or (B, N, 1)
        x = torch.where(m, mask_token.reshape(-1).to(x.dtype), x)
    if isinstance(vit, Eva):
        x, rope = vit._pos_embed(x)  # Eva applies its pos/patch dropout inside
    else:
        x, rope = vit.patch_drop(vit._pos_embed(x)), None
    return vit.norm_pre(x), rope


def run_blocks(vit: ViT, tokens: torch.Tensor, rope: torch.Tensor | None = None) -> torch.Tensor:
    """The transformer blocks on ``tokens`` (B, L, D), with the rotary embedding of the
    patch tokens among them when the backbone uses one; returns the last block's output."""
    if rope is None and not isinstance(vit, Eva):
        return vit.blocks(tokens)
    mixed = getattr(vit, "rope_mixed", False)  # rope per depth (timm's 'mixed' type)
    for i, blk in enumerate(vit.blocks):
        tokens = blk(tokens, rope=rope[i] if mixed and rope is not None else rope)
    return tokens


def embed_tokens(vit: ViT, x: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) -> tokens (B, prefix + N, D) with positions, before the blocks.
    Patch tokens are in raster order; prefix = [CLS] then registers. (Rotary backbones add
    their positions inside the blocks: use ``embed`` + ``run_blocks`` for them.)"""
    return embed(vit, x)[0]


def block_tokens(vit: ViT, x: torch.Tensor, mask: torch.Tensor | None = None,
                 mask_token: torch.Tensor | None = None) -> torch.Tensor:
    """Images (B, 3, H, W) -> the last block's tokens (B, prefix + N, D), before the final norm;
    ``vit.norm`` of them is ``vit.forward_features(x)``. ``mask`` / ``mask_token``: as ``embed``."""
    tokens, rope = embed(vit, x, mask, mask_token)
    return run_blocks(vit, tokens, rope)
