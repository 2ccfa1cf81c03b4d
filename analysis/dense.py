"""Views of dense (patch) features: DINOv2's PCA colouring and patch-similarity maps.

- ``patch_pca``: DINOv2's signature figure (Oquab et al. 2024, Fig. 1 and Sec. 7.4). A PCA of
  all patch features of a set of images; the first component, thresholded, separates the
  foreground from the background; a second PCA on the foreground patches alone gives three
  components shown as RGB, so matching parts of different images get matching colours.
  The first component's sign is arbitrary: it is oriented so that the foreground holds a
  smaller share of the border patches than of the interior ones (objects rarely fill the
  border of a picture).
- ``patch_similarity``: the cosine of one patch's feature to every patch of the image (or of
  another image): click a patch on the dashboard and see which parts the model groups with it.

Both work on (N, h, w, D) arrays: the probe's saved ``patches`` or ``dense_features`` of any
backbone (a run's or an outside checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.features import extract
from core.vit import ViT


@dataclass
class PatchPCA:
    """PCA colouring of the patch features of N images on an (h, w) grid."""

    rgb: np.ndarray  # (N, h, w, 3) float in [0, 1]: three foreground components as colours, background black
    foreground: np.ndarray  # (N, h, w) bool: the first component above the threshold
    first: np.ndarray  # (N, h, w) float: the first component (oriented: foreground positive)
    explained: np.ndarray  # (3,) share of the foreground patches' variance in each colour component


def _components(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores (M, k), unit directions (k, D) and explained variance shares (k,) of the centred rows
    of x (M, D); each direction's sign makes its largest loading positive (stable colours)."""
    xc = x - x.mean(0, keepdims=True)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    k = min(k, vt.shape[0])
    vt = vt[:k] * np.sign(vt[:k][np.arange(k), np.abs(vt[:k]).argmax(1)])[:, None]
    var = s ** 2
    share = var[:k] / max(var.sum(), 1e-12)
    return xc @ vt.T, vt, share


def _border(h: int, w: int) -> np.ndarray:
    b = np.zeros((h, w), bool)
    b[0], b[-1], b[:, 0], b[:, -1] = True, True, True, True
    return b


def patch_pca(patches: np.ndarray, threshold: float = 0.0) -> PatchPCA:
    """DINOv2's PCA view of patch features (N, h, w, D) (module docstring). ``threshold`` on the
    first component, in units of its standard deviation (0: the mean)."""
    f = np.asarray(patches, dtype=np.float64)
    n, h, w, d = f.shape
    flat = f.reshape(-1, d)
    scores, _, _ = _components(flat, 1)
    first = scores[:, 0] / max(scores[:, 0].std(), 1e-12)
    border = np.broadcast_to(_border(h, w), (n, h, w)).reshape(-1)
    if h > 2 and w > 2 and (first[border] > threshold).mean() > (first[~border] > threshold).mean():
        first = -first  # the side that fills the border is the background
    fg = first > threshold
    rows = flat[fg] if fg.sum() >= 3 else flat  # too few foreground patches: colour all of them
    sc, vt, share = _components(rows, 3)
    colour = (flat - rows.mean(0, keepdims=True)) @ vt.T  # (N*h*w, k)
    lo, hi = sc.min(0), sc.max(0)
    rgb = np.zeros((len(flat), 3))
    rgb[:, :colour.shape[1]] = np.clip((colour - lo) / np.maximum(hi - lo, 1e-12), 0, 1)
    rgb[~fg] = 0.0
    return PatchPCA(rgb.reshape(n, h, w, 3), fg.reshape(n, h, w), first.reshape(n, h, w),
                    np.pad(share, (0, 3 - len(share))))


def patch_similarity(patches: np.ndarray, row: int, col: int, image: int = 0,
                     other: int | None = None) -> np.ndarray:
    """(h, w) cosine between patch (``row``, ``col``) of image ``image`` and every patch of
    image ``other`` (default: the same image). ``patches`` (N, h, w, D) or (h, w, D)."""
    f = np.asarray(patches, dtype=np.float64)
    if f.ndim == 3:
        f = f[None]
    if not (0 <= row < f.shape[1] and 0 <= col < f.shape[2]):
        raise ValueError(f"patch ({row}, {col}) is outside the {f.shape[1]} x {f.shape[2]} grid")
    q = f[image, row, col]
    t = f[image if other is None else other]
    num = t @ q
    den = np.linalg.norm(t, axis=-1) * max(np.linalg.norm(q), 1e-12)
    return num / np.maximum(den, 1e-12)


def dense_features(vit: ViT, images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Final-norm patch features (N, h, w, D) float32 of uint8 (N, S, S, 3) or normalised images."""
    feats = extract(vit, images, with_patches=True, device="cpu")
    assert feats.patches is not None
    n, p, d = feats.patches.shape
    side = int(round(p ** 0.5))
    return feats.patches.reshape(n, side, side, d)


def patch_labels(masks: np.ndarray, labels: np.ndarray, patch: int) -> np.ndarray:
    """(N, h, w) int64 label per patch from exact object masks (N, S, S) bool and image labels
    (N,): 0 where the patch centre is background, 1 + the image's class where it is on the object."""
    m = np.asarray(masks, bool)[:, patch // 2::patch, patch // 2::patch]
    return np.where(m, 1 + np.asarray(labels, np.int64)[:, None, None], 0)


@dataclass
class PatchKNN:
    """Patch-level k-NN segmentation scores on the query images."""

    miou: float  # mean over the C classes (background + objects) of the IoU of predicted vs true patches
    iou: np.ndarray  # (C,) per class
    accuracy: float  # share of patches labelled correctly
    foreground_iou: float  # IoU of "any object class" predicted vs true (object vs background)


def patch_knn(bank: np.ndarray, bank_labels: np.ndarray, query: np.ndarray, query_labels: np.ndarray,
              num_classes: int, k: int = 20, T: float = 0.07) -> PatchKNN:
    """Weighted k-NN (``core.knn``: cosine, k = 20, T = 0.07, as DINO's image k-NN) of every
    query patch (N, h, w, D) among the bank's patches (M, h', w', D), labels from ``patch_labels``:
    a semantic segmentation by nearest patches, scored against the exact masks."""
    from core.knn import weighted_knn_predict

    d = bank.shape[-1]
    pred = weighted_knn_predict(torch.from_numpy(np.ascontiguousarray(bank.reshape(-1, d), np.float32)),
                                torch.from_numpy(bank_labels.reshape(-1)),
                                torch.from_numpy(np.ascontiguousarray(query.reshape(-1, d), np.float32)),
                                k=k, T=T, num_classes=num_classes).numpy()
    true = query_labels.reshape(-1)
    iou = np.array([((pred == c) & (true == c)).sum() / max(((pred == c) | (true == c)).sum(), 1)
                    for c in range(num_classes)])
    present = np.array([(true == c).any() or (pred == c).any() for c in range(num_classes)])
    fg_p, fg_t = pred > 0, true > 0
    return PatchKNN(float(iou[present].mean()), iou, float((pred == true).mean()),
                    float((fg_p & fg_t).sum() / max((fg_p | fg_t).sum(), 1)))
