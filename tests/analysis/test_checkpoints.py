"""Every checkpoint layout loads to the same outputs as the model it was written from; pickles
that would run code are refused before they can."""

import argparse
import os

import pytest
import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

from analysis.checkpoints import CheckpointError, load_backbone, read_weights


def _vit(seed=0, **kw):
    torch.manual_seed(seed)
    args = dict(img_size=16, patch_size=4, embed_dim=128, depth=2, num_heads=2, num_classes=0, dynamic_img_size=True)
    args.update(kw)
    vit = VisionTransformer(**args).eval()
    with torch.no_grad():  # timm zero-inits some tensors; randomise so every weight matters
        for name, p in vit.named_parameters():
            if name.endswith(("gamma", "cls_token", "reg_token", "pos_embed")) or ".bias" in name:
                p.copy_(torch.randn_like(p) * 0.1)
    return vit


def _images(n=3, size=16):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def _assert_same(a, b, size=16):
    x = _images(size=size)
    with torch.no_grad():
        torch.testing.assert_close(b.forward_features(x), a.forward_features(x), rtol=1e-5, atol=1e-5)


def _prefixed(sd, prefix):
    return {prefix + k: v for k, v in sd.items()}


def test_dino_backbone_file_pth(tmp_path):
    ref = _vit()  # [CLS] with a position, as DINO's own ViT
    torch.save(ref.state_dict(), tmp_path / "dino_deitsmall16_pretrain.pth")
    out = load_backbone(tmp_path / "dino_deitsmall16_pretrain.pth")
    assert out.layout == "plain" and out.prefix == ""
    _assert_same(ref, out.vit)
    _assert_same(ref, out.vit, size=24)  # another image size through the resampled positions


def test_dino_full_training_checkpoint(tmp_path):
    teacher, student = _vit(0), _vit(1)
    ck = {"student": _prefixed(student.state_dict(), "module.backbone.")
          | {"module.head.mlp.0.weight": torch.randn(8, 128)},
          "teacher": _prefixed(teacher.state_dict(), "backbone.") | {"head.last_layer.weight_g": torch.ones(4, 1)},
          "epoch": 10, "args": argparse.Namespace(arch="vit_small", out_dim=65536)}
    torch.save(ck, tmp_path / "checkpoint.pth")
    out = load_backbone(tmp_path / "checkpoint.pth")
    assert out.layout == "dino-train" and out.prefix == "teacher.backbone."
    assert "teacher.head.last_layer.weight_g" in out.ignored
    _assert_same(teacher, out.vit)
    _assert_same(student, load_backbone(tmp_path / "checkpoint.pth", part="student").vit)
    with pytest.raises(CheckpointError, match="part 'predictor' is not in"):
        load_backbone(tmp_path / "checkpoint.pth", part="predictor")


def _to_dinov2(sd, chunks):
    """timm ViT (registers, no_embed_class, LayerScale) -> DINOv2's own key layout."""
    out = {}
    p0 = torch.randn(1, 1, sd["cls_token"].shape[-1]) * 0.1  # DINOv2 gives [CLS] a position
    if "reg_token" in sd:
        out["register_tokens"] = sd["reg_token"]
        out["cls_token"] = sd["cls_token"] - p0
        out["pos_embed"] = torch.cat([p0, sd["pos_embed"]], 1)
    out["mask_token"] = torch.zeros(1, sd["cls_token"].shape[-1])
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    per = depth // chunks
    for k, v in sd.items():
        if k.startswith("blocks."):
            i = int(k.split(".")[1])
            k = k.replace(f"blocks.{i}.", f"blocks.{i // per}.{i}." if chunks > 1 else f"blocks.{i}.", 1)
        if k not in out and k not in ("reg_token",):
            out.setdefault(k, v)
    return out


def test_dinov2_registers_layerscale_chunked_blocks(tmp_path):
    ref = _vit(depth=4, reg_tokens=4, no_embed_class=True, init_values=1e-5)
    dv2 = _to_dinov2(ref.state_dict(), chunks=2)
    assert "blocks.1.3.ls2.gamma" in dv2 and "register_tokens" in dv2
    save_file(dv2, tmp_path / "dinov2_reg.safetensors")
    out = load_backbone(tmp_path / "dinov2_reg.safetensors")
    assert out.layout == "dinov2" and out.vit.num_reg_tokens == 4
    _assert_same(ref, out.vit)
    # the training checkpoint form: teacher.backbone. prefix inside a "model" dict
    torch.save({"model": _prefixed(dv2, "teacher.backbone.") | _prefixed(dv2, "student.backbone."),
                "iteration": 5}, tmp_path / "model_0000005.pth")
    _assert_same(ref, load_backbone(tmp_path / "model_0000005.pth").vit)


