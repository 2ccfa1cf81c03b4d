"""The dense views: on synthetic patch features with a planted foreground / background split
the PCA's first component separates them (foreground on the object, whichever sign the SVD
picks), colours follow the foreground's own structure, and the similarity map is a cosine."""

import numpy as np
import pytest
import torch

from analysis.dense import dense_features, patch_pca, patch_similarity


def _planted(seed: int, n=6, h=8, w=8, d=32):
    rng = np.random.default_rng(seed)
    fg = np.zeros((n, h, w), bool)
    for i in range(n):  # an object of random size and place, away from the border
        top, left = rng.integers(1, 3, 2)
        fg[i, top:top + rng.integers(3, 5), left:left + rng.integers(3, 5)] = True
    bg_mean, fg_mean = rng.normal(size=d), rng.normal(size=d)
    parts = rng.normal(size=(2, d)) * 0.6  # two parts of the object (left / right half) in other directions
    f = rng.normal(scale=0.3, size=(n, h, w, d)) + bg_mean
    for i in range(n):
        cols = np.nonzero(fg[i].any(0))[0]
        for y, x in zip(*np.nonzero(fg[i])):
            f[i, y, x] += fg_mean - bg_mean + parts[int(x >= cols.mean())]
    return f, fg


@pytest.mark.parametrize("seed", range(5))
def test_first_component_separates_a_planted_foreground(seed):
    f, fg = _planted(seed)
    for sign in (1, -1):  # the SVD's sign is arbitrary: flipping the features' mean direction changes nothing
        res = patch_pca(f * sign)
        np.testing.assert_array_equal(res.foreground, fg)
        assert (res.first[fg] > 0).all() and (res.first[~fg] < 0).all()
        assert (res.rgb[~fg] == 0).all() and res.rgb.min() >= 0 and res.rgb.max() <= 1


def test_colours_follow_the_parts_of_the_foreground():
    f, fg = _planted(0)
    res = patch_pca(f)
    # the two planted parts get different colours, the same part the same colour across images
    left, right = [], []
    for i in range(len(fg)):
        cols = np.nonzero(fg[i].any(0))[0]
        for y, x in zip(*np.nonzero(fg[i])):
            (left if x < cols.mean() else right).append(res.rgb[i, y, x])
    left, right = np.array(left), np.array(right)
    gap = np.linalg.norm(left.mean(0) - right.mean(0))
    assert gap > 3 * max(left.std(0).mean(), right.std(0).mean())
    assert res.explained[0] > res.explained[1] >= res.explained[2] >= 0


def test_patch_similarity_is_the_cosine_to_every_patch():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(2, 3, 4, 5))
    sim = patch_similarity(f, 1, 2, image=0)
    q = f[0, 1, 2]
    want = (f[0] @ q) / (np.linalg.norm(f[0], axis=-1) * np.linalg.norm(q))
    np.testing.assert_allclose(sim, want, rtol=1e-12)
    assert sim[1, 2] == pytest.approx(1.0)
    cross = patch_similarity(f, 0, 0, image=0, other=1)
    assert cross.shape == (3, 4) and np.abs(cross).max() <= 1 + 1e-12
    with pytest.raises(ValueError, match="outside"):
        patch_similarity(f, 3, 0)


def test_dense_features_are_the_final_patch_tokens_on_the_grid():
    from trainer.config import Model
    from trainer.models.backbone import build_backbone

    vit = build_backbone(Model(preset="dinov3-custom", patch_size=4, embed_dim=16, depth=1, num_heads=2), 16)
    x = torch.randn(2, 3, 16, 16)
    feats = dense_features(vit, x)
    with torch.no_grad():
        ref = vit.eval().forward_features(x)[:, 5:].reshape(2, 4, 4, 16).numpy()
    np.testing.assert_allclose(feats, ref, atol=1e-5)


def test_patch_labels_read_the_mask_at_each_patch_centre():
    from analysis.dense import patch_labels

    masks = np.zeros((2, 8, 8), bool)
    masks[0, :4, :4] = True  # top-left patch of a 2 x 2 grid of 4 px patches
    masks[1, 5, 5] = True  # inside the bottom-right patch but not its centre pixel (6, 6): background
    lab = patch_labels(masks, np.array([3, 1]), 4)
    np.testing.assert_array_equal(lab[0], [[4, 0], [0, 0]])
    np.testing.assert_array_equal(lab[1], [[0, 0], [0, 0]])


def test_patch_knn_scores_a_hand_case():
    from analysis.dense import patch_knn

    # bank: class-1 patches along e0, class-0 along e1; queries: one of each and a class-1 patch near e1
    bank = np.array([[1, 0.0], [0.9, 0.1], [0, 1.0], [0.1, 0.9]])[:, None, None]
    bank_lab = np.array([1, 1, 0, 0])[:, None, None]
    query = np.array([[1, 0.05], [0.05, 1], [0.2, 1]])[:, None, None]
    query_lab = np.array([1, 0, 1])[:, None, None]
    r = patch_knn(bank, bank_lab, query, query_lab, num_classes=2, k=1)
    # predictions 1, 0, 0: class 1 IoU 1/2, class 0 IoU 1/2, accuracy 2/3
    assert r.accuracy == pytest.approx(2 / 3) and r.miou == pytest.approx(0.5)
    assert r.foreground_iou == pytest.approx(0.5)
