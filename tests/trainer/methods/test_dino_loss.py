"""DINO's maths against hand-worked values and against lightly's DINOLoss."""

import math

import numpy as np
import pytest
import torch

from core.koleo import koleo_loss
from trainer.methods.dino_loss import (
    DINOLoss,
    dino_cross_entropy,
    sinkhorn_knopp,
    teacher_probs_centered,
    teacher_stats,
    updated_center,
)


def _softmax(xs, t):
    e = [math.exp(x / t) for x in xs]
    return [v / sum(e) for v in e]


def test_loss_equals_hand_computed_value_two_global_two_local_k4():
    # one image (B = 1), K = 4; teacher sees the 2 globals, student all 4 views
    t = [[1.0, 0.0, -1.0, 0.5], [0.2, 0.4, 0.0, -0.3]]
    s = [[0.3, -0.2, 0.1, 0.0], [1.0, 1.0, -1.0, 0.0], [0.0, 0.5, 0.5, -0.5], [-1.0, 0.2, 0.3, 0.9]]
    c = [0.1, -0.1, 0.0, 0.2]
    tau_t, tau_s = 0.04, 0.1
    pt = [_softmax([a - b for a, b in zip(row, c)], tau_t) for row in t]
    ls = [[math.log(p) for p in _softmax(row, tau_s)] for row in s]
    terms = [-sum(pt[i][k] * ls[j][k] for k in range(4)) for i in range(2) for j in range(4) if i != j]
    expected = sum(terms) / len(terms)  # 6 pairs: (0,1),(0,2),(0,3),(1,0),(1,2),(1,3)
    assert len(terms) == 6
    probs = teacher_probs_centered(torch.tensor(t), torch.tensor([c]), tau_t)
    got = dino_cross_entropy(list(probs.chunk(2)), [torch.tensor([row]) for row in s], tau_s)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_center_update_equals_formula():
    c = torch.tensor([[0.5, -0.5, 1.0]])
    g = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    new = updated_center(c, g, 0.9)
    expected = [0.9 * 0.5 + 0.1 * 2.0, 0.9 * -0.5 + 0.1 * 2.0, 0.9 * 1.0 + 0.1 * 2.0]
    assert new.squeeze().tolist() == pytest.approx(expected, rel=1e-6)


def test_sinkhorn_is_doubly_normalised():
    torch.manual_seed(0)
    logits = torch.randn(64, 16)
    q = sinkhorn_knopp(logits, 0.2, n_iters=100)
    assert torch.allclose(q.sum(1), torch.ones(64), atol=1e-4)  # each sample: a distribution
    assert torch.allclose(q.sum(0), torch.full((16,), 64 / 16), atol=1e-3)  # prototypes used equally
    # DINOv2 uses 3 iterations: already much more balanced than the plain softmax
    q3 = sinkhorn_knopp(logits, 0.2, n_iters=3)
    soft = torch.softmax(logits / 0.2, -1)
    assert (q3.sum(0) - 4).abs().max() < 0.75 * (soft.sum(0) - 4).abs().max()


def test_koleo_matches_brute_force():
    torch.manual_seed(1)
    x = torch.randn(6, 5)
    xn = x / x.norm(dim=1, keepdim=True)
    nn_d = []
    for i in range(6):
        nn_d.append(min((xn[i] - xn[j]).norm().item() for j in range(6) if j != i))
    expected = -sum(math.log(d) for d in nn_d) / 6
    assert koleo_loss(x).item() == pytest.approx(expected, rel=1e-4)


def test_teacher_stats_kl_is_loss_minus_entropy():
    torch.manual_seed(2)
    t = torch.randn(8, 10)
    s = [torch.randn(4, 10) for _ in range(4)]
    p = teacher_probs_centered(t, None, 0.05)
    views = list(p.chunk(2))
    st = teacher_stats(views, s, 0.1)
    ce = dino_cross_entropy(views, s, 0.1)
    # with equal-sized views, mean KL over pairs = CE - mean teacher entropy
    expected_kl = ce.item() - st["dino/teacher_entropy"].item()
    assert st["dino/kl_teacher_student"].item() == pytest.approx(expected_kl, rel=1e-4)
    assert st["dino/log_k"].item() == pytest.approx(math.log(10))
    uniform = teacher_stats([torch.full((2, 10), 0.1)] * 2, [v[:2] for v in s], 0.1)
    assert uniform["dino/teacher_entropy"].item() == pytest.approx(math.log(10), rel=1e-5)


