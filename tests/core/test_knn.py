"""Weighted k-NN: DINO's eval_knn maths, separable data, chance on shuffled labels."""

import math

import torch

from core.knn import confusion_matrix, knn_top1, weighted_knn_predict, weighted_knn_scores


def _dino_reference(train, labels, test, k, T, C):
    """DINO's eval_knn written out loop by loop (facebookresearch/dino, eval_knn.py)."""
    train = torch.nn.functional.normalize(train, dim=1)
    test = torch.nn.functional.normalize(test, dim=1)
    out = torch.zeros(test.shape[0], C)
    for i, q in enumerate(test):
        sims = [(float(q @ t), int(y)) for t, y in zip(train, labels)]
        sims.sort(key=lambda s: -s[0])
        for s, y in sims[:k]:
            out[i, y] += math.exp(s / T)
    return out


def test_scores_match_dino_reference():
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(40, 8, generator=g), torch.randn(7, 8, generator=g)
    labels = torch.randint(0, 3, (40,), generator=g)
    got = weighted_knn_scores(train, labels, test, k=5, T=0.07, num_classes=3, chunk=3)
    ref = _dino_reference(train, labels, test, 5, 0.07, 3)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-3)


def test_hand_worked_votes():
    # two class-0 points on +x, one class-1 point on +y; query at 45 degrees, k = 3, T = 1
    train = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    q = torch.tensor([[1.0, 1.0]])
    c = math.cos(math.pi / 4)
    got = weighted_knn_scores(train, labels, q, k=3, T=1.0)
    torch.testing.assert_close(got, torch.tensor([[2 * math.exp(c), math.exp(c)]]))
    # k = 1 keeps only one (tied) neighbour
    assert weighted_knn_scores(train, labels, q, k=1, T=1.0).sum() == torch.tensor(math.exp(c))


def test_separable_is_perfect_and_shuffled_is_chance():
    g = torch.Generator().manual_seed(1)
    C, n = 5, 200
    centres = torch.randn(C, 32, generator=g) * 5
    y = torch.arange(C).repeat_interleave(n)
    x = centres[y] + torch.randn(C * n, 32, generator=g)
    yt = torch.arange(C).repeat_interleave(40)
    xt = centres[yt] + torch.randn(C * 40, 32, generator=g)
    assert knn_top1(x, y, xt, yt) == 1.0
    shuffled = y[torch.randperm(len(y), generator=g)]
    acc = knn_top1(x, shuffled, xt, yt)
    assert abs(acc - 1 / C) < 0.1, acc


def test_predict_and_confusion():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 2])
    test = torch.tensor([[0.9, 0.1], [0.1, 0.9], [-1.0, 0.1], [1.0, -0.1]])
    pred = weighted_knn_predict(train, labels, test, k=1, T=0.07, num_classes=3)
    assert pred.tolist() == [0, 1, 2, 0]
    cm = confusion_matrix(pred, torch.tensor([0, 1, 2, 1]), 3)
    assert cm.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
