"""DINO as a module: gradients flow where they should, EMA and centre follow their formulas."""

import pytest
import torch

from trainer.config import Config
from trainer.data import Batch
from trainer.methods import build_method


def _cfg(**over):
    cfg = Config().with_overrides([
        "model.preset=custom", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.patch_size=4",
        "data.image_size=16", "dino.out_dim=8", "dino.hidden_dim=32", "dino.bottleneck_dim=16", "dino.n_local=2",
        "dino.local_size_ratio=0.5", "optim.steps=10", "optim.warmup_steps=0",
    ] + [f"{k}={v}" for k, v in over.items()])
    return cfg.validate()


def _batch(b=4, n_local=2):
    g = [torch.randn(b, 3, 16, 16) for _ in range(2)]
    loc = [torch.randn(b, 3, 8, 8) for _ in range(n_local)]
    return Batch(g + loc, torch.zeros(b, dtype=torch.long))


def test_teacher_gets_no_gradient_and_every_student_parameter_does():
    torch.manual_seed(0)
    m = build_method(_cfg(**{"dino.freeze_last_layer_steps": 0, "model.reg_tokens": 2}))
    out = m(_batch(), it=5)
    out.loss.backward()
    assert all(p.grad is None for p in m.teacher.parameters())
    assert all(not p.requires_grad for p in m.teacher.parameters())
    missing = [n for n, p in m.student.named_parameters()
               if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert missing == []


def test_last_layer_frozen_during_first_steps():
    m = build_method(_cfg(**{"dino.freeze_last_layer_steps": 3}))
    m(_batch(), it=0).loss.backward()
    m.on_optimizer_step(0)
    assert m.student.head.last_layer.weight.grad is None
    m.zero_grad()
    m(_batch(), it=3).loss.backward()
    m.on_optimizer_step(3)
    assert m.student.head.last_layer.weight.grad is not None


def test_ema_update_equals_formula():
    torch.manual_seed(1)
    m = build_method(_cfg(**{"dino.momentum_teacher": 0.996}))
    with torch.no_grad():
        for p in m.student.parameters():
            p.add_(torch.randn_like(p))
    t_before = [p.clone() for p in m.teacher.parameters()]
    s = [p.clone() for p in m.student.parameters()]
    lam = float(m.momentum_schedule[4])
    assert 0.996 <= lam < 1.0
    m.after_step(4)
    for tb, sp, ta in zip(t_before, s, m.teacher.parameters()):
        assert torch.allclose(ta, lam * tb + (1 - lam) * sp, atol=1e-6)
    assert m.momentum_schedule[0] == pytest.approx(0.996) and m.momentum_schedule[-1] == pytest.approx(1.0)


def test_center_updated_after_the_loss_with_momentum():
    torch.manual_seed(2)
    m = build_method(_cfg(**{"dino.center_momentum": 0.9}))
    m.loss.center.fill_(0.3)
    batch = _batch()
    with torch.no_grad():
        t_logits = m.teacher(batch.views[:2])[0]
    m(batch, it=0)
    expected = 0.9 * 0.3 + 0.1 * torch.cat(t_logits).mean(0, keepdim=True)
    assert torch.allclose(m.loss.center, expected, atol=1e-6)


def test_ablation_switches():
    off = build_method(_cfg(**{"dino.sharpening": "false"}))
    assert off.loss.teacher_temp(0) == pytest.approx(0.1)  # tau_t = tau_s: no sharpening
    on = build_method(_cfg(**{"dino.warmup_teacher_temp": 0.04, "dino.teacher_temp": 0.07,
                              "dino.teacher_temp_warmup_steps": 4}))
    assert on.loss.teacher_temp(0) == pytest.approx(0.04) and on.loss.teacher_temp(2) == pytest.approx(0.055)
    assert on.loss.teacher_temp(9) == pytest.approx(0.07)
    nocenter = build_method(_cfg(**{"dino.centering": "none"}))
    nocenter(_batch(), it=0)
    assert nocenter.loss.center.abs().sum() == 0  # the centre is never touched


def test_probe_gives_attention_maps_and_register_share():
    m = build_method(_cfg(**{"model.reg_tokens": 2}))
    arrays, stats = m.probe(torch.randn(3, 3, 16, 16))
    attn = torch.as_tensor(arrays["attn"])
    assert attn.shape == (3, 2, 4, 4)
    assert 0 < stats["tokens/register_attn_share"] < 1
    # [CLS] attention to patches + prefix sums to 1: patches alone sum to less than 1
    assert (attn.sum(dim=(-1, -2)) < 1).all() and (attn >= 0).all()


def test_collapse_stats_read_the_teacher_cls_that_knn_reads_and_ema_momentum_is_logged():
    from core.collapse import rankme
    from core.features import extract

    torch.manual_seed(3)
    m = build_method(_cfg())
    batch = _batch(b=8)
    out = m(batch, it=0)
    feats = extract(m.encoder(), batch.views[0], device="cpu")  # teacher [CLS] of global view 1
    assert m.feature == "cls"
    assert out.stats["collapse/rankme"].item() == pytest.approx(rankme(torch.from_numpy(feats.cls)).item(), rel=1e-4)
    assert m.schedule_stats(4) == {"ema/momentum": pytest.approx(float(m.momentum_schedule[4]))}