def test_teacher_stats_hand_worked_two_views():
    # K = 4, B = 1: teacher views (0.5, 0.5, 0, 0) and (0, 0, 1, 0); student (tau 1) views
    # uniform and (0.4, 0.4, 0.1, 0.1); KL is taken across views, as the loss pairs them
    pt = [torch.tensor([[0.5, 0.5, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0, 0.0]])]
    ps = [torch.full((1, 4), 0.25), torch.tensor([[0.4, 0.4, 0.1, 0.1]])]
    st = teacher_stats(pt, [p.log() for p in ps], 1.0)
    assert st["dino/log_k"].item() == pytest.approx(math.log(4))
    assert st["dino/teacher_entropy"].item() == pytest.approx(math.log(2) / 2, abs=1e-6)  # (ln 2 + 0) / 2
    # batch mean (0.25, 0.25, 0.5, 0): entropy = 2 * 0.25 ln 4 + 0.5 ln 2
    assert st["dino/teacher_batch_entropy"].item() == pytest.approx(0.5 * math.log(4) + 0.5 * math.log(2), abs=1e-6)
    assert st["dino/teacher_max_prob"].item() == pytest.approx(0.75)
    assert st["dino/top10pct_mass"].item() == pytest.approx(0.5)  # top max(1, K // 10) = 1 dimension of the mean
    # KL(t1 || s2) = 2 * 0.5 ln(0.5 / 0.4) = ln 1.25; KL(t2 || s1) = ln(1 / 0.25) = ln 4; mean = ln(5) / 2
    assert st["dino/kl_teacher_student"].item() == pytest.approx(math.log(5) / 2, rel=1e-5)


def test_loss_object_centres_by_mode_and_moves_the_centre_after_the_loss():
    torch.manual_seed(4)
    t = [torch.randn(8, 6) for _ in range(2)]
    s = [torch.randn(8, 6) for _ in range(3)]
    mean = DINOLoss(6, 0.1, np.array([0.04, 0.05]), centering="mean", center_momentum=0.9)
    mean.center.fill_(0.2)
    out = mean(t, s, it=5)  # past the schedule's end: its last value
    expected = teacher_probs_centered(torch.cat(t), torch.full((1, 6), 0.2), 0.05)
    torch.testing.assert_close(torch.cat(out.teacher_probs), expected)
    assert out.loss.item() == pytest.approx(dino_cross_entropy(list(expected.chunk(2)), s, 0.1).item(), rel=1e-6)
    torch.testing.assert_close(mean.center, updated_center(torch.full((1, 6), 0.2), torch.cat(t), 0.9))
    assert out.stats["dino/center_norm"].item() == pytest.approx(mean.center.norm().item())
    sk = DINOLoss(6, 0.1, np.array([0.05]), centering="sinkhorn", sinkhorn_iters=3)
    probs = sk(t, s, it=0).teacher_probs
    torch.testing.assert_close(torch.cat(probs), sinkhorn_knopp(torch.cat(t), 0.05, 3))
    assert sk.center.abs().sum() == 0  # only mean centring moves the centre
    none = DINOLoss(6, 0.1, np.array([0.05]), centering="none")
    torch.testing.assert_close(torch.cat(none(t, s, 0).teacher_probs), torch.softmax(torch.cat(t) / 0.05, -1))


def test_old_checkpoints_with_a_method_level_center_still_load():
    from trainer.config import Config
    from trainer.methods import build_method

    cfg = Config().with_overrides(["model.preset=custom", "model.embed_dim=32", "model.depth=1", "model.num_heads=2",
                                   "data.image_size=16", "dino.out_dim=8", "dino.n_local=0"]).validate()
    m = build_method(cfg)
    old = {("center" if k == "loss.center" else k): v for k, v in m.state_dict().items()}
    old["center"] = torch.arange(8.0).reshape(1, 8)
    missing, unexpected = build_method(cfg).load_state_dict(old, strict=False)
    fresh = build_method(cfg)
    fresh.load_state_dict(old)
    assert missing == [] and unexpected == []
    torch.testing.assert_close(fresh.loss.center, torch.arange(8.0).reshape(1, 8))


def test_matches_lightly_dino_loss_and_center():
    from lightly.loss import DINOLoss

    torch.manual_seed(3)
    k, b = 32, 16
    teacher_out = [torch.randn(b, k) for _ in range(2)]
    student_out = [torch.randn(b, k) for _ in range(6)]
    ref = DINOLoss(output_dim=k, warmup_teacher_temp=0.04, teacher_temp=0.04, warmup_teacher_temp_epochs=0,
                   student_temp=0.1, center_momentum=0.9)
    ref.center.data = torch.randn(1, 1, k) * 0.1
    center = ref.center.detach().clone().reshape(1, k)
    ref_loss = ref(teacher_out, student_out, teacher_temp=0.04)
    probs = teacher_probs_centered(torch.cat(teacher_out), center, 0.04)
    ours = dino_cross_entropy(list(probs.chunk(2)), student_out, 0.1)
    assert ours.item() == pytest.approx(ref_loss.item(), abs=1e-5)
    new_center = updated_center(center, torch.cat(teacher_out), 0.9)
    assert torch.allclose(new_center, ref.center.reshape(1, k), atol=1e-5)
