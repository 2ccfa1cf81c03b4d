"""The raw-pixel k-NN reference the trainer logs at step 0, against the same vote written out
with numpy: 2 x 2 block means of 32 px images (16 px), cosine, top-k, exp(s / T) per class."""

import numpy as np
import pytest
import torch

from trainer.evaluate import knn_eval_pixels


def _numpy_pixel_knn(bank, bank_y, query, query_y, k, T):
    def feats(x):  # (N, 3, 32, 32) -> (N, 3 * 16 * 16): area downsampling by 2 is the 2 x 2 block mean
        n = x.shape[0]
        f = x.reshape(n, 3, 16, 2, 16, 2).mean(axis=(3, 5)).reshape(n, -1)
        return f / np.linalg.norm(f, axis=1, keepdims=True)

    b, q = feats(bank), feats(query)
    sim = q @ b.T
    hits = 0
    for i, row in enumerate(sim):
        top = np.argsort(-row)[:k]
        votes = np.zeros(bank_y.max() + 1)
        np.add.at(votes, bank_y[top], np.exp(row[top] / T))
        hits += int(votes.argmax() == query_y[i])
    return hits / len(query_y)


def test_pixel_reference_is_the_weighted_knn_of_16_px_pixels():
    g = np.random.default_rng(0)
    centres = g.normal(size=(3, 3, 32, 32))
    bank_y, query_y = g.integers(0, 3, 60), g.integers(0, 3, 25)
    bank = centres[bank_y] + 8.0 * g.normal(size=(60, 3, 32, 32))
    query = centres[query_y] + 8.0 * g.normal(size=(25, 3, 32, 32))
    want = _numpy_pixel_knn(bank, bank_y, query, query_y, k=7, T=0.07)
    got = knn_eval_pixels(torch.tensor(bank, dtype=torch.float32), torch.tensor(bank_y),
                          torch.tensor(query, dtype=torch.float32), torch.tensor(query_y), k=7, temp=0.07)
    assert got == pytest.approx(want, abs=1e-6)  # the same queries right (float32 mean)
    assert 0.4 < want < 1.0  # separable enough to be a real check, not chance (1/3) or perfect
    # unlabelled rows are left out of bank and queries; no labels at all: NaN
    bank_y2 = bank_y.copy()
    bank_y2[:10] = -1
    want2 = _numpy_pixel_knn(bank[10:], bank_y[10:], query, query_y, k=7, T=0.07)
    assert knn_eval_pixels(torch.tensor(bank, dtype=torch.float32), torch.tensor(bank_y2),
                           torch.tensor(query, dtype=torch.float32), torch.tensor(query_y), 7, 0.07) == \
        pytest.approx(want2, abs=1e-6)
    assert np.isnan(knn_eval_pixels(torch.zeros(4, 3, 32, 32), torch.full((4,), -1), torch.zeros(2, 3, 32, 32),
                                    torch.full((2,), -1), 3, 0.07))
