"""I-JEPA as a module: the loss sees the predictor's target positions only, the target
encoder gets no gradient and follows its EMA formula, targets are the layer-normed target
features, and the switches (ema off, regularisers) do what they say."""

import math

import pytest
import torch
import torch.nn.functional as F

from trainer.config import Config, ConfigError
from trainer.data import Batch
from trainer.data.masking import step_generator
from trainer.methods import build_method
from trainer.methods.ijepa import jepa_loss, variance_hinge
from trainer.models.backbone import num_prefix


def _cfg(**over):
    cfg = Config().with_overrides([
        "run.method=ijepa", "model.preset=custom", "model.embed_dim=32", "model.depth=2", "model.num_heads=2",
        "model.patch_size=4", "data.image_size=32", "ijepa.pred_dim=16", "ijepa.pred_depth=1",
        "optim.steps=11", "optim.warmup_steps=0",
    ] + [f"{k}={v}" for k, v in over.items()])
    return cfg.validate()


def _batch(b=4):
    return Batch([torch.randn(b, 3, 32, 32)], torch.zeros(b, dtype=torch.long))


def test_loss_depends_on_predictor_outputs_at_target_positions_only():
    torch.manual_seed(0)
    m = build_method(_cfg(**{"model.reg_tokens": 1}))
    imgs = _batch().views[0]
    masks = m.mask_generator(4, step_generator(0, 3))
    n_ctx = 1 + 1 + masks.context_ids.shape[1]  # [CLS] + register + context patches
    edit = {}

    def perturb(_mod, _inp, out):  # the predictor's token outputs (T*B, P + Nc + K, Dp)
        if edit:
            out = out.clone()
            out[:, edit["sl"]] += edit["by"]
        return out

    m.predictor.predictor_norm.register_forward_hook(perturb)
    base = m.forward_parts(imgs, masks)[0]
    edit.update(sl=slice(0, n_ctx), by=10.0)  # every prefix and context output
    assert m.forward_parts(imgs, masks)[0] == base
    edit.update(sl=slice(n_ctx, n_ctx + 1), by=0.5)  # one target position
    assert m.forward_parts(imgs, masks)[0] != base


def test_target_encoder_gets_no_gradient_and_the_rest_learns():
    torch.manual_seed(1)
    m = build_method(_cfg(**{"model.reg_tokens": 2}))
    m(_batch(), it=2).loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in m.target_encoder.parameters())
    dead = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert dead == []
    assert m.encoder() is m.target_encoder and m.encoder_prefix == "target_encoder."
    assert all(p.requires_grad for p in m.trainable_parameters())
    assert not any(p is q for p in m.trainable_parameters() for q in m.target_encoder.parameters())


@pytest.mark.parametrize("it", [0, 5, 10])
def test_ema_update_equals_formula_with_cosine_momentum(it):
    torch.manual_seed(2)
    m = build_method(_cfg(**{"ijepa.momentum": 0.9}))
    with torch.no_grad():
        for p in m.context_encoder.parameters():
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in m.target_encoder.parameters()]
    online = [p.clone() for p in m.context_encoder.parameters()]
    steps = 11
    lam = 1 - (1 - 0.9) * (math.cos(math.pi * it / (steps - 1)) + 1) / 2  # 0.9 -> 1 over the run
    m.after_step(it)
    for tb, s, ta in zip(before, online, m.target_encoder.parameters()):
        assert torch.allclose(ta, lam * tb + (1 - lam) * s, atol=1e-6)
    # the context encoder is untouched
    assert all(torch.equal(a, b) for a, b in zip(online, m.context_encoder.parameters()))


def test_targets_are_layer_normed_target_features_at_the_block_patches():
    torch.manual_seed(3)
    m = build_method(_cfg(**{"model.reg_tokens": 1}))
    with torch.no_grad():  # make the target encoder differ from the context encoder
        for p in m.target_encoder.parameters():
            p.add_(0.1 * torch.randn_like(p))
    imgs = _batch(3).views[0]
    masks = m.mask_generator(3, step_generator(0, 0))
    _, pred, target, _, _ = m.forward_parts(imgs, masks)
    feats = m.target_encoder.forward_features(imgs)[:, 2:]  # (B, N, D) after [CLS] + register
    ln = (feats - feats.mean(-1, keepdim=True)) / torch.sqrt(feats.var(-1, unbiased=False, keepdim=True) + 1e-5)
    t = masks.target_ids.shape[1]
    for blk in range(t):
        for b in range(3):
            ids = masks.target_ids[b, blk]
            assert torch.allclose(target[blk * 3 + b], ln[b, ids], atol=1e-4)
    assert pred.shape == target.shape and not target.requires_grad


def test_each_target_block_is_predicted_without_seeing_the_other_blocks():
    torch.manual_seed(4)
    m = build_method(_cfg())
    m.eval()
    z = torch.randn(2, 1 + 10, 32)
    ctx = torch.arange(10).expand(2, 10)
    tgt = torch.stack([torch.arange(40, 52).expand(2, 12), torch.arange(50, 62).expand(2, 12)], dim=1)  # (2, 2, 12)
    a = m.predictor(z, ctx, tgt)
    tgt2 = tgt.clone()
    tgt2[:, 1] = torch.arange(20, 32)
    b = m.predictor(z, ctx, tgt2)
    assert torch.allclose(a[:2], b[:2], atol=1e-6)  # block 0 rows unchanged
    assert not torch.allclose(a[2:], b[2:])


