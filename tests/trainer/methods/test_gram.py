"""Gram anchoring (DINOv3, from the paper's formula): 0 for equal models, blind to per-token
scale, a hand-worked value, the bicubic grid resize, the weight schedule and the Gram
teacher's copies from the EMA teacher."""

import math

import numpy as np
import pytest
import torch

from trainer.config import Config, ConfigError
from trainer.data import Batch
from trainer.methods import build_method
from trainer.methods.gram import gram_copy_steps, gram_loss, resize_patch_grid
from trainer.schedules import delayed_cosine_ramp


def test_loss_is_zero_when_the_teacher_equals_the_student():
    x = torch.randn(3, 16, 8)
    assert gram_loss(x, x.clone()).item() == pytest.approx(0.0, abs=1e-12)


def test_loss_is_unchanged_under_any_per_token_rescaling():
    torch.manual_seed(0)
    s, t = torch.randn(2, 9, 6), torch.randn(2, 9, 5)  # widths may differ: only P x P similarities count
    base = gram_loss(s, t).item()
    assert base > 0.1
    scaled = gram_loss(s * (0.01 + 10 * torch.rand(2, 9, 1)), t * (0.01 + 10 * torch.rand(2, 9, 1))).item()
    assert scaled == pytest.approx(base, rel=1e-5)


def test_loss_equals_a_hand_value():
    # crop 1: student patches (1, 0), (1, 1) -> cosine c = 1/sqrt 2; teacher (1, 0), (0, 1) -> cosine 0.
    # (X_S X_S^T - X_G X_G^T) = [[0, c], [c, 0]]: mean of squares over the 4 entries = 2 c^2 / 4 = 1/4.
    # crop 2: equal -> 0. Mean over both crops: 1/8.
    s = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[0.3, 0.4], [2.0, -1.0]]])
    t = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.3, 0.4], [2.0, -1.0]]])
    assert gram_loss(s[:1], t[:1]).item() == pytest.approx(0.25, rel=1e-6)
    assert gram_loss(s, t).item() == pytest.approx(0.125, rel=1e-6)


@pytest.mark.parametrize("src,dst", [(8, 4), (4, 8), (6, 4), (4, 4)])
def test_bicubic_resize_keeps_a_constant_field_constant(src, dst):
    value = torch.randn(1, 1, 5)
    tokens = value.expand(2, src * src, 5).clone()
    out = resize_patch_grid(tokens, (dst, dst))
    assert out.shape == (2, dst * dst, 5)
    assert torch.allclose(out, value.expand_as(out), atol=1e-5)


def test_bicubic_resize_follows_the_grid_layout():
    # a ramp along the columns stays a ramp along the columns (raster order kept), and 2x down keeps its mean
    ramp = torch.arange(8.0).repeat(8)[None, :, None]  # value = column index
    out = resize_patch_grid(ramp, (4, 4))[0, :, 0].reshape(4, 4)
    assert torch.allclose(out, out[:1].expand(4, 4))  # constant down each column
    assert (out[0].diff() > 0).all() and out.mean().item() == pytest.approx(3.5, abs=1e-5)


def test_weight_schedule_equals_its_formula():
    w = delayed_cosine_ramp(2.0, start=10, ramp_steps=8, steps=30)
    for t in range(30):
        if t < 10:
            want = 0.0
        elif t < 18:
            want = 2.0 * 0.5 * (1 - math.cos(math.pi * (t - 10) / 8))
        else:
            want = 2.0
        assert w[t] == pytest.approx(want, abs=1e-12), t
    assert w[14] == pytest.approx(1.0)  # half way up the ramp: half the weight
    assert np.array_equal(delayed_cosine_ramp(2.0, 5, 0, 8), [0, 0, 0, 0, 0, 2, 2, 2])  # no ramp: a step


def test_copy_steps_are_the_source_then_at_most_m_refreshes():
    assert gram_copy_steps(20, 0, 5) == {20}
    assert gram_copy_steps(20, 10, 3) == {20, 30, 40, 50}
    assert gram_copy_steps(0, 7, 2) == {0, 7, 14}


def _cfg(**over):
    return Config().with_overrides([
        "model.preset=custom", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.patch_size=4",
        "data.image_size=16", "dino.out_dim=8", "dino.hidden_dim=32", "dino.bottleneck_dim=16", "dino.n_local=1",
        "optim.steps=12", "optim.warmup_steps=0", "dino.gram_weight=2", "dino.gram_teacher_step=2",
        "dino.gram_start=4", "dino.gram_ramp_steps=2", "dino.gram_refresh_every=3", "dino.gram_max_refreshes=1",
        "dino.momentum_teacher=0.5"] + [f"{k}={v}" for k, v in over.items()]).validate()


def test_gram_teacher_is_the_ema_teacher_after_its_step_and_refreshed_at_most_m_times():
    torch.manual_seed(1)
    m = build_method(_cfg())
    opt = torch.optim.SGD(m.trainable_parameters(), lr=0.5)
    batch = Batch([torch.randn(4, 3, 16, 16)] * 2 + [torch.randn(4, 3, 8, 8)], torch.zeros(4, dtype=torch.long))
    snapshots = {}
    for it in range(10):
        out = m(batch, it)
        assert ("gram/loss" in out.stats) == (it >= 2)  # logged once the Gram teacher exists
        if it == 3:
            assert out.stats["gram/loss"].item() > 0
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        m.after_step(it)
        snapshots[it + 1] = {k: v.clone() for k, v in m.teacher.backbone.state_dict().items()}
        gram = m.gram_teacher.state_dict()
        copied_at = max(s for s in (2, 5) if s <= it + 1) if it + 1 >= 2 else None
        if copied_at is not None:  # after step 2 (source) and step 5 (the one refresh), never after step 8
            assert all(torch.equal(gram[k], snapshots[copied_at][k]) for k in gram)
    assert not _equal_dicts(m.gram_teacher.state_dict(), m.teacher.backbone.state_dict())
    assert m.schedule_stats(3)["gram/weight"] == 0.0 and m.schedule_stats(6)["gram/weight"] == 2.0
    assert all(not p.requires_grad for p in m.gram_teacher.parameters())
    trained = {id(p) for p in m.trainable_parameters()}
    assert not any(id(p) in trained for p in m.gram_teacher.parameters())  # frozen: no optimiser step moves it


def _equal_dicts(a, b) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_higher_resolution_gram_teacher_gives_the_same_loss_shape_and_bad_scales_are_refused():
    torch.manual_seed(2)
    m = build_method(_cfg(**{"dino.gram_teacher_scale": 2}))
    views = [torch.randn(2, 3, 16, 16)] * 2
    with torch.no_grad():
        _, s_tokens, _ = m.student(views)
    g = m.gram_term(views, s_tokens)
    assert g.ndim == 0 and g.item() > 0  # teacher at 32 px (8 x 8 patches) resized to the student's 4 x 4
    with pytest.raises(ConfigError, match="gram_teacher_scale"):
        _cfg(**{"dino.gram_teacher_scale": 1.1})
    with pytest.raises(ConfigError, match="gram_teacher_step"):
        _cfg(**{"dino.gram_teacher_step": 5, "dino.gram_start": 4})
    with pytest.raises(ConfigError, match="never act"):
        _cfg(**{"dino.gram_start": 12})
