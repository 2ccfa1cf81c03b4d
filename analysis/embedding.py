"""How are the features arranged? 2-D maps of a feature matrix: UMAP (umap-learn, cosine
metric) and PCA as the instant fallback. Deterministic for a given seed.

Why UMAP is set up this way (figures in benchmarks/analysis_speed.py): umap-learn at its
defaults spends most of a first 5,000-point fit compiling numba kernels and running NN-descent.
Here the features are l2-normalised (cosine geometry), reduced to ``pca_dims`` by PCA, and
their exact k nearest neighbours are computed with one matrix product (cheap at these sizes)
and handed to UMAP as ``precomputed_knn``, so NN-descent never runs; 200 optimisation epochs
(umap-learn's own choice for large data) instead of 500 for small data. What remains is the
JIT of umap's layout kernels, a few seconds once; ``persist_umap_jit`` lets numba keep them on
disk so later processes skip it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # annotation only: the pure functions here need no run or checkpoint machinery
    from analysis.source import Source

METHODS = ("umap", "pca")


@dataclass
class Embedding:
    """2-D coordinates of (a subsample of) a feature matrix."""

    coords: np.ndarray  # (n, 2) float32
    labels: np.ndarray  # (n,) int64 labels of those rows (-1 = unlabelled)
    indices: np.ndarray  # (n,) int64 rows of the input (= images of the split) that were embedded
    method: str  # "umap" | "pca"
    params: dict[str, Any] = field(default_factory=dict)


def subsample(n_total: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted row indices: all rows, or ``max_points`` drawn without replacement by ``seed``."""
    if max_points <= 0 or n_total <= max_points:
        return np.arange(n_total, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n_total, max_points, replace=False)).astype(np.int64)