def test_jepa_loss_and_variance_hinge_equal_hand_values():
    pred = torch.tensor([[0.5, 2.0]])
    target = torch.zeros(1, 2)
    assert jepa_loss(pred, target, "smooth_l1").item() == pytest.approx((0.5 * 0.25 + (2.0 - 0.5)) / 2)
    assert jepa_loss(pred, target, "l2").item() == pytest.approx((0.25 + 4.0) / 2)
    assert variance_hinge(torch.ones(8, 3)).item() == pytest.approx(1 - math.sqrt(1e-4), abs=1e-6)
    spread = torch.tensor([[-2.0, 4.0], [2.0, -4.0]])  # std 2*sqrt(2) and 4*sqrt(2): hinge inactive
    assert variance_hinge(spread).item() == 0.0
    half = torch.tensor([[-0.25], [0.25]])  # unbiased std 0.3536 -> 1 - sqrt(0.125 + 1e-4)
    assert variance_hinge(half).item() == pytest.approx(1 - math.sqrt(0.125 + 1e-4), abs=1e-6)


def test_ema_off_uses_the_context_encoder_under_stop_gradient():
    torch.manual_seed(5)
    m = build_method(_cfg(**{"ijepa.ema": False}))
    assert m.target_encoder is None and m.encoder() is m.context_encoder
    assert m.encoder_prefix == "context_encoder."
    assert not any(k.startswith("target_encoder.") for k in m.state_dict())
    imgs = _batch(2).views[0]
    masks = m.mask_generator(2, step_generator(0, 1))
    loss, _, target, _, _ = m.forward_parts(imgs, masks)
    feats = m.context_encoder.forward_features(imgs)[:, num_prefix(m.context_encoder):]
    ln = F.layer_norm(feats, (feats.shape[-1],))
    assert torch.allclose(target[0], ln[0, masks.target_ids[0, 0]], atol=1e-5)
    assert not target.requires_grad and loss.requires_grad
    before = [p.clone() for p in m.context_encoder.parameters()]
    m.after_step(3)  # no EMA to do
    assert all(torch.equal(a, b) for a, b in zip(before, m.context_encoder.parameters()))
    assert m.schedule_stats(3) == {}  # and no EMA momentum to log


@pytest.mark.parametrize("reg", ["koleo", "variance"])
def test_regulariser_adds_weight_times_its_value(reg):
    torch.manual_seed(6)
    m = build_method(_cfg(**{"ijepa.reg": reg, "ijepa.reg_weight": 0.3}))
    out = m(_batch(), it=1)
    want = out.stats["ijepa/loss"].item() + 0.3 * out.stats["ijepa/reg"].item()
    assert out.loss.item() == pytest.approx(want, rel=1e-5)
    plain = build_method(_cfg(**{"ijepa.reg": "none"}))
    assert "ijepa/reg" not in plain(_batch(), it=1).stats


def test_probe_masks_and_cosine_map_agree():
    torch.manual_seed(7)
    m = build_method(_cfg())
    arrays, stats = m.probe(torch.randn(3, 3, 32, 32))
    ctx, tgt, cos = arrays["context_mask"].astype(bool), arrays["target_masks"].astype(bool), arrays["pred_cosine"]
    assert ctx.shape == (3, 8, 8) and tgt.shape == (3, 4, 8, 8)
    assert not (ctx[:, None] & tgt).any()
    in_target = tgt.any(axis=1)
    assert (torch.isnan(torch.from_numpy(cos)).numpy() == ~in_target).all()
    assert (abs(cos[in_target]) <= 1 + 1e-5).all() and -1 <= stats["ijepa/pred_cosine_probe"] <= 1
    again, _ = m.probe(torch.randn(3, 3, 32, 32))
    assert (again["target_masks"] == arrays["target_masks"]).all()  # one fixed probe draw


def test_bad_predictor_width_is_refused_clearly():
    with pytest.raises(ConfigError, match="ijepa.pred_dim=18"):
        build_method(_cfg(**{"ijepa.pred_dim": 18}))


def test_collapse_stats_and_probe_embeddings_read_the_pooled_feature_that_knn_reads():
    from core.collapse import rankme
    from core.features import extract

    torch.manual_seed(6)
    m = build_method(_cfg())
    imgs = torch.randn(8, 3, 32, 32)
    out = m(Batch([imgs], torch.zeros(8, dtype=torch.long)), it=0)
    feats = extract(m.encoder(), imgs, device="cpu")  # what the online k-NN reads (eval mode: no dropout here)
    assert m.feature == "pooled"
    assert out.stats["collapse/rankme"].item() == pytest.approx(rankme(torch.from_numpy(feats.pooled)).item(),
                                                                rel=1e-4)
    arrays, _ = m.probe(imgs[:3])
    torch.testing.assert_close(torch.from_numpy(arrays["embeddings"]), torch.from_numpy(feats.pooled[:3]),
                               rtol=1e-4, atol=1e-5)
