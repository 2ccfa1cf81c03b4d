"""I-JEPA's narrow predictor (Assran et al. 2023; ijepa's VisionTransformerPredictor, same names).

The context encoder's tokens are projected to the predictor width and given the predictor's
own fixed 2-D sin-cos positions at the context patches; for each target block, one learnable
``mask_token`` per target patch, plus the sin-cos position of that patch, is appended; timm
``Block``s, a norm, and ``predictor_proj`` back to the encoder width give the predicted
representation of each target patch. As in the official code, each target block is predicted
in its own sequence (the batch is repeated once per block), so blocks do not see one another's
mask tokens. Prefix tokens ([CLS], registers) join the sequence without a position.
"""

from __future__ import annotations

import torch
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import nn


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """x (B, N, D), ids (B, K) -> (B, K, D): the tokens at ``ids`` per row."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class JEPAPredictor(nn.Module):
    """Context tokens + target positions -> predicted target representations."""

    def __init__(self, embed_dim: int, predictor_embed_dim: int, depth: int, num_heads: int, grid: int,
                 num_prefix: int):
        super().__init__()
        self.num_prefix = num_prefix
        self.predictor_embed = nn.Linear(embed_dim, predictor_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, predictor_embed_dim))
        pos = build_sincos2d_pos_embed([grid, grid], predictor_embed_dim)  # (grid*grid, Dp), raster order
        self.register_buffer("predictor_pos_embed", pos.unsqueeze(0), persistent=False)  # fixed
        self.predictor_blocks = nn.ModuleList(
            [Block(predictor_embed_dim, num_heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth)])
        self.predictor_norm = nn.LayerNorm(predictor_embed_dim)
        self.predictor_proj = nn.Linear(predictor_embed_dim, embed_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        # as the official predictor: trunc-normal(0.02) linears and mask token, unit LayerNorms
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, context: torch.Tensor, context_ids: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
        """context (B, P + Nc, D) encoder output, context_ids (B, Nc), target_ids (B, T, K)
        -> predictions (T * B, K, D), block-major: rows t*B .. t*B + B - 1 are block t."""
        b, t, k = target_ids.shape
        p = self.num_prefix
        x = self.predictor_embed(context)  # (B, P + Nc, Dp)
        pos = self.predictor_pos_embed.expand(b, -1, -1)  # (B, N, Dp)
        x = torch.cat([x[:, :p], x[:, p:] + gather_tokens(pos, context_ids)], dim=1)
        n_ctx = x.shape[1]
        tgt = target_ids.transpose(0, 1).reshape(t * b, k)  # (T*B, K), block-major
        pred_tokens = self.mask_token + gather_tokens(pos.repeat(t, 1, 1), tgt)  # (T*B, K, Dp)
        x = torch.cat([x.repeat(t, 1, 1), pred_tokens], dim=1)  # (T*B, P + Nc + K, Dp)
        for blk in self.predictor_blocks:
            x = blk(x)
        x = self.predictor_norm(x)
        return self.predictor_proj(x[:, n_ctx:])  # (T*B, K, D): target positions only