def test_dinov2_without_registers(tmp_path):
    ref = _vit(init_values=1e-5)  # [CLS] position inside pos_embed, as dinov2_vits14
    sd = ref.state_dict() | {"mask_token": torch.zeros(1, 128)}
    torch.save(sd, tmp_path / "dinov2_vits14_pretrain.pth")
    _assert_same(ref, load_backbone(tmp_path / "dinov2_vits14_pretrain.pth").vit)


def test_mae_encoder_only_and_with_decoder(tmp_path):
    ref = _vit()
    torch.save({"model": ref.state_dict()}, tmp_path / "mae_pretrain_vit_base.pth")
    _assert_same(ref, load_backbone(tmp_path / "mae_pretrain_vit_base.pth").vit)
    dec = {"mask_token": torch.zeros(1, 1, 64), "decoder_embed.weight": torch.randn(64, 128),
           "decoder_pos_embed": torch.zeros(1, 17, 64), "decoder_blocks.0.norm1.weight": torch.ones(64),
           "decoder_norm.weight": torch.ones(64), "decoder_pred.weight": torch.randn(48, 64)}
    torch.save({"model": ref.state_dict() | dec, "epoch": 3, "args": argparse.Namespace(mask_ratio=0.75)},
               tmp_path / "mae_visualize.pth")
    out = load_backbone(tmp_path / "mae_visualize.pth")
    assert out.layout == "mae" and "model.mask_token" in out.ignored and "model.decoder_pred.weight" in out.ignored
    _assert_same(ref, out.vit)


def test_ijepa_encoder_target_encoder_predictor(tmp_path):
    kw = dict(class_token=False, global_pool="avg", fc_norm=False)  # I-JEPA: no [CLS], final norm
    enc, target = _vit(0, **kw), _vit(1, **kw)
    ck = {"encoder": _prefixed(enc.state_dict(), "module."),
          "target_encoder": _prefixed(target.state_dict(), "module."),
          "predictor": {"module.predictor_embed.weight": torch.randn(32, 128),
                        "module.mask_token": torch.zeros(1, 1, 32)},
          "epoch": 1, "lr": 0.001}
    torch.save(ck, tmp_path / "IN1K-vit.h.14-300e.pth.tar")
    out = load_backbone(tmp_path / "IN1K-vit.h.14-300e.pth.tar")
    assert out.layout == "ijepa" and out.prefix == "target_encoder.module." and out.vit.cls_token is None
    _assert_same(target, out.vit)
    _assert_same(enc, load_backbone(tmp_path / "IN1K-vit.h.14-300e.pth.tar", part="encoder").vit)


