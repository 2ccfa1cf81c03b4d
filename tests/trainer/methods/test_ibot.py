"""iBOT patch loss (DINOv2's): a hand-worked value with its weights, the patch centre's update,
Sinkhorn-Knopp over all masked tokens, the mask token placed before the positions, and the
DINO method with iBOT (locals never masked, shared or separate head)."""

import math

import numpy as np
import pytest
import torch

from core.dino_stats import sinkhorn_knopp
from core.vit import embed
from trainer.config import Config, Model
from trainer.data import Batch
from trainer.data.ibot_masks import PatchMasks
from trainer.methods import build_method
from trainer.methods.ibot_loss import IBOTPatchLoss
from trainer.models.backbone import build_backbone

# Three global crops of four patches: crop 0 masks patches 1 and 3, crop 1 masks patch 0, crop 2
# is unmasked. K = 4. The teacher logits are log p + c (c the patch centre, tau_t = 1), the student
# logits tau_s log q, so p_t = p and log softmax(g_s / tau_s) = log q exactly.
P = np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]])
Q = np.array([[0.25, 0.25, 0.25, 0.25], [0.5, 0.25, 0.125, 0.125], [0.4, 0.3, 0.2, 0.1]])
C = np.array([[0.3, -0.2, 0.1, 0.5]])
TAU_S = 0.1
# CE_j = -sum p log q, by hand:
#   token 1: ln 4                                          = 1.3862944
#   token 2: 0.7 ln 2 + 0.1 ln 4 + 0.2 ln 8 = 1.5 ln 2       = 1.0397208
#   token 3: (ln 2.5 + ln 10/3 + ln 5 + ln 10) / 4          = 1.5080718
CE = [math.log(4), 0.7 * math.log(2) + 0.1 * math.log(4) + 0.2 * math.log(8),
      0.25 * (math.log(1 / 0.4) + math.log(1 / 0.3) + math.log(1 / 0.2) + math.log(1 / 0.1))]
WEIGHTS = [1 / 2, 1 / 2, 1]  # 1 / (masked tokens of the crop): crop 0 has two, crop 1 one
N_CROPS = 3  # DINOv2 divides by every global crop, masked or not


def _loss(centering="mean", momentum=0.9):
    return IBOTPatchLoss(4, TAU_S, np.full(10, 1.0), centering, momentum)


