"""DINO's maths against hand-worked values and against lightly's DINOLoss."""

import math

import pytest
import torch

from trainer.methods.dino_loss import (
    dino_cross_entropy,
    koleo_loss,
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
    st = teacher_stats(p, s, views, 0.1)
    ce = dino_cross_entropy(views, s, 0.1)
    # with equal-sized views, mean KL over pairs = CE - mean teacher entropy
    expected_kl = ce.item() - st["dino/teacher_entropy"].item()
    assert st["dino/kl_teacher_student"].item() == pytest.approx(expected_kl, rel=1e-4)
    assert st["dino/log_k"].item() == pytest.approx(math.log(10))
    uniform = teacher_stats(torch.full((4, 10), 0.1), [v[:2] for v in s], [torch.full((2, 10), 0.1)] * 2, 0.1)
    assert uniform["dino/teacher_entropy"].item() == pytest.approx(math.log(10), rel=1e-5)


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