def _prepare(feats: np.ndarray | torch.Tensor, labels: np.ndarray | None, max_points: int,
             seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(feats.detach().cpu().numpy() if isinstance(feats, torch.Tensor) else feats, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 3:
        raise ValueError(f"an embedding needs a feature matrix with at least 3 rows; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf; the checkpoint is likely diverged")
    idx = subsample(x.shape[0], max_points, seed)
    y = np.full(x.shape[0], -1, np.int64) if labels is None else np.asarray(labels, np.int64)
    return x[idx], y[idx], idx


def pca_reduce(x: np.ndarray, dims: int, seed: int = 0) -> np.ndarray:
    """Rows of x (n, D) projected on their first ``dims`` principal components (n, dims)."""
    from sklearn.decomposition import PCA

    dims = min(dims, x.shape[0], x.shape[1])
    # randomized SVD: ~0.2 s instead of ~1.5 s for 5,000 x 384, deterministic given the seed
    return PCA(dims, svd_solver="randomized", random_state=seed).fit_transform(x).astype(np.float32)


def pca_embedding(feats: np.ndarray | torch.Tensor, labels: np.ndarray | None = None, seed: int = 0,
                  max_points: int = 0) -> Embedding:
    """PCA to 2-D of the l2-normalised features: instant, linear, a first look."""
    x, y, idx = _prepare(feats, labels, max_points, seed)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    coords = pca_reduce(x, 2, seed)
    if coords.shape[1] < 2:  # one-dimensional features: pad to a plane
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return Embedding(coords, y, idx, "pca", {"seed": seed, "max_points": max_points})


def exact_cosine_knn(x: np.ndarray, k: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours by cosine distance, self first: indices (n, k) int32 and
    distances 1 - cos (n, k) float32, as umap-learn's ``precomputed_knn`` expects."""
    xt = F.normalize(torch.from_numpy(x).float(), dim=1)
    idx, dist = [], []
    for s in range(0, xt.shape[0], chunk):
        sim = xt[s:s + chunk] @ xt.T  # (c, n)
        rows = torch.arange(s, min(s + chunk, xt.shape[0]))
        sim[torch.arange(len(rows)), rows] = 2.0  # self ranks first, at distance 0
        top, ids = sim.topk(k, dim=1)
        idx.append(ids)
        dist.append((1.0 - top).clamp_min(0.0))
    return torch.cat(idx).numpy().astype(np.int32), torch.cat(dist).numpy().astype(np.float32)


_umap_jit_persisted = False


def persist_umap_jit() -> None:
    """Let numba keep umap-learn's compiled kernels on disk across processes.

    umap-learn JIT-compiles its layout epoch and fuzzy-set kernels without ``cache=True``, so
    every new process spends ~4 s compiling them (most of a 5,000-point fit once the kNN is
    given). This recompiles the same Python functions with the same options plus
    ``cache=True`` (numba's public API), and numba stores the machine code in
    ``$NUMBA_CACHE_DIR``, umap's ``__pycache__`` or the user cache; later processes load it.
    Outputs are identical. Should a umap version rename these internals, nothing is patched
    and UMAP compiles as before.
    """
    global _umap_jit_persisted
    if _umap_jit_persisted:
        return
    _umap_jit_persisted = True
    try:
        import numba
        import umap.layouts as layouts
        import umap.umap_ as umap_
    except ImportError:
        return
    try:
        layouts._nb_optimize_layout_euclidean_single_epoch = numba.njit(
            layouts._optimize_layout_euclidean_single_epoch, fastmath=True, parallel=False, cache=True)
    except (AttributeError, RuntimeError):  # renamed internals, or no writable cache folder
        pass
    for name in ("smooth_knn_dist", "compute_membership_strengths"):
        try:
            fn = getattr(umap_, name)
            opts = {k: v for k, v in fn.targetoptions.items() if k != "nopython"}  # implied by njit
            setattr(umap_, name, numba.njit(fn.py_func, cache=True, locals=fn.locals, **opts))
        except (AttributeError, RuntimeError, TypeError):
            pass


def umap_embedding(feats: np.ndarray | torch.Tensor, labels: np.ndarray | None = None, seed: int = 0,
                   n_neighbors: int = 15, min_dist: float = 0.1, pca_dims: int = 50, n_epochs: int = 200,
                   max_points: int = 5000) -> Embedding:
    """UMAP to 2-D with the cosine metric, on at most ``max_points`` rows (drawn by ``seed``).

    Same features and seed give the same coordinates (umap-learn runs single-threaded when
    seeded). Falls back to PCA for fewer than n_neighbors + 2 rows, where UMAP is undefined.
    """
    x, y, idx = _prepare(feats, labels, max_points, seed)
    if x.shape[0] < n_neighbors + 2:
        emb = pca_embedding(x, y, seed)
        emb.indices, emb.params["fallback"] = idx, f"only {x.shape[0]} points: PCA instead of UMAP"
        return emb
    import umap  # a heavy import (numba): only when UMAP is asked for

    persist_umap_jit()

    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if x.shape[1] > pca_dims:
        x = pca_reduce(x, pca_dims, seed)
    knn_idx, knn_dist = exact_cosine_knn(x, n_neighbors)
    reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, metric="cosine", n_epochs=n_epochs,
                        random_state=seed, precomputed_knn=(knn_idx, knn_dist, None), init="spectral")
    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():
            # "n_jobs overridden by random_state" and "no search index for transform": both expected
            warnings.simplefilter("ignore")
            coords = reducer.fit_transform(x).astype(np.float32)
    finally:  # the fit leaves torch on another thread count (2 after OMP_NUM_THREADS=1): give it back
        torch.set_num_threads(threads)
    params = {"seed": seed, "n_neighbors": n_neighbors, "min_dist": min_dist, "pca_dims": pca_dims,
              "n_epochs": n_epochs, "max_points": max_points}
    return Embedding(coords, y, idx, "umap", params)


def embed(feats: np.ndarray | torch.Tensor, labels: np.ndarray | None = None, method: str = "umap",
          seed: int = 0, max_points: int = 5000, **umap_kwargs: Any) -> Embedding:
    """``umap_embedding`` or ``pca_embedding`` by name."""
    if method == "umap":
        return umap_embedding(feats, labels, seed=seed, max_points=max_points, **umap_kwargs)
    if method == "pca":
        return pca_embedding(feats, labels, seed=seed, max_points=max_points)
    raise ValueError(f"embedding method '{method}' is not known; choose one of: {', '.join(METHODS)}")


def source_embedding(source: Source, split: str = "train", method: str = "umap", feature: str = "cls",
                     max_points: int = 5000, seed: int = 0) -> Embedding:
    """Cached 2-D embedding of the features of the first ``max_points`` images of ``split`` of
    an ``analysis.source.Source``; ``indices`` are rows of that split (for thumbnails:
    ``analysis.source.split_images``)."""
    from analysis.features import split_features

    params = {"split": split, "method": method, "feature": feature, "max_points": max_points, "seed": seed,
              **source.data_params()}

    def compute() -> Embedding:
        # the first max_points images of the split (splits come shuffled): no features are
        # extracted for images that would not be drawn
        feats = split_features(source, split, max_points)
        return embed(feats.get(feature), feats.labels, method=method, seed=seed, max_points=0)

    return source.cache.cached_dataclass(Embedding, "embedding", source.checkpoint, params, compute)
