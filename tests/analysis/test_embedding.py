"""2-D embeddings: clusters stay apart, a seed fixes the result, subsampling keeps track of rows."""

import numpy as np
import pytest
import torch

from analysis.embedding import embed, exact_cosine_knn, pca_embedding, subsample, umap_embedding


def _clusters(n_per=80, c=3, d=384, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d))
    y = np.repeat(np.arange(c), n_per)
    return (centres[y] + 0.3 * rng.normal(size=(len(y), d))).astype(np.float32), y


def _knn2d_accuracy(coords, y, k=5):
    d = ((coords[:, None] - coords[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1)[:, :k]
    votes = np.array([np.bincount(y[row], minlength=y.max() + 1).argmax() for row in nn])
    return (votes == y).mean()


def test_exact_knn_matches_bruteforce():
    x = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
    idx, dist = exact_cosine_knn(x, 4, chunk=7)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = xn @ xn.T
    np.fill_diagonal(cos, 2.0)
    ref = np.argsort(-cos, axis=1)[:, :4]
    np.testing.assert_array_equal(idx, ref)
    assert (idx[:, 0] == np.arange(50)).all() and np.allclose(dist[:, 0], 0)
    np.testing.assert_allclose(dist[:, 1:], 1 - np.take_along_axis(cos, ref[:, 1:], 1), atol=1e-5)


def test_pca_embedding_separates_and_is_deterministic():
    x, y = _clusters()
    a = pca_embedding(x, y, seed=0)
    assert a.coords.shape == (240, 2) and a.method == "pca"
    assert _knn2d_accuracy(a.coords, y) > 0.95
    np.testing.assert_array_equal(a.coords, pca_embedding(x, y, seed=0).coords)


def test_umap_separates_clusters_and_seed_fixes_it():
    x, y = _clusters()
    a = umap_embedding(torch.from_numpy(x), y, seed=3)
    assert a.method == "umap" and a.coords.shape == (240, 2)
    assert _knn2d_accuracy(a.coords, y) > 0.95
    b = umap_embedding(x, y, seed=3)
    np.testing.assert_array_equal(a.coords, b.coords)
    c = umap_embedding(x, y, seed=4)
    assert not np.allclose(a.coords, c.coords)


def test_subsample_tracks_rows_and_labels():
    x, y = _clusters(n_per=50)
    e = embed(x, y, method="pca", max_points=40, seed=1)
    assert len(e.indices) == 40 and (np.diff(e.indices) > 0).all()
    np.testing.assert_array_equal(e.labels, y[e.indices])
    np.testing.assert_array_equal(subsample(10, 0), np.arange(10))
    with pytest.raises(ValueError, match="not known"):
        embed(x, y, method="tsne")
    with pytest.raises(ValueError, match="NaN"):
        embed(np.full((10, 3), np.nan), method="pca")
    tiny = umap_embedding(x[:5], y[:5])  # too few points for UMAP: PCA, said so
    assert tiny.method == "pca" and "fallback" in tiny.params


def test_source_embedding_is_cached(tmp_path, monkeypatch):
    from analysis import embedding
    from analysis.embedding import source_embedding
    from analysis.source import open_source, split_images
    from tests.analysis.conftest import make_run

    run_dir, _ = make_run(tmp_path)
    src = open_source(run_dir)
    e = source_embedding(src, "train", "pca", max_points=50)
    assert len(e.indices) == 50 and (e.indices == np.arange(50)).all()
    np.testing.assert_array_equal(e.labels, split_images(src, "train", 50)[1])
    monkeypatch.setattr(embedding, "embed", lambda *a, **k: pytest.fail("recomputed"))
    again = source_embedding(open_source(run_dir), "train", "pca", max_points=50)
    np.testing.assert_array_equal(again.coords, e.coords)


@pytest.mark.slow
def test_persisted_umap_jit_gives_identical_coordinates_and_writes_numba_cache(tmp_path):
    import os
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import warnings
        import numpy as np
        import umap
        from analysis.embedding import exact_cosine_knn, persist_umap_jit
        warnings.simplefilter("ignore")
        rng = np.random.default_rng(0)
        x = rng.normal(size=(300, 10)).astype(np.float32)
        knn = exact_cosine_knn(x, 10)
        fit = lambda: umap.UMAP(n_neighbors=10, metric="cosine", n_epochs=50, random_state=0,
                                precomputed_knn=(*knn, None)).fit_transform(x)
        plain = fit()
        persist_umap_jit()
        assert np.array_equal(plain, fit()), "patched kernels changed the result"
        print("same")
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0 and "same" in out.stdout, out.stderr[-2000:]
    cached = {p.name.split("-")[0] for p in tmp_path.rglob("*.nbi")}
    assert any("optimize_layout_euclidean_single_epoch" in n for n in cached), cached
    assert any("smooth_knn_dist" in n for n in cached), cached
