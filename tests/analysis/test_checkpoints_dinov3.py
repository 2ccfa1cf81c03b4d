"""DINOv3 checkpoints in Meta's released layout (and DINOv2 ones with registers) load to the
same outputs and the same attention maps as timm's model built the same way, and the
attention views work with storage tokens and registers."""

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from analysis.attention import attention_maps, inspect_attention, last_layer_attention
from analysis.checkpoints import CheckpointError, load_backbone


def _dinov3(seed=0, qkv_bias=False, **kw):
    """timm's DINOv3 ViT at a tiny size, every weight random (timm zero-inits some)."""
    torch.manual_seed(seed)
    args = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=0, global_pool="token",
                qkv_bias=qkv_bias)
    args.update(kw)
    vit = timm.create_model("vit_small_patch16_dinov3", pretrained=False, **args).eval()
    with torch.no_grad():
        for name, p in vit.named_parameters():
            if name.endswith(("gamma_1", "gamma_2", "cls_token", "reg_token", "bias")):
                p.copy_(torch.randn_like(p) * 0.3)
    return vit


def to_meta_layout(vit) -> dict[str, torch.Tensor]:
    """timm's DINOv3 state dict -> the key names of Meta's released files (what timm's converter
    maps back): storage_tokens, ls1/ls2.gamma, one qkv.bias with its bias_mask (K third 0),
    mask_token, rope_embed.periods (bf16, as released)."""
    sd = vit.state_dict()
    out: dict[str, torch.Tensor] = {}
    d = vit.embed_dim
    for k, v in sd.items():
        if k.endswith("attn.q_bias"):
            base = k[: -len("q_bias")]
            v_bias = sd[base + "v_bias"]
            out[base + "qkv.bias"] = torch.cat([v, torch.randn(d) * 5, v_bias])  # a K bias the mask removes
            out[base + "qkv.bias_mask"] = torch.cat([torch.ones(d), torch.zeros(d), torch.ones(d)])
            continue
        if k.endswith("attn.v_bias"):
            continue
        k = k.replace("reg_token", "storage_tokens").replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma")
        out[k] = v
    if not any(k.endswith("qkv.bias") for k in out):  # the released ViT-S: biases present, all masked to 0
        for i in range(len(vit.blocks)):
            out[f"blocks.{i}.attn.qkv.bias"] = torch.randn(3 * d)
            out[f"blocks.{i}.attn.qkv.bias_mask"] = torch.zeros(3 * d)
    out["mask_token"] = torch.zeros(1, d)
    out["rope_embed.periods"] = vit.rope.periods.to(torch.bfloat16)
    return out


def _images(n=3, size=16):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def _assert_same_outputs_and_attention(ref, got, size=16):
    x = _images(size=size)
    with torch.no_grad():
        torch.testing.assert_close(got.forward_features(x), ref.forward_features(x), rtol=1e-5, atol=1e-5)
    for a, b in zip(attention_maps(ref, x), attention_maps(got, x)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_meta_layout_file_round_trips_to_identical_outputs_and_attention(tmp_path, qkv_bias):
    ref = _dinov3(qkv_bias=qkv_bias)
    meta = to_meta_layout(ref)
    assert "storage_tokens" in meta and "blocks.0.ls1.gamma" in meta and "blocks.1.attn.qkv.bias_mask" in meta
    save_file(meta, tmp_path / "dinov3_vits16_pretrain.safetensors")
    out = load_backbone(tmp_path / "dinov3_vits16_pretrain.safetensors")
    assert out.layout == "dinov3" and type(out.vit) is type(ref)
    assert out.vit.num_prefix_tokens == 5  # [CLS] + 4 storage tokens
    assert out.vit.blocks[0].attn.num_heads == 2  # read from the RoPE periods, not width / 64
    _assert_same_outputs_and_attention(ref, out.vit)
    _assert_same_outputs_and_attention(ref, out.vit, size=24)  # RoPE: any grid
    # the training checkpoint form: teacher.backbone. inside a "model" dict, heads beside it
    torch.save({"model": {f"teacher.backbone.{k}": v for k, v in meta.items()}
                | {"teacher.dino_head.mlp.0.weight": torch.randn(8, 32)}}, tmp_path / "model_final.pth")
    again = load_backbone(tmp_path / "model_final.pth")
    assert again.prefix == "model.teacher.backbone." and "model.teacher.dino_head.mlp.0.weight" in again.ignored
    _assert_same_outputs_and_attention(ref, again.vit)


def test_a_key_bias_timm_cannot_hold_is_refused(tmp_path):
    meta = to_meta_layout(_dinov3(qkv_bias=True))
    meta["blocks.0.attn.qkv.bias_mask"] = torch.ones_like(meta["blocks.0.attn.qkv.bias_mask"])
    save_file(meta, tmp_path / "odd.safetensors")
    with pytest.raises(CheckpointError, match="key bias"):
        load_backbone(tmp_path / "odd.safetensors")


def test_attention_views_split_storage_tokens_from_patches():
    vit = _dinov3()
    x = _images(2)
    res = last_layer_attention(vit, x)
    full = attention_maps(vit, x)[-1]  # (2, heads, 5 + 16, 5 + 16)
    assert res.num_prefix == 5 and res.cls_attn.shape == (2, 2, 4, 4) and res.register_maps.shape == (2, 2, 4, 4, 4)
    total = full[:, :, 0, 0].numpy() + res.register_from_cls.sum(-1) + res.cls_attn.sum((-2, -1))
    np.testing.assert_allclose(total, 1.0, rtol=1e-5)  # [CLS] row: itself + storage + patches
    view = inspect_attention(vit, x[:1], np.ones((16, 16), bool))
    assert view.cls_attn.shape == (2, 4, 4) and view.register_share is not None and view.rollout.shape == (4, 4)
    assert view.token_norm.shape == (4, 4) and 0 <= view.jaccard.mean <= 1


def test_dinov2_file_with_registers_gives_the_same_attention_maps(tmp_path):
    from tests.analysis.test_checkpoints import _to_dinov2, _vit

    ref = _vit(depth=2, reg_tokens=4, no_embed_class=True, init_values=1e-5)
    save_file(_to_dinov2(ref.state_dict(), chunks=1), tmp_path / "dinov2_vits14_reg4.safetensors")
    out = load_backbone(tmp_path / "dinov2_vits14_reg4.safetensors")
    _assert_same_outputs_and_attention(ref, out.vit)
    view = inspect_attention(out.vit, _images(1))
    assert view.register_share is not None and view.cls_attn.shape == (2, 4, 4)
