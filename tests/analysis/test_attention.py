"""Attention maps: really captured, rows sum to 1, equal to softmax(q k^T / sqrt(d)) computed
by hand; masks keep the requested mass; Jaccard and rollout on hand-worked cases."""

import numpy as np
import pytest
import torch

from analysis.attention import (
    attention_jaccard,
    attention_maps,
    attention_rollout,
    high_norm_tokens,
    jaccard,
    last_layer_attention,
    mass_mask,
    token_norms,
    upsample,
)
from tests.analysis.conftest import tiny_vit


def _manual_last_block_attention(vit, images):
    seen = []
    h = vit.blocks[-1].register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.no_grad():
        vit.forward_features(images)
    h.remove()
    blk = vit.blocks[-1]
    x = blk.norm1(seen[0])  # (B, L, D)
    b, n, d = x.shape
    heads = blk.attn.num_heads
    qkv = blk.attn.qkv(x).reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)  # (3, B, heads, L, hd)
    q, k = qkv[0], qkv[1]
    return torch.softmax(q @ k.transpose(-2, -1) / (d // heads) ** 0.5, dim=-1)


def test_maps_match_manual_qk_and_rows_sum_to_one(vit_reg):
    images = torch.randn(3, 3, 16, 16)
    fused_before = [b.attn.fused_attn for b in vit_reg.blocks]
    maps = attention_maps(vit_reg, images)
    assert len(maps) == len(vit_reg.blocks)  # fused attention would have given none
    assert [b.attn.fused_attn for b in vit_reg.blocks] == fused_before  # restored afterwards
    last = maps[-1]
    assert last.shape == (3, 2, 3 + 16, 3 + 16)
    torch.testing.assert_close(last.sum(-1), torch.ones(3, 2, 19))
    torch.testing.assert_close(last, _manual_last_block_attention(vit_reg, images), rtol=1e-5, atol=1e-6)


def test_last_layer_attention_split_by_token_kind(vit_reg):
    images = torch.randn(2, 3, 16, 24)  # non-square, dynamic size: 4 x 6 patches
    res = last_layer_attention(vit_reg, images)
    full = attention_maps(vit_reg, images, [1])[0]
    assert res.cls_attn.shape == (2, 2, 4, 6) and res.register_maps.shape == (2, 2, 2, 4, 6)
    # [CLS] row = [CLS]->CLS + [CLS]->registers + [CLS]->patches = 1
    total = full[:, :, 0, 0].numpy() + res.register_from_cls.sum(-1) + res.cls_attn.sum((-2, -1))
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    np.testing.assert_allclose(res.mean_attn, res.cls_attn.mean(1), atol=1e-7)
    np.testing.assert_allclose(res.register_share.reshape(2, -1),
                               full[:, :, 3:, 1:3].sum(-1).mean(1).numpy(), atol=1e-6)


def test_mass_mask_hand_case_and_minimality():
    m = np.array([[0.5, 0.3], [0.15, 0.05]])
    assert mass_mask(m, 0.6).tolist() == [[True, True], [False, False]]
    assert mass_mask(m, 0.5).tolist() == [[True, False], [False, False]]
    rng = np.random.default_rng(0)
    maps = rng.random((20, 5, 7)) ** 3
    for keep in (0.3, 0.6, 0.9):
        mask = mass_mask(maps, keep)
        for a, k in zip(maps, mask):
            share = a[k].sum() / a.sum()
            assert share >= keep - 1e-12
            assert share - a[k].min() / a.sum() < keep  # dropping the smallest kept value falls short
    with pytest.raises(ValueError, match="keep"):
        mass_mask(maps, 0.0)


def test_jaccard_hand_case():
    pred = np.zeros((4, 4), bool)
    pred[:2, :2] = True
    target = np.zeros((4, 4), bool)
    target[:2, :3] = True
    assert jaccard(pred, target) == pytest.approx(4 / 6)
    assert jaccard(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    np.testing.assert_array_equal(upsample(np.array([[1, 2]]), 2), [[1, 1, 2, 2], [1, 1, 2, 2]])


def test_attention_jaccard_is_consistent_with_masks(vit):
    images = torch.randn(4, 3, 16, 16)
    res = last_layer_attention(vit, images)
    gt = upsample(mass_mask(res.mean_attn, 0.6), 4)  # object mask = the attention mask itself
    out = attention_jaccard(vit, images, gt)
    np.testing.assert_allclose(out.per_image, 1.0)
    assert out.per_head.shape == (2,) and 0 <= out.best_head < 2
    empty = attention_jaccard(vit, images, ~gt)  # the complement shares nothing
    np.testing.assert_allclose(empty.per_image, 0.0)


def test_rollout_hand_worked():
    a = torch.tensor([[0.2, 0.8], [0.6, 0.4]]).view(1, 1, 2, 2)
    # A_hat = 0.5 A + 0.5 I = [[0.6, 0.4], [0.3, 0.7]]; two blocks: A_hat @ A_hat, row 0 = [0.48, 0.52]
    out = attention_rollout([a, a], num_prefix_tokens=1, grid=(1, 1))
    np.testing.assert_allclose(out, [[[0.52]]], atol=1e-6)


def test_token_norms_match_blocks_output():
    vit = tiny_vit(reg_tokens=1)
    images = torch.randn(2, 3, 16, 16)
    from trainer.models.backbone import embed_tokens

    with torch.no_grad():
        ref = vit.blocks(embed_tokens(vit, images)).norm(dim=-1).numpy()
    norms = token_norms(vit, images)
    np.testing.assert_allclose(norms, ref, rtol=1e-5)
    fake = np.ones((1, 2 + 4))
    fake[0, 3] = 5.0  # one patch token at 5x the median
    assert high_norm_tokens(fake, 2).tolist() == [[False, True, False, False]]
