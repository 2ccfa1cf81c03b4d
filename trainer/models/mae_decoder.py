"""MAE's light decoder (He et al. 2022; models_mae.py's decoder half, same names).

The encoder's tokens (prefix + visible patches) are projected to the decoder width; a
learnable ``mask_token`` fills every masked place; ``ids_restore`` puts the patch tokens back
in raster order; fixed 2-D sin-cos positions are added to the patch tokens (prefix tokens get
none, as in the encoder with ``no_embed_class``); a few timm ``Block``s, a norm, and
``decoder_pred`` map each patch token to its patch * patch * 3 pixels. Prefix tokens ([CLS],
registers) go through the blocks and are dropped before the prediction.

The same module holds the decoder of an official models_mae.py file (``analysis.mae_file``):
its blocks and norm use LayerNorm eps 1e-6 and ``set_positions`` takes the file's stored
positions, whose [CLS] row models_mae adds too (zeros there).
"""

from __future__ import annotations

from functools import partial

import torch
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import nn


class MAEDecoder(nn.Module):
    """Encoder tokens (B, P + N_keep, D_enc) + ``ids_restore`` (B, N) -> pixels (B, N, p*p*3)."""

    def __init__(self, embed_dim: int, decoder_dim: int, depth: int, num_heads: int, grid: int,
                 patch_size: int, num_prefix: int, in_chans: int = 3, mlp_ratio: float = 4.0,
                 norm_eps: float = 1e-5):
        super().__init__()
        self.num_prefix = num_prefix
        self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        # fixed, not learnt (MAE); not persistent: rebuilt from the config, not checkpointed
        pos = build_sincos2d_pos_embed([grid, grid], decoder_dim)  # (grid*grid, Dd), raster order
        self.register_buffer("decoder_pos_embed", pos.unsqueeze(0), persistent=False)
        self.register_buffer("decoder_prefix_pos", torch.zeros(1, num_prefix, decoder_dim), persistent=False)
        norm = partial(nn.LayerNorm, eps=norm_eps)
        self.decoder_blocks = nn.ModuleList(
            [Block(decoder_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(depth)])
        self.decoder_norm = norm(decoder_dim)
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

    def set_positions(self, pos: torch.Tensor) -> None:
        """Use stored positions (1, P + N, Dd), prefix rows first (models_mae's ``decoder_pos_embed``)."""
        p = self.num_prefix
        if tuple(pos.shape) != (1, p + self.decoder_pos_embed.shape[1], self.decoder_pos_embed.shape[2]):
            raise ValueError(f"decoder positions {tuple(pos.shape)} do not fit {p} prefix tokens and a "
                             f"{tuple(self.decoder_pos_embed.shape[1:])} patch grid")
        self.decoder_prefix_pos = pos[:, :p].clone()
        self.decoder_pos_embed = pos[:, p:].clone()

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(latent)  # (B, P + N_keep, Dd)
        p = self.num_prefix
        b, n = ids_restore.shape
        n_keep = x.shape[1] - p
        mask_tokens = self.mask_token.expand(b, n - n_keep, -1)  # (B, N - N_keep, Dd)
        patches = torch.cat([x[:, p:], mask_tokens], dim=1)  # (B, N, Dd), shuffled order
        patches = torch.gather(patches, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # unshuffle
        patches = patches + self.decoder_pos_embed
        x = torch.cat([x[:, :p] + self.decoder_prefix_pos, patches], dim=1)  # (B, P + N, Dd); prefix: 0 in training
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        return self.decoder_pred(x[:, p:])  # (B, N, p*p*3): prefix dropped
