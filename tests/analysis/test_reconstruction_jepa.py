"""MAE reconstructions and I-JEPA prediction maps: the method's own maths, at a chosen ratio
and seed; pictures and scores checked value by value."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from analysis.jepa import predict_targets
from analysis.reconstruction import psnr_by_ratio, reconstruct
from tests.analysis.conftest import make_run
from trainer.data.datasets import normalize, to_uint8_image
from trainer.methods.mae import patchify, to_unit_pixels


def _images(n=3, size=16):
    rng = np.random.default_rng(0)
    return normalize(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def mae(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("mae"), "mae")[1]


def test_reconstruction_matches_method_forward_and_masks(mae):
    x = _images()
    r = reconstruct(mae, x, mask_ratio=0.75, seed=7)
    assert r.mask.shape == (3, 4, 4) and (r.mask.reshape(3, -1).sum(1) == 12).all()  # round(0.75 * 16)
    # same generator and ratio through the method's own training path -> same prediction
    _, pred, mask, _ = mae.forward_parts(x, torch.Generator().manual_seed(7))
    np.testing.assert_array_equal(mask.reshape(3, 4, 4).bool().numpy(), r.mask)
    from trainer.methods.mae import unpatchify

    np.testing.assert_array_equal(r.reconstruction, to_uint8_image(unpatchify(pred.detach(), 4)))
    # pasted = original at visible patches, reconstruction at removed ones (pixel by pixel)
    removed = np.kron(r.mask, np.ones((4, 4), bool))[..., None]  # (B, H, W, 1)
    np.testing.assert_array_equal(np.where(removed, r.reconstruction, r.original), r.pasted)
    assert (r.masked[removed[..., 0]] != r.original[removed[..., 0]]).any()
    np.testing.assert_array_equal(r.masked[~removed[..., 0]], r.original[~removed[..., 0]])


def test_psnr_equals_hand_computation(mae):
    x = _images()
    r = reconstruct(mae, x, mask_ratio=0.5, seed=1)
    # by hand from the method-independent pieces: MSE in [0, 1] pixels over removed patches
    from trainer.data.masking import random_masking
    from trainer.models.backbone import forward_masked

    ids_keep, ids_restore, m = random_masking(3, 16, 0.5, torch.Generator().manual_seed(1))
    with torch.no_grad():
        p = mae.decoder(forward_masked(mae.encoder(), x, ids_keep), ids_restore)
    err = ((to_unit_pixels(p) - to_unit_pixels(patchify(x, 4))) ** 2).mean(-1)  # (B, N)
    for i in range(3):
        mse = float((err[i] * m[i]).sum() / m[i].sum())
        assert r.psnr[i] == pytest.approx(10 * math.log10(1 / mse), rel=1e-4)
    assert r.psnr_mean == pytest.approx(10 * math.log10(1 / float((err * m).sum() / m.sum())), rel=1e-4)
    assert psnr_by_ratio(mae, x, [0.5], seed=1)[0] == pytest.approx(r.psnr_mean, rel=1e-5)
    with pytest.raises(ValueError, match="mask_ratio"):
        reconstruct(mae, x, mask_ratio=1.0)


def test_jepa_prediction_map_values(tmp_path):
    _, ijepa = make_run(tmp_path, "ijepa", **{"data.image_size": 32, "ijepa.pred_dim": 32})
    x = _images(2, 32)
    out = predict_targets(ijepa, x, seed=3)
    masks = ijepa.mask_generator(2, torch.Generator().manual_seed(3))
    with torch.no_grad():
        loss, pred, target, _, _ = ijepa.forward_parts(x, masks)
    assert out.loss == pytest.approx(float(loss))
    t, k = masks.target_ids.shape[1:]
    assert out.target_masks.shape == (2, t, 8, 8)
    assert not (out.context_mask[:, None] & out.target_masks).any()  # context never overlaps a target
    cos = F.cosine_similarity(pred, target, dim=-1).reshape(t, 2, k)  # block-major
    covered = out.target_masks.any(1)
    assert np.isnan(out.pred_cosine[~covered]).all() and np.isfinite(out.pred_cosine[covered]).all()
    # a patch covered by exactly one block carries that block's cosine at that patch
    for b in range(2):
        for j in range(t):
            for q, pid in enumerate(masks.target_ids[b, j].tolist()):
                r, c = divmod(pid, 8)
                if out.target_masks[b, :, r, c].sum() == 1:
                    assert out.pred_cosine[b, r, c] == pytest.approx(float(cos[j, b, q]), abs=1e-5)
    np.testing.assert_allclose(out.block_cosine, cos.mean(-1).T.numpy(), atol=1e-6)
