"""The shared backbone: a timm vision transformer built from a preset, with registers.

We do not fork the ViT. Two timm classes serve as backbones:

- ``VisionTransformer`` (presets cpu-tiny ... vit-base, custom): learnt absolute positions,
  registers optional;
- timm's DINOv3 ViT, an ``Eva`` (presets dinov3-*: ``vit_small_patch16_dinov3`` with the
  preset's width and depth): rotary position embeddings, 4 storage tokens, layer scale 1e-5,
  no absolute positions, LayerNorm eps 1e-5, [CLS] pooling as upstream.

The few things the methods need beyond timm's forward are thin helpers over its layered API:
token embedding with optional masked patches (``core.vit``'s, re-exported here), running the
blocks on a subset of tokens (MAE, I-JEPA; the rotary embedding follows the kept tokens), and
capturing attention maps (analysis and probes only: timm's fused attention returns no
weights, so it is switched off there).

Registers (Darcet et al. 2024, "Vision Transformers Need Registers") are extra learnable tokens
after [CLS] without positional embedding: ``no_embed_class=True`` adds positions to patch
tokens only, which for [CLS] is equivalent (a learnable token plus a learnable bias).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from core.vit import ViT, block_tokens, embed, embed_tokens, num_prefix, run_blocks
from trainer.config import Model, is_dinov3, prefix_tokens, preset_shape

__all__ = ["build_backbone", "block_tokens", "capture_attention", "embed", "embed_tokens", "forward_masked",
           "grid_size", "num_prefix", "param_groups", "run_blocks"]

# the timm model each DINOv3 preset is built from (its parts; the preset sets width and depth)
DINOV3_MODELS = {"dinov3-base": "vit_base_patch16_dinov3"}
DINOV3_DEFAULT_MODEL = "vit_small_patch16_dinov3"


def build_backbone(model: Model, img_size: int) -> ViT:
    """A timm ViT without classifier head; ``num_features`` is its width.

    Takes any image size that is a multiple of the patch size (``dynamic_img_size``), so the
    same network runs global crops, local crops and full images.
    """
    patch, dim, depth, heads = preset_shape(model)
    assert dim % heads == 0, f"embed_dim {dim} not divisible by num_heads {heads}"
    assert img_size % patch == 0, f"image size {img_size} not a multiple of patch size {patch}"
    if is_dinov3(model):
        # timm's registered DINOv3 model with our shape: RoPE, storage tokens, layer scale as upstream
        return timm.create_model(
            DINOV3_MODELS.get(model.preset, DINOV3_DEFAULT_MODEL), pretrained=False, img_size=img_size,
            patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads, num_reg_tokens=prefix_tokens(model),
            num_classes=0, global_pool="token",  # upstream pools the [CLS] token (timm's default is 'avg')
            dynamic_img_size=True, drop_path_rate=model.drop_path_rate)
    vit = VisionTransformer(
        img_size=img_size,
        patch_size=patch,
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=4.0,
        qkv_bias=True,
        num_classes=0,  # no classifier: SSL heads live in the methods
        global_pool="token",
        class_token=True,
        reg_tokens=model.reg_tokens,
        no_embed_class=True,  # positions on patches only: registers get none
        dynamic_img_size=True,
        drop_path_rate=model.drop_path_rate,
    )
    return vit


def grid_size(vit: ViT, img_size: int) -> int:
    """Patches per side for a square image of ``img_size`` px."""
    return img_size // vit.patch_embed.patch_size[0]


def forward_masked(vit: ViT, x: torch.Tensor, ids_keep: torch.Tensor, norm: bool = True) -> torch.Tensor:
    """Encode only the patches ``ids_keep`` (B, N_keep) plus the prefix tokens.

    Returns (B, prefix + N_keep, D), after the final norm unless ``norm=False`` (then the
    last block's output, which ``core.features.pooled`` pools). This is where MAE's 75% saving
    comes from: the blocks never see the masked patches. A rotary backbone gets the rotary
    embedding of the kept patches, in their order.
    """
    tokens, rope = embed(vit, x)  # (B, P + N, D)
    p = num_prefix(vit)
    prefix, patches = tokens[:, :p], tokens[:, p:]
    d = patches.shape[-1]
    kept = torch.gather(patches, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))  # (B, N_keep, D)
    if rope is not None:  # (N, R) -> (B, 1, N_keep, R): one per image, broadcast over heads
        rope = rope.to(kept.device)[ids_keep].unsqueeze(1)
    pre = run_blocks(vit, torch.cat([prefix, kept], dim=1), rope)
    return vit.norm(pre) if norm else pre


@contextmanager
def capture_attention(vit: ViT, blocks: list[int] | None = None) -> Iterator[list[torch.Tensor]]:
    """Within the context, forward passes record softmaxed attention of the chosen blocks
    (default: all) as (B, heads, L, L) tensors, in block order, in the returned list.

    Fused attention is switched off on those blocks for the duration (it computes no weights)
    and restored afterwards, so training keeps the fast path.
    """
    chosen = range(len(vit.blocks)) if blocks is None else blocks
    maps: list[torch.Tensor] = []
    handles, saved = [], []
    for i in chosen:
        attn = vit.blocks[i].attn
        saved.append((attn, attn.fused_attn))
        attn.fused_attn = False
        # attn_drop is applied to the softmaxed weights; in eval mode it is the identity
        handles.append(attn.attn_drop.register_forward_hook(lambda _m, _i, out: maps.append(out.detach())))
    try:
        yield maps
    finally:
        for h in handles:
            h.remove()
        for attn, fused in saved:
            attn.fused_attn = fused


def param_groups(module: nn.Module) -> list[dict]:
    """AdamW groups: no weight decay on biases, norms, tokens and positional embeddings (as in
    DINO/MAE). The loop sets each group's ``weight_decay`` from its schedule when ``decay``."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(("cls_token", "reg_token", "pos_embed", "mask_token")) or ".bias" in name:
            # (LayerScale gammas and Eva's q/v biases are 1-d: no decay either)
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "decay": True}, {"params": no_decay, "decay": False, "weight_decay": 0.0}]
