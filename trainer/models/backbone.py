"""The shared backbone: timm's ``VisionTransformer``, built from a preset, with registers.

We do not fork the ViT. The few things the methods need beyond timm's forward are thin
helpers over its layered API: token embedding (patch embed + positions + [CLS]/registers;
``core.vit``'s, re-exported here), running the blocks on a subset of tokens (MAE, I-JEPA),
and capturing attention maps (analysis and probes only: timm's fused attention returns no
weights, so it is switched off there).

Registers (Darcet et al. 2024, "Vision Transformers Need Registers") are extra learnable tokens
after [CLS] without positional embedding: ``no_embed_class=True`` adds positions to patch
tokens only, which for [CLS] is equivalent (a learnable token plus a learnable bias).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from core.vit import embed_tokens, num_prefix
from trainer.config import Model, preset_shape

__all__ = ["build_backbone", "capture_attention", "embed_tokens", "forward_masked", "grid_size", "num_prefix",
           "param_groups"]


def build_backbone(model: Model, img_size: int) -> VisionTransformer:
    """A timm ViT without classifier head; ``num_features`` is its width.

    Takes any image size that is a multiple of the patch size (``dynamic_img_size``), so the
    same network runs global crops, local crops and full images.
    """
    patch, dim, depth, heads = preset_shape(model)
    assert dim % heads == 0, f"embed_dim {dim} not divisible by num_heads {heads}"
    assert img_size % patch == 0, f"image size {img_size} not a multiple of patch size {patch}"
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


def grid_size(vit: VisionTransformer, img_size: int) -> int:
    """Patches per side for a square image of ``img_size`` px."""
    return img_size // vit.patch_embed.patch_size[0]


def forward_masked(vit: VisionTransformer, x: torch.Tensor, ids_keep: torch.Tensor, norm: bool = True) -> torch.Tensor:
    """Encode only the patches ``ids_keep`` (B, N_keep) plus the prefix tokens.

    Returns (B, prefix + N_keep, D), after the final norm unless ``norm=False`` (then the
    last block's output, which ``core.features.pooled`` pools). This is where MAE's 75% saving
    comes from: the blocks never see the masked patches.
    """
    tokens = embed_tokens(vit, x)  # (B, P + N, D)
    p = num_prefix(vit)
    prefix, patches = tokens[:, :p], tokens[:, p:]
    d = patches.shape[-1]
    kept = torch.gather(patches, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))  # (B, N_keep, D)
    pre = vit.blocks(torch.cat([prefix, kept], dim=1))
    return vit.norm(pre) if norm else pre


@contextmanager
def capture_attention(vit: VisionTransformer, blocks: list[int] | None = None) -> Iterator[list[torch.Tensor]]:
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
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "decay": True}, {"params": no_decay, "decay": False, "weight_decay": 0.0}]
