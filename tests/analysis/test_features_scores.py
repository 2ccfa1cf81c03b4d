"""Features, sources and scores on a run folder: values equal the backbone's own outputs,
caching holds across calls, and the references are what they claim to be."""

import numpy as np
import pytest
import torch

from analysis.features import random_init_like, split_features
from analysis.source import SourceError, open_source, split_images
from core.features import extract
from tests.analysis.conftest import make_run, tiny_vit


def test_extract_equals_forward_features():
    vit = tiny_vit(reg_tokens=2)
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    f = extract(vit, images, np.arange(5), batch_size=2, with_patches=True, device="cpu")
    from trainer.data.datasets import normalize

    with torch.no_grad():
        tokens = vit.forward_features(normalize(images))
        # timm's own split: the last block's patch tokens before the final norm
        last = vit.forward_intermediates(normalize(images), indices=[1], output_fmt="NLC", intermediates_only=True)[0]
        pooled = vit.norm(last.mean(1))  # average pool, then norm (timm / MAE global_pool='avg')
    assert len(vit.blocks) == 2 and last.shape == (5, 16, vit.num_features)
    np.testing.assert_allclose(f.cls, tokens[:, 0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f.pooled, pooled.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(f.pooled, tokens[:, 3:].mean(1).numpy(), atol=1e-3)  # not the mean of normed tokens
    np.testing.assert_allclose(f.patches, tokens[:, 3:].numpy(), rtol=1e-5, atol=1e-6)
    assert f.labels.tolist() == [0, 1, 2, 3, 4]


def test_random_init_like_is_fresh_and_seeded():
    vit = tiny_vit()
    with torch.no_grad():
        for p in vit.parameters():
            p.add_(1.0)  # "trained"
    a, b = random_init_like(vit, 0), random_init_like(vit, 0)
    for (n, pa), pb, pv in zip(a.named_parameters(), b.parameters(), vit.parameters()):
        assert torch.equal(pa, pb), n
        assert not torch.equal(pa, pv), n


def test_open_run_and_cached_features(tmp_path):
    run_dir, method = make_run(tmp_path, steps=(0, 10))
    src = open_source(run_dir)
    assert src.step == 10 and src.method == "dino" and src.cache.root == run_dir / "analysis"
    images, labels, masks, classes = split_images(src, "val")
    assert images.shape == (60, 16, 16, 3) and masks.shape == (60, 16, 16) and len(classes) == 8
    f = split_features(src, "val")
    ref = extract(method.encoder(), images, labels, device="cpu")
    np.testing.assert_allclose(f.cls, ref.cls, rtol=1e-5, atol=1e-6)
    assert list((run_dir / "analysis").glob("features-*.npz"))
    # same checkpoint file opened directly resolves to the same run and cache key
    again = open_source(run_dir / "checkpoints" / "step_10.safetensors")
    assert again.checkpoint == src.checkpoint and again.run_dir == run_dir
    # another part of the checkpoint: the student
    student = open_source(run_dir, part="student")
    assert student.checkpoint != src.checkpoint


def test_bad_targets(tmp_path):
    with pytest.raises(SourceError, match="without run.json"):
        open_source(tmp_path)
    with pytest.raises(SourceError, match="does not exist"):
        open_source(tmp_path / "missing.pth")


def test_linear_probe_and_knn_eval_values():
    from analysis.scores import knn_eval, linear_probe

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 50)
    x = np.eye(4)[y] * 5 + rng.normal(size=(200, 4)) * 0.3
    acc, _ = linear_probe(x, y, x, y)
    assert acc == 1.0
    y_unl = y.copy()
    y_unl[:10] = -1  # unlabelled rows are dropped, not scored
    acc, pred = knn_eval(x, y_unl, x, y_unl, k=5)
    assert acc == 1.0 and len(pred) == 190
    with pytest.raises(ValueError, match="unlabelled"):
        knn_eval(x, np.full(200, -1), x, y)


def test_score_source_matches_direct_computation_and_caches(tmp_path, monkeypatch):
    from analysis import scores
    from analysis.features import pixel_features
    from analysis.scores import knn_eval, score_source

    run_dir, _ = make_run(tmp_path)
    src = open_source(run_dir)
    rep = score_source(src, k=5, linear=False)
    tr, va = split_features(src, "train"), split_features(src, "val")
    assert rep.knn_top1 == pytest.approx(knn_eval(tr.cls, tr.labels, va.cls, va.labels, 5, 0.07, 8)[0])
    tri, try_, _, _ = split_images(src, "train")
    vai, vay, _, _ = split_images(src, "val")
    assert rep.pixels_knn_top1 == pytest.approx(
        knn_eval(pixel_features(tri), try_, pixel_features(vai), vay, 5, 0.07, 8)[0])
    assert rep.confusion.sum() == 60 and np.trace(rep.confusion) / 60 == pytest.approx(rep.knn_top1)
    assert rep.chance == pytest.approx(1 / 8) and np.isnan(rep.linear_top1) and rep.n_train == 120
    monkeypatch.setattr(scores, "split_features", lambda *a, **k: pytest.fail("recomputed"))
    again = score_source(open_source(run_dir), k=5, linear=False)
    assert again.knn_top1 == rep.knn_top1 and again.classes == rep.classes
