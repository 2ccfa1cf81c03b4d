"""Analysis speed: feature extraction images/s, and the time until a user sees a UMAP of
5,000 x 384 features -- ours (``analysis.embedding.umap_embedding``) against umap-learn at its
defaults, in the same run, each in a fresh process (numba compiles per process, so that is
what a user waits for), with numba's on-disk cache warm and cold; then the cached re-read.

    python benchmarks/analysis_speed.py            # a few minutes on 2 cores
    python benchmarks/analysis_speed.py --quick    # warm cache only

The features are a synthetic 8-class mixture with a decaying spectrum (what trained [CLS]
features look like), so the run needs no checkpoint; quality is compared by the 2-D 10-NN
label agreement and sklearn's trustworthiness (how well 2-D neighbours were neighbours in 384-D).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_features(n: int = 5000, d: int = 384, classes: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    scales = 1.0 / np.sqrt(1 + np.arange(d))  # decaying spectrum
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
    centres = rng.normal(size=(classes, d)) * scales * 6
    x = (centres[y] + rng.normal(size=(n, d)) * scales) @ basis
    return x.astype(np.float32), y


def child(kind: str, data: str, out: str) -> None:
    """One fit in this (fresh) process; prints JSON timings."""
    t0 = time.perf_counter()
    x = np.load(data)
    if kind == "ours":
        from analysis.embedding import umap_embedding

        t1 = time.perf_counter()
        coords = umap_embedding(x, seed=0).coords
    else:
        import warnings

        import umap

        t1 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            coords = umap.UMAP().fit_transform(x)
    t2 = time.perf_counter()
    np.save(out, coords)
    print(json.dumps({"fit_s": t2 - t1, "process_s": t2 - t0}))


def run_child(kind: str, data: Path, out: Path, numba_cache: str | None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if numba_cache:
        env["NUMBA_CACHE_DIR"] = numba_cache  # an empty folder: numba recompiles its cached kernels
    t = time.perf_counter()
    res = subprocess.run([sys.executable, __file__, "--child", kind, "--data", str(data), "--out", str(out)],
                         env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t
    if res.returncode:
        raise SystemExit(f"{kind} child failed: {res.stderr[-800:]}")
    d = json.loads(res.stdout.strip().splitlines()[-1])
    d["wall_s"] = wall  # interpreter start + imports + fit: what a user waits for
    return d


def quality(coords: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from sklearn.manifold import trustworthiness
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(10).fit(coords, y)
    agree = float((knn.predict(coords) == y).mean())
    sub = np.random.default_rng(0).choice(len(x), 1500, replace=False)
    xn = x[sub] / np.linalg.norm(x[sub], axis=1, keepdims=True)
    return agree, float(trustworthiness(xn, coords[sub], n_neighbors=10))


def feature_speed(repeats: int = 3) -> None:
    """``core.features.extract`` against the usual loop (normalise a batch of 64, timm
    ``forward_features`` under no_grad, keep [CLS]), both from the same uint8 images;
    interleaved, best of ``repeats``, so the load of a shared machine hits both alike."""
    import torch

    from core.features import extract
    from trainer.config import Data, Model
    from trainer.data.datasets import build_dataset, normalize
    from trainer.models.backbone import build_backbone

    images = build_dataset(Data(num_train=2048, num_val=16), "train", 0).images

    def peer(vit) -> None:
        with torch.no_grad():
            for s in range(0, len(images), 64):
                vit.forward_features(normalize(images[s:s + 64]))[:, 0]

    for preset in ("cpu-tiny", "cpu-small"):
        vit = build_backbone(Model(preset=preset), 32).eval()
        extract(vit, images[:64], device="cpu")  # warm-up
        best = {"ours": float("inf"), "peer": float("inf")}
        for _ in range(repeats):
            for name in ("ours", "peer"):
                t = time.perf_counter()
                if name == "ours":
                    extract(vit, images, device="cpu")
                else:
                    peer(vit)
                best[name] = min(best[name], time.perf_counter() - t)
        ours, other = len(images) / best["ours"], len(images) / best["peer"]
        print(f"features {preset} ({vit.num_features}-d, 32 px, {len(images)} images): {ours:6.0f} images/s "
              f"(usual no_grad loop at batch 64: {other:6.0f} images/s, ratio {ours / other:.2f})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child")
    ap.add_argument("--data")
    ap.add_argument("--out")
    ap.add_argument("--quick", action="store_true", help="warm numba cache only")
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.data, a.out)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    feature_speed()
    x, y = make_features()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "x.npy", x)
        rows = []
        settings = [("warm", None)] + ([] if a.quick else [("cold", str(tmp / "numba_cold_{}"))])
        for cache, numba_dir in settings:
            for kind in ("ours", "default"):
                nd = numba_dir.format(kind) if numba_dir else None
                r = run_child(kind, tmp / "x.npy", tmp / f"{kind}.npy", nd)
                agree, trust = quality(np.load(tmp / f"{kind}.npy"), x, y)
                rows.append((cache, kind, r, agree, trust))
                print(f"UMAP 5000 x 384, {kind:7s} numba cache {cache}: fit {r['fit_s']:6.1f} s, "
                      f"whole process {r['wall_s']:6.1f} s; 2-D 10-NN label agreement {agree:.3f}, "
                      f"trustworthiness {trust:.3f}", flush=True)
        for cache in ("warm", "cold"):
            got = {k: r for c, k, r, _, _ in rows if c == cache}
            if len(got) == 2:
                d, o = got["default"], got["ours"]
                print(f"ratio default / ours ({cache} cache): fit {d['fit_s'] / o['fit_s']:.1f}x, "
                      f"whole process {d['wall_s'] / o['wall_s']:.1f}x")
        # from cache: what the dashboard does on the second request
        from analysis.cache import ResultCache
        from analysis.embedding import Embedding, umap_embedding

        cache = ResultCache(tmp / "analysis")
        cache.cached_dataclass(Embedding, "embedding", "bench", {}, lambda: umap_embedding(x, y, seed=0))
        t = time.perf_counter()
        cache.cached_dataclass(Embedding, "embedding", "bench", {}, lambda: umap_embedding(x, y, seed=0))
        print(f"UMAP 5000 x 384 from the analysis cache: {1000 * (time.perf_counter() - t):.1f} ms")


if __name__ == "__main__":
    main()
