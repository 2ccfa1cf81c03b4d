"""An official MAE file with its decoder gives the reconstructions of the model it was saved from.

The reference is a small MaskedAutoencoderViT written here after facebookresearch/mae's
models_mae.py (timm PatchEmbed and Blocks, LayerNorm eps 1e-6, positions added to [CLS] too,
random masking by argsort of noise); its state dict, saved as the MAE authors save theirs
({"model": ..., "args": ...}), is loaded through ``analysis.source.open_source`` and
reconstructed with ``analysis.reconstruction.reconstruct``.
"""

from __future__ import annotations

import argparse
from functools import partial

import numpy as np
import pytest
import torch
from timm.models.vision_transformer import Block, PatchEmbed
from torch import nn

from analysis.reconstruction import reconstruct
from analysis.source import open_source, split_images
from trainer.data.datasets import normalize


class MaskedAutoencoderViT(nn.Module):
    """models_mae.py's MaskedAutoencoderViT, small, with every weight random (positions too,
    the [CLS] rows included, so that every term of the forward matters)."""

    def __init__(self, img_size=16, patch_size=4, embed_dim=192, depth=2, num_heads=3, decoder_embed_dim=64,
                 decoder_depth=2, decoder_num_heads=16, mlp_ratio=4.0):
        super().__init__()
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.patch_embed = PatchEmbed(img_size, patch_size, 3, embed_dim)
        n = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, embed_dim) * 0.1, requires_grad=False)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
                                     for _ in range(depth)])
        self.norm = norm_layer(embed_dim)
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim, bias=True)
        self.mask_token = nn.Parameter(torch.randn(1, 1, decoder_embed_dim) * 0.02)
        self.decoder_pos_embed = nn.Parameter(torch.randn(1, n + 1, decoder_embed_dim) * 0.1, requires_grad=False)
        self.decoder_blocks = nn.ModuleList([Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True,
                                                   norm_layer=norm_layer) for _ in range(decoder_depth)])
        self.decoder_norm = norm_layer(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size ** 2 * 3, bias=True)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith(".bias") or "norm" in name:
                    p.add_(torch.randn_like(p) * 0.1)

    def random_masking(self, x, mask_ratio, noise):
        n, length, d = x.shape
        len_keep = int(length * (1 - mask_ratio))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_masked = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, d))
        mask = torch.ones([n, length])
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, dim=1, index=ids_restore)
        return x_masked, mask, ids_restore

    def forward_encoder(self, x, mask_ratio, noise):
        x = self.patch_embed(x)
        x = x + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, mask_ratio, noise)
        cls_token = self.cls_token + self.pos_embed[:, :1, :]
        x = torch.cat((cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, x, ids_restore):
        x = self.decoder_embed(x)
        mask_tokens = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, dim=1, index=ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1)
        x = x + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        return self.decoder_pred(x)[:, 1:, :]

    def unpatchify(self, x):
        p = self.patch_embed.patch_size[0]
        h = w = int(x.shape[1] ** 0.5)
        x = x.reshape(x.shape[0], h, w, p, p, 3)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], 3, h * p, h * p)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    torch.manual_seed(0)
    ref = MaskedAutoencoderViT().eval()
    path = tmp_path_factory.mktemp("mae") / "mae_visualize_vit_tiny.pth"
    torch.save({"model": ref.state_dict(), "args": argparse.Namespace(model="mae_vit_tiny", mask_ratio=0.75,
                                                                      norm_pix_loss=False)}, path)
    return ref, path


@pytest.mark.parametrize("ratio, seed", [(0.75, 3), (0.5, 11)])
def test_reconstructions_equal_the_reference_models(official, ratio, seed):
    ref, path = official
    src = open_source(path)
    assert src.layout == "mae" and src.mae is not None and src.mae.image_size == 16
    assert src.heads.heads == 3 and "vit_tiny" in src.heads.source  # ViT-Ti, from the args' model name
    assert "16 heads" in src.notes[0] and "mask ratio 0.75" in src.notes[0]
    images = split_images(src, "val", 4, image_size=src.mae.image_size)[0]
    x = normalize(images)
    r = reconstruct(src.mae, x, ratio, seed)
    # the reference with the same noise (reconstruct draws it from a generator seeded with seed)
    noise = torch.rand(x.shape[0], 16, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        latent, mask, ids_restore = ref.forward_encoder(x, ratio, noise)
        expected = ref.unpatchify(ref.forward_decoder(latent, ids_restore))
    np.testing.assert_array_equal(r.mask.reshape(len(x), -1), mask.numpy().astype(bool))
    np.testing.assert_allclose(r.prediction, expected.numpy(), rtol=1e-5, atol=1e-5)
    assert r.mask.mean() == ratio and r.mask_ratio == ratio


def test_the_decoder_positions_are_the_files(official, tmp_path):
    """A decoder with timm's own sin-cos positions (what SSLScope trains with) would differ:
    the file's positions, [CLS] row included, are the ones used."""
    ref, path = official
    src = open_source(path)
    sd = torch.load(path, weights_only=False)["model"]
    sd["decoder_pos_embed"] = torch.zeros_like(sd["decoder_pos_embed"])
    torch.save({"model": sd}, tmp_path / "zero_pos.pth")
    other = open_source(tmp_path / "zero_pos.pth")
    assert "released visualisation files" in other.notes[0]  # no args: the defaults are said
    x = normalize(split_images(src, "val", 2, image_size=16)[0])
    a, b = reconstruct(src.mae, x, 0.75, 0), reconstruct(other.mae, x, 0.75, 0)
    assert np.abs(a.prediction - b.prediction).max() > 1e-3


def test_an_encoder_only_or_partial_decoder_file_gives_no_reconstructions_and_says_why(official, tmp_path):
    ref, path = official
    sd = torch.load(path, weights_only=False)["model"]
    torch.save({"model": {k: v for k, v in sd.items() if not k.startswith(("decoder", "mask_token"))}},
               tmp_path / "mae_pretrain_vit_tiny.pth")
    enc = open_source(tmp_path / "mae_pretrain_vit_tiny.pth")
    assert enc.mae is None and enc.notes == []
    torch.save({"model": {k: v for k, v in sd.items() if k != "decoder_pred.weight"}}, tmp_path / "partial.pth")
    part = open_source(tmp_path / "partial.pth")
    assert part.mae is None and "no decoder_pred.weight" in part.notes[0]


def test_the_cli_writes_reconstructions_of_an_official_file(official, tmp_path, capsys):
    from analysis.__main__ import main

    _, path = official
    assert main([str(path), "--out", str(tmp_path / "out"), "--what", "reconstruction", "--mask-ratio", "0.5",
                 "--n-images", "2"]) == 0
    out = capsys.readouterr().out
    assert "3 attention heads, from the timm model vit_tiny_patch16_224" in out
    assert "MAE masked-patch PSNR at ratio 0.5" in out
    assert (tmp_path / "out" / "reconstruction.png").is_file() and (tmp_path / "out" / "reconstruction.csv").is_file()
