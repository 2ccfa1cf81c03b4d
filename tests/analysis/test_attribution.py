"""Attributions: IG completeness (sum = f(x) - f(baseline)), occlusion equal to hand-made
occlusions, and the scores equal to the k-NN and prototype maths."""

import numpy as np
import pytest
import torch

from analysis.attribution import KnnScore, PrototypeScore, class_prototypes, integrated_gradients, occlusion, patch_sum
from core.knn import weighted_knn_scores
from tests.analysis.conftest import tiny_vit


@pytest.fixture
def setup():
    vit = tiny_vit()
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 16, 16, generator=g)
    protos = torch.randn(4, 32, generator=g)
    return vit, images, PrototypeScore(vit, protos), torch.tensor([1, 3])


def test_ig_completeness(setup):
    vit, images, score, target = setup
    a = integrated_gradients(score, images, target, patch_size=4, n_steps=64, noise_tunnel=False)
    gap = a.score - a.baseline_score
    total = a.pixels.sum((1, 2))
    assert np.all(np.abs(gap) > 1e-3)  # a non-trivial case
    np.testing.assert_allclose(total, gap, atol=0.02 * np.abs(gap).max() + 1e-4)
    np.testing.assert_allclose(a.delta, total - gap, atol=1e-5)  # captum's delta is exactly that residual
    np.testing.assert_allclose(a.heatmap.sum((1, 2)), total, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(a.score, score(images)[[0, 1], [1, 3]].numpy(), rtol=1e-5)


def test_noise_tunnel_is_seeded(setup):
    _, images, score, target = setup
    a = integrated_gradients(score, images, target, 4, n_steps=8, nt_samples=3, seed=5)
    b = integrated_gradients(score, images, target, 4, n_steps=8, nt_samples=3, seed=5)
    c = integrated_gradients(score, images, target, 4, n_steps=8, nt_samples=3, seed=6)
    np.testing.assert_array_equal(a.heatmap, b.heatmap)
    assert not np.allclose(a.heatmap, c.heatmap)
    assert a.heatmap.shape == (2, 4, 4) and a.method == "integrated_gradients+noise_tunnel"


def test_occlusion_equals_manual_occlusions(setup):
    _, images, score, target = setup
    a = occlusion(score, images, target, patch_size=4)
    with torch.no_grad():
        fx = score(images)[[0, 1], [1, 3]]
        for i, j in [(0, 0), (1, 2), (3, 3)]:
            x = images.clone()
            x[:, :, 4 * i:4 * i + 4, 4 * j:4 * j + 4] = 0.0
            ref = fx - score(x)[[0, 1], [1, 3]]
            np.testing.assert_allclose(a.heatmap[:, i, j], ref.numpy(), rtol=1e-4, atol=1e-6)


def test_knn_score_and_prototypes_values():
    vit = tiny_vit()
    g = torch.Generator().manual_seed(1)
    bank, labels = torch.randn(30, 32, generator=g), torch.randint(0, 3, (30,), generator=g)
    images = torch.randn(2, 3, 16, 16, generator=g)
    s = KnnScore(vit, bank, labels, 3, k=5, T=0.07)
    with torch.no_grad():
        emb = vit.forward_features(images)[:, 0]
        votes = weighted_knn_scores(bank, labels, emb, k=5, T=0.07, num_classes=3)
        torch.testing.assert_close(s(images), votes / votes.sum(1, keepdim=True), rtol=1e-5, atol=1e-6)
    feats = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    p = class_prototypes(feats, np.array([0, 0, 1, -1]), 3)
    torch.testing.assert_close(p, torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    x = torch.randn(4, 3, 8, 8)
    assert patch_sum(x, 4).shape == (4, 2, 2)
    torch.testing.assert_close(patch_sum(x, 4)[:, 0, 1], x[:, :, :4, 4:].sum((1, 2, 3)))
