"""The DINOv3 presets are timm's DINOv3 ViT at our sizes, and every method trains on them: the
token helpers pass the rotary embedding to the blocks and, for MAE / I-JEPA's visible subsets,
the rotary embedding of the kept patches in their order."""

import timm
import torch

from core.vit import block_tokens, embed
from trainer.config import Config, Model
from trainer.data import Batch
from trainer.methods import build_method
from trainer.models.backbone import build_backbone, forward_masked, run_blocks


def test_dinov3_preset_is_timms_dinov3_model_at_our_shape():
    vit = build_backbone(Model(preset="dinov3-cpu-tiny"), 32)
    ref = timm.create_model("vit_small_patch16_dinov3", pretrained=False, patch_size=4, embed_dim=64, depth=4,
                            num_heads=4, img_size=32, num_classes=0, global_pool="token")
    assert type(vit) is type(ref) and vit.num_prefix_tokens == 5  # [CLS] + DINOv3's 4 storage tokens
    assert vit.pos_embed is None and vit.rope is not None  # RoPE instead of learnt positions
    assert torch.all(vit.blocks[0].gamma_1.detach() == 1e-5)  # layer scale as upstream
    assert sorted(k for k, _ in vit.named_parameters()) == sorted(k for k, _ in ref.named_parameters())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(vit.norm(block_tokens(vit, x)), vit.forward_features(x))
    assert build_backbone(Model(preset="dinov3-cpu-tiny", reg_tokens=2), 32).num_prefix_tokens == 3


def test_forward_masked_moves_the_rotary_embedding_with_the_kept_patches():
    torch.manual_seed(0)
    vit = build_backbone(Model(preset="dinov3-cpu-tiny"), 16).eval()
    with torch.no_grad():
        for blk in vit.blocks:  # layer scale at 1 and sharp attention: positions then matter visibly
            blk.gamma_1.fill_(1.0)
            blk.gamma_2.fill_(1.0)
            blk.attn.qkv.weight.mul_(30)
        x = torch.randn(2, 3, 16, 16)
        full = vit.forward_features(x)  # (2, 5 + 16, D)
        order = torch.stack([torch.randperm(16), torch.randperm(16)])
        out = forward_masked(vit, x, order)
        # every patch kept, in a shuffled order: the same tokens, shuffled (attention is order-free)
        for b in range(2):
            assert torch.allclose(out[b, 5:], full[b, 5:][order[b]], atol=1e-4)
        # the same shuffle without moving the rotary embedding gives other features
        tokens, rope = embed(vit, x)
        shuffled = torch.cat([tokens[:, :5], torch.stack([tokens[b, 5:][order[b]] for b in range(2)])], 1)
        wrong = vit.norm(run_blocks(vit, shuffled, rope))
        assert (wrong[:, 5:] - out[:, 5:]).abs().amax() > 0.1


def test_every_method_takes_a_dinov3_backbone():
    base = ["model.preset=dinov3-custom", "model.embed_dim=32", "model.depth=2", "model.num_heads=2",
            "model.patch_size=4", "data.image_size=16", "dino.out_dim=8", "dino.hidden_dim=32",
            "dino.bottleneck_dim=16", "dino.n_local=1", "mae.decoder_dim=32", "mae.decoder_depth=1",
            "mae.decoder_heads=2", "ijepa.pred_dim=32", "ijepa.pred_depth=1", "optim.steps=4", "optim.warmup_steps=0",
            "dino.ibot_weight=1"]
    for method in ("dino", "mae", "ijepa"):
        torch.manual_seed(0)
        m = build_method(Config().with_overrides(base + [f"run.method={method}"]).validate())
        views = [torch.randn(4, 3, 16, 16)] * (2 if method == "dino" else 1)
        views += [torch.randn(4, 3, 8, 8)] if method == "dino" else []
        out = m(Batch(views, torch.zeros(4, dtype=torch.long)), it=0)
        out.loss.backward()
        assert torch.isfinite(out.loss)
        grads = [p.grad for n, p in m.named_parameters() if "patch_embed" in n and p.requires_grad]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), method