def test_timm_model_name_with_local_weights(tmp_path):
    import timm

    torch.manual_seed(0)
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()  # with its 1000-way head
    save_file(ref.state_dict(), tmp_path / "vit_tiny.safetensors")
    out = load_backbone(tmp_path / "vit_tiny.safetensors", model_name="vit_tiny_patch16_224")
    assert out.layout == "timm" and "head.weight" in out.ignored
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(out.vit.forward_features(x), ref.forward_features(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(CheckpointError, match="timm has no model"):
        load_backbone(tmp_path / "vit_tiny.safetensors", model_name="vit_nonexistent_9")


def test_num_heads_override(tmp_path):
    ref = _vit(embed_dim=32, num_heads=2)  # head dim 16: width / 64 would guess wrong
    save_file(ref.state_dict(), tmp_path / "w.safetensors")
    _assert_same(ref, load_backbone(tmp_path / "w.safetensors", num_heads=2).vit)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = str(tmp_path / "was_executed")
    torch.save({"cls_token": torch.zeros(1, 1, 8), "payload": _RunsCode(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError) as e:
        load_backbone(tmp_path / "evil.pth")
    msg = str(e.value)
    assert "refused" in msg and "mkdir" in msg and "safetensors" in msg and "\n" not in msg
    assert not os.path.exists(marker)  # the payload never ran


def test_bad_files_give_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_weights(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable"):
        read_weights(tmp_path / "junk.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        read_weights(tmp_path / "junk.safetensors")
    save_file({"fc.weight": torch.zeros(2, 2)}, tmp_path / "mlp.safetensors")
    with pytest.raises(CheckpointError, match="holds no ViT backbone"):
        load_backbone(tmp_path / "mlp.safetensors")


def test_sslscope_checkpoint_uses_its_run_config(tmp_path):
    from tests.analysis.conftest import make_run

    run_dir, method = make_run(tmp_path, "mae", **{"model.reg_tokens": 2})
    out = load_backbone(run_dir / "checkpoints" / "step_0.safetensors")
    assert out.layout == "sslscope" and out.prefix == "encoder."
    _assert_same(method.encoder(), out.vit)
    # without the run around it, the same file is read by its keys (heads from num_heads)
    import shutil

    lone = tmp_path / "lone.safetensors"
    shutil.copy(run_dir / "checkpoints" / "step_0.safetensors", lone)
    alone = load_backbone(lone, num_heads=2)
    assert alone.prefix == "encoder." and alone.vit.num_reg_tokens == 2
    _assert_same(method.encoder(), alone.vit)


def _wide_vit(dim, heads, seed=0, **kw):
    """A one-block ViT of a released width (patch 16, 32 px: 4 patches), every weight random."""
    return _vit(seed, img_size=32, patch_size=16, embed_dim=dim, depth=1, num_heads=heads, mlp_ratio=0.25, **kw)


def _assert_differs(a, b, size=32):
    x = _images(size=size)
    with torch.no_grad():
        assert (b.forward_features(x) - a.forward_features(x)).abs().max() > 1e-3


def test_ijepa_vit_g16_file_loads_with_16_heads_not_width_over_64(tmp_path):
    kw = dict(class_token=False, global_pool="avg", fc_norm=False)
    ref = _wide_vit(1408, 16, **kw)  # I-JEPA's ViT-g/16: width 1408, 16 heads of 88
    path = tmp_path / "IN22K-vit.g.16-600e.pth.tar"
    torch.save({"target_encoder": _prefixed(ref.state_dict(), "module."), "epoch": 600}, path)
    out = load_backbone(path)
    assert out.vit.blocks[0].attn.num_heads == 16 and out.heads.known
    assert "width 1408" in out.heads.source and "I-JEPA" in out.heads.source
    _assert_same(ref, out.vit, size=32)
    # the old rule, width / 64 = 22 heads, loads the same weights without complaint and answers wrongly
    _assert_differs(ref, load_backbone(path, num_heads=22).vit)


def test_head_count_from_the_files_training_arguments_and_timm_names(tmp_path):
    import json

    ref = _vit(embed_dim=384, num_heads=6)
    torch.save({"teacher": ref.state_dict(), "args": argparse.Namespace(arch="vit_small", patch_size=8)},
               tmp_path / "checkpoint.pth")
    out = load_backbone(tmp_path / "checkpoint.pth")
    assert out.heads.heads == 6 and "vit_small_patch8_224" in out.heads.source
    # SigLIP's So400m: width 1152 is in no table and width / 64 = 18, but its timm name says 16
    so = _wide_vit(1152, 16)
    named = tmp_path / "vit_so400m_patch14_siglip_224.webli.safetensors"
    save_file(so.state_dict(), named)
    out = load_backbone(named)
    assert out.heads.heads == 16 and out.heads.known and "vit_so400m_patch14_siglip_224" in out.heads.source
    _assert_same(so, out.vit, size=32)
    hub = tmp_path / "hub"  # Hugging Face's timm layout: model.safetensors beside config.json
    hub.mkdir()
    save_file(so.state_dict(), hub / "model.safetensors")
    (hub / "config.json").write_text(json.dumps({"architecture": "vit_so400m_patch14_siglip_224"}))
    assert load_backbone(hub / "model.safetensors").heads.heads == 16
    (hub / "config.json").unlink()
    guessed = load_backbone(hub / "model.safetensors")
    assert guessed.heads.heads == 18 and not guessed.heads.known


def test_a_width_in_no_table_is_flagged_as_a_guess_and_the_count_can_be_given(tmp_path):
    ref = _vit(embed_dim=80, num_heads=5)  # head dim 16: no official size, width / 64 says 1
    save_file(ref.state_dict(), tmp_path / "mine.safetensors")
    out = load_backbone(tmp_path / "mine.safetensors")
    assert (out.heads.heads, out.heads.known) == (1, False)
    assert "a guess: width 80 is no official ViT size" in out.heads.source
    given = load_backbone(tmp_path / "mine.safetensors", num_heads=5)
    assert given.heads.known and given.heads.source == "your setting"
    _assert_same(ref, given.vit)
    _assert_differs(ref, out.vit, size=16)
    with pytest.raises(CheckpointError, match="not divisible by 3 heads"):
        load_backbone(tmp_path / "mine.safetensors", num_heads=3)
