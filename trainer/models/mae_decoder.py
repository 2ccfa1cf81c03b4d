"""MAE's light decoder (He et al. 2022; models_mae.py's decoder half, same names).

The encoder's tokens (prefix + visible patches) are projected to the decoder width; a
learnable ``mask_token`` fills every masked place; ``ids_restore`` puts the patch tokens back
in raster order; fixed 2-D sin-cos positions are added to the patch tokens (prefix tokens get
none, as in the encoder with ``no_embed_class``); a few timm ``Block``s, a norm, and
``decoder_pred`` map each patch token to its patch * patch * 3 pixels. Prefix tokens ([CLS],
registers) go through the blocks and are dropped before the prediction.
"""

from __future__ import annotations

import torch
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import nn


class MAEDecoder(nn.Module):
    """Encoder tokens (B, P + N_keep, D_enc) + ``ids_restore`` (B, N) -> pixels (B, N, p*p*3)."""

    def __init__(self, embed_dim: int, decoder_dim: int, depth: int, num_heads: int, grid: int,
                 patch_size: int, num_prefix: int, in_chans: int = 3):
        super().__init__()
        self.num_prefix = num_prefix
        self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        # fixed, not learnt (MAE); not persistent: rebuilt from the config, not checkpointed
        pos = build_sincos2d_pos_embed([grid, grid], decoder_dim)  # (grid*grid, Dd), raster order
        self.register_buffer("decoder_pos_embed", pos.unsqueeze(0), persistent=False)
        self.decoder_blocks = nn.ModuleList(
            [Block(decoder_dim, num_heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, patch_size ** 2 * in_chans)
        self._init_weights()

    def _init_weights(self) -> None:
        # as models_mae.initialize_weights: normal mask token, xavier linears, unit LayerNorms
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(latent)  # (B, P + N_keep, Dd)
        p = self.num_prefix
        b, n = ids_restore.shape
        n_keep = x.shape[1] - p
        mask_tokens = self.mask_token.expand(b, n - n_keep, -1)  # (B, N - N_keep, Dd)
        patches = torch.cat([x[:, p:], mask_tokens], dim=1)  # (B, N, Dd), shuffled order
        patches = torch.gather(patches, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # unshuffle
        patches = patches + self.decoder_pos_embed
        x = torch.cat([x[:, :p], patches], dim=1)  # (B, P + N, Dd)
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        return self.decoder_pred(x[:, p:])  # (B, N, p*p*3): prefix dropped
