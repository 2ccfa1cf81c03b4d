"""Image-level features of a backbone: the [CLS] token and the pooled patch tokens, one
definition for the online k-NN, the collapse statistics every method logs, the probes and the
analysis pages.

Pooling follows timm's and MAE's average pooling (``global_pool='avg'``, MAE's models_vit.py):
average the last block's patch tokens, then apply the final norm, instead of averaging the
tokens after the norm. On shapes that matters for MAE, whose tokens keep a few
high-variance dims that the token-wise norm passes into the mean: k-NN 0.22 averaged after
the norm vs 0.25 before it, random init 0.18 either way; I-JEPA 0.35 vs 0.34
(docs/architecture.md).

For backbones without a [CLS] token the ``cls`` feature is the pooled one, so every consumer
can ask for ``cls`` and get the image-level feature the model has.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.eval_mode import eval_mode
from core.images import normalize
from core.vit import ViT, block_tokens, num_prefix

FEATURE_KINDS = ("cls", "pooled")


def _check_kind(kind: str) -> None:
    if kind not in FEATURE_KINDS:
        raise ValueError(f"feature kind '{kind}' is not known; choose one of: {', '.join(FEATURE_KINDS)}")


def pooled(vit: ViT, pre: torch.Tensor) -> torch.Tensor:
    """Block outputs before the final norm (B, prefix + N, D) -> (B, D): the mean of the patch
    tokens, then the final norm (timm's / MAE's ``global_pool='avg'``)."""
    return vit.norm(pre[:, num_prefix(vit):].mean(1))


def image_feature(vit: ViT, pre: torch.Tensor, kind: str) -> torch.Tensor:
    """The feature ``kind`` ("cls" | "pooled") from block outputs before the final norm
    (B, prefix + N, D) -> (B, D). "cls" is the final-norm [CLS] token (pooled without one)."""
    _check_kind(kind)
    if kind == "cls" and vit.cls_token is not None:
        return vit.norm(pre[:, 0])  # the norm is per token: = forward_features(x)[:, 0]
    return pooled(vit, pre)


PIXEL_SIZE = 16  # side of the raw-pixel reference features (3 * 16 * 16 = 768 values per image)


def pixel_features(images: np.ndarray | torch.Tensor, size: int = PIXEL_SIZE) -> torch.Tensor:
    """Raw-pixel reference features (N, 3 * size * size) of uint8 images (N, S, S, 3) or
    normalised ones (N, 3, S, S): the normalised images, area-downsampled to ``size`` px so
    the vectors stay short. The baseline every learnt feature's k-NN is compared with (the
    online k-NN at step 0 and the offline scores read this one definition)."""
    x = normalize(images) if isinstance(images, np.ndarray) and images.dtype == np.uint8 \
        else torch.as_tensor(images).float()
    if x.shape[-1] != size:
        x = torch.nn.functional.adaptive_avg_pool2d(x, size)
    return x.reshape(x.shape[0], -1)


@dataclass
class Features:
    """Image-level features of N images."""

    cls: np.ndarray  # (N, D) float32 final-norm [CLS] token (pooled where there is no [CLS])
    pooled: np.ndarray  # (N, D) float32 final norm of the mean of the last block's patch tokens
    labels: np.ndarray  # (N,) int64, -1 = unlabelled
    indices: np.ndarray  # (N,) int64 rows of the split these came from
    patches: np.ndarray | None = None  # (N, h*w, D) float32 final patch tokens, when asked for

    def get(self, kind: str) -> np.ndarray:
        """``cls`` or ``pooled`` by name."""
        _check_kind(kind)
        return self.cls if kind == "cls" else self.pooled


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.inference_mode()
def extract(vit: ViT, images: np.ndarray | torch.Tensor, labels: np.ndarray | None = None,
            batch_size: int | None = None, with_patches: bool = False,
            device: str | torch.device | None = None) -> Features:
    """Features of ``images``: uint8 (N, S, S, 3) (normalised here, batch by batch, to keep
    memory flat) or already normalised float (N, 3, H, W). The backbone runs in eval mode on
    ``device`` (default: CUDA if available), is left on that device and gets its mode back.
    ``batch_size`` default: 64 on CPU (smaller batches stay in cache: 714 vs 513 images/s at
    256 for cpu-small), 256 on GPU."""
    dev = _device(device)
    batch_size = batch_size or (256 if dev.type == "cuda" else 64)
    vit.to(dev)
    p = num_prefix(vit)
    n = len(images)
    cls, pool, patches = [], [], []
    with eval_mode(vit):
        for s in range(0, n, batch_size):
            chunk = images[s:s + batch_size]
            x = normalize(chunk) if (isinstance(chunk, np.ndarray) and chunk.dtype == np.uint8) \
                else torch.as_tensor(chunk)
            pre = block_tokens(vit, x.to(dev, non_blocking=True).float())  # (b, P + h*w, D)
            pool.append(pooled(vit, pre).float().cpu())
            cls.append(image_feature(vit, pre, "cls").float().cpu())
            if with_patches:
                patches.append(vit.norm(pre[:, p:]).float().cpu())
    d = int(vit.num_features)
    as_np = (lambda xs: torch.cat(xs).numpy() if xs else np.zeros((0, d), np.float32))
    y = np.full(n, -1, np.int64) if labels is None else np.asarray(labels, np.int64)
    return Features(as_np(cls), as_np(pool), y, np.arange(n, dtype=np.int64),
                    torch.cat(patches).numpy() if with_patches and patches else None)