def test_loss_equals_the_hand_computed_value_with_weights():
    assert CE[1] == pytest.approx(1.5 * math.log(2)) and CE[2] == pytest.approx(1.5080718, abs=1e-6)
    masks = PatchMasks(torch.tensor([[0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool))
    assert masks.weights.tolist() == WEIGHTS and masks.n_crops == N_CROPS
    loss = _loss()
    loss.center.copy_(torch.tensor(C, dtype=torch.float32))
    t = torch.tensor(np.log(P) + C, dtype=torch.float32)
    s = torch.tensor(TAU_S * np.log(Q), dtype=torch.float32, requires_grad=True)
    out = loss(t, s, masks.weights, masks.n_crops, it=0)
    hand = (0.5 * CE[0] + 0.5 * CE[1] + 1.0 * CE[2]) / 3  # = 0.9070263
    assert hand == pytest.approx(0.9070263, abs=1e-6)
    assert out.loss.item() == pytest.approx(hand, rel=1e-5)
    assert out.stats["ibot/loss"].item() == pytest.approx(hand, rel=1e-5)
    assert out.stats["ibot/ce"].item() == pytest.approx(np.mean(CE), rel=1e-5)  # unweighted, per token
    h = -(P * np.log(P)).sum(-1)
    assert out.stats["ibot/teacher_entropy"].item() == pytest.approx(h.mean(), rel=1e-5)
    assert out.stats["ibot/kl"].item() == pytest.approx(np.mean(CE) - h.mean(), rel=1e-4)
    assert out.stats["ibot/log_k"] == pytest.approx(math.log(4))
    out.loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_patch_centre_update_equals_its_formula():
    loss = _loss(momentum=0.9)
    loss.center.copy_(torch.tensor(C, dtype=torch.float32))
    t = torch.tensor([[1.0, 2.0, 3.0, 4.0], [3.0, 0.0, -1.0, 2.0]])
    loss(t, torch.zeros(2, 4), torch.ones(2), 2, it=0)
    expected = 0.9 * C + 0.1 * np.array([[2.0, 1.0, 1.0, 3.0]])  # c <- m c + (1 - m) mean over masked tokens
    np.testing.assert_allclose(loss.center.numpy(), expected, rtol=1e-6)
    loss(t, torch.zeros(2, 4), torch.ones(2), 2, it=0, update_center=False)
    np.testing.assert_allclose(loss.center.numpy(), expected, rtol=1e-6)  # diagnosis passes leave it alone


def test_sinkhorn_assignments_are_taken_over_all_masked_tokens_together():
    torch.manual_seed(0)
    t = torch.randn(10, 4) * 3  # ten masked tokens from several crops
    loss = IBOTPatchLoss(4, TAU_S, np.full(10, 0.5), "sinkhorn", sinkhorn_iters=3)
    p = loss.teacher_probs(t, it=0)
    np.testing.assert_allclose(p.numpy(), sinkhorn_knopp(t, 0.5, 3).numpy(), rtol=1e-6)
    assert torch.allclose(p.sum(1), torch.ones(10), atol=1e-6)  # each token an assignment
    # not per crop: normalising the first four tokens alone gives other assignments
    assert not torch.allclose(p[:4], sinkhorn_knopp(t[:4], 0.5, 3), atol=1e-3)
    # doubly normalised over all M tokens: with enough iterations every prototype gets M / K
    many = IBOTPatchLoss(4, TAU_S, np.full(10, 0.5), "sinkhorn", sinkhorn_iters=500).teacher_probs(t, it=0)
    assert torch.allclose(many.sum(0), torch.full((4,), 10 / 4), atol=1e-3)
    assert loss.center.abs().sum() == 0  # no centre with Sinkhorn-Knopp


def test_mask_token_replaces_patch_embeddings_before_the_position_embedding():
    torch.manual_seed(1)
    vit = build_backbone(Model(preset="custom", patch_size=4, embed_dim=16, depth=1, num_heads=2, reg_tokens=1), 16)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, [0, 5, 15]] = True
    mask[1, 5] = True
    token = torch.randn(1, 16)
    a, _ = embed(vit, torch.randn(2, 3, 16, 16), mask, token)
    b, _ = embed(vit, torch.randn(2, 3, 16, 16), mask, token)  # other pictures, same masks
    pos = vit.pos_embed[0]  # (16, D): patch positions only (no_embed_class)
    for img, n in [(0, 0), (0, 5), (0, 15), (1, 5)]:
        # masked: the token plus its position, whatever the picture
        assert torch.allclose(a[img, 2 + n], token[0] + pos[n], atol=1e-6)
        assert torch.allclose(a[img, 2 + n], b[img, 2 + n], atol=1e-6)
    unmasked = ~mask
    assert not torch.allclose(a[:, 2:][unmasked], b[:, 2:][unmasked])  # the rest still sees the picture
    # two masked positions differ only by their position embeddings
    assert torch.allclose(a[0, 2 + 0] - a[0, 2 + 15], pos[0] - pos[15], atol=1e-6)


def test_mask_token_on_the_dinov3_backbone_keeps_its_position_through_rope():
    torch.manual_seed(2)
    vit = build_backbone(Model(preset="dinov3-custom", patch_size=4, embed_dim=16, depth=1, num_heads=2), 16).eval()
    with torch.no_grad():  # layer scale at 1 instead of 1e-5, so the attention's effect is large enough to see
        vit.blocks[0].gamma_1.fill_(1.0)
        vit.blocks[0].gamma_2.fill_(1.0)
        vit.cls_token.normal_(0, 1)  # prefix tokens as large as the mask token
        vit.reg_token.normal_(0, 1)
        vit.blocks[0].attn.qkv.weight.mul_(30)  # sharp attention (at init it is almost uniform)
    mask = torch.ones(1, 16, dtype=torch.bool)  # every patch masked: the input is the same token everywhere
    token = torch.randn(1, 16)
    tokens, rope = embed(vit, torch.randn(1, 3, 16, 16), mask, token)
    assert rope is not None and torch.allclose(tokens[0, 5:], token.expand(16, -1))
    from core.vit import run_blocks

    out = run_blocks(vit, tokens, rope)[0, 5:]
    # identical inputs at every patch: only the rotary positions (against the unrotated [CLS] and storage
    # tokens) tell them apart, and they do
    assert (out - out[0]).abs().amax(-1)[1:].min() > 1e-4
    same = run_blocks(vit, tokens, None if rope is None else rope[:1].expand_as(rope))[0, 5:]
    assert torch.allclose(same, same[:1].expand_as(same), atol=1e-5)  # one position for all: no difference


def _cfg(**over):
    return Config().with_overrides([
        "model.preset=custom", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.patch_size=4",
        "data.image_size=16", "dino.out_dim=8", "dino.hidden_dim=32", "dino.bottleneck_dim=16", "dino.n_local=2",
        "dino.local_size_ratio=0.5", "optim.steps=10", "optim.warmup_steps=0", "dino.ibot_weight=1",
        "dino.freeze_last_layer_steps=0"] + [f"{k}={v}" for k, v in over.items()]).validate()


def _batch(b=4):
    return Batch([torch.randn(b, 3, 16, 16) for _ in range(2)] + [torch.randn(b, 3, 8, 8) for _ in range(2)],
                 torch.zeros(b, dtype=torch.long))


def test_dino_with_ibot_masks_half_the_global_crops_and_never_the_locals():
    torch.manual_seed(3)
    m = build_method(_cfg())
    batch = _batch()
    masks = m.draw_masks(0, 4)
    assert masks.n_crops == 8 and int((masks.masks.sum(-1) > 0).sum()) == 4
    with torch.no_grad():
        plain, plain_tokens, _ = m.student(batch.views)
        masked, masked_tokens, _ = m.student(batch.views, masks.masks)
    for v in (2, 3):  # local crops: the same with or without the masks
        assert torch.equal(plain[v], masked[v])
    changed = (plain_tokens - masked_tokens).abs().amax(-1)[:, 1:].reshape(-1) > 0  # (2B * N,)
    assert changed[masks.indices].all()  # every masked patch's token changed
    out = m(batch, it=0)
    assert out.stats["ibot/loss"] > 0 and out.stats["ibot/log_k"] == pytest.approx(math.log(8))
    out.loss.backward()
    assert m.student.mask_token.grad is not None and m.student.mask_token.grad.abs().sum() > 0


def test_separate_ibot_head_has_its_own_prototypes_and_the_same_start_for_the_dino_head():
    torch.manual_seed(4)
    shared = build_method(_cfg())
    torch.manual_seed(4)
    sep = build_method(_cfg(**{"dino.ibot_separate_head": "true", "dino.ibot_out_dim": 12}))
    torch.manual_seed(4)
    plain = build_method(_cfg(**{"dino.ibot_weight": 0}))
    assert shared.student.patch_head() is shared.student.head
    assert sep.student.patch_head().last_layer.out_features == 12 and sep.ibot_loss.center.shape == (1, 12)
    for a, b in zip(plain.student.head.parameters(), sep.student.head.parameters()):
        assert torch.equal(a, b)  # the DINO head starts as in a run without iBOT
    out = sep(_batch(), it=0)
    assert out.stats["ibot/log_k"] == pytest.approx(math.log(12))
    assert not hasattr(plain.student, "mask_token")  # off: the state dict is a plain DINO one
