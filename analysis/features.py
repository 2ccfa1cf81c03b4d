"""Features of a dataset split from a backbone: [CLS], pooled patch tokens and (on request)
the patch tokens themselves, batched under inference mode.

Pooling follows timm's and MAE's average pooling (``global_pool='avg'``, MAE's models_vit.py):
average the last block's patch tokens, then apply the final norm, instead of averaging the
tokens after the norm. On shapes that matters for MAE, whose tokens keep a few
high-variance dims that the token-wise norm passes into the mean: k-NN 0.22 averaged after
the norm vs 0.25 before it, random init 0.18 either way; I-JEPA 0.35 vs 0.34
(docs/architecture.md).

For backbones without a [CLS] token (I-JEPA's encoders) the ``cls`` field holds the pooled
features, so every consumer can ask for ``cls`` and get the image-level feature the model has.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from timm.models.vision_transformer import VisionTransformer

from trainer.data.datasets import normalize
from trainer.models.backbone import embed_tokens, num_prefix

if TYPE_CHECKING:  # annotation only: the pure functions here need no run or checkpoint machinery
    from analysis.source import Source

FEATURE_KINDS = ("cls", "pooled")


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
        if kind not in FEATURE_KINDS:
            raise ValueError(f"feature kind '{kind}' is not known; choose one of: {', '.join(FEATURE_KINDS)}")
        return self.cls if kind == "cls" else self.pooled


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.inference_mode()
def extract(vit: VisionTransformer, images: np.ndarray | torch.Tensor, labels: np.ndarray | None = None,
            batch_size: int | None = None, with_patches: bool = False,
            device: str | torch.device | None = None) -> Features:
    """Features of ``images``: uint8 (N, S, S, 3) (normalised here, batch by batch, to keep
    memory flat) or already normalised float (N, 3, H, W). The backbone runs in eval mode on
    ``device`` (default: CUDA if available) and is left there. ``batch_size`` default: 64 on
    CPU (smaller batches stay in cache: 714 vs 513 images/s at 256 for cpu-small), 256 on GPU."""
    dev = _device(device)
    batch_size = batch_size or (256 if dev.type == "cuda" else 64)
    vit.eval().to(dev)
    p = num_prefix(vit)
    has_cls = vit.cls_token is not None
    n = len(images)
    cls, pooled, patches = [], [], []
    for s in range(0, n, batch_size):
        chunk = images[s:s + batch_size]
        x = normalize(chunk) if (isinstance(chunk, np.ndarray) and chunk.dtype == np.uint8) else torch.as_tensor(chunk)
        # forward_features in two halves, to pool before the final norm
        pre = vit.blocks(embed_tokens(vit, x.to(dev, non_blocking=True).float()))  # (b, P + h*w, D)
        tokens = vit.norm(pre)  # (b, P + h*w, D), = vit.forward_features(x)
        patch_tokens = tokens[:, p:]
        mean = vit.norm(pre[:, p:].mean(1))  # (b, D): average pool, then the final norm
        pooled.append(mean.float().cpu())
        cls.append((tokens[:, 0] if has_cls else mean).float().cpu())
        if with_patches:
            patches.append(patch_tokens.float().cpu())
    d = int(vit.num_features)
    as_np = (lambda xs: torch.cat(xs).numpy() if xs else np.zeros((0, d), np.float32))
    y = np.full(n, -1, np.int64) if labels is None else np.asarray(labels, np.int64)
    return Features(as_np(cls), as_np(pooled), y, np.arange(n, dtype=np.int64),
                    torch.cat(patches).numpy() if with_patches and patches else None)


def random_init_like(vit: VisionTransformer, seed: int = 0) -> VisionTransformer:
    """The same architecture with fresh timm initialisation (seeded): the reference every
    score of a trained backbone is compared with."""
    fresh = copy.deepcopy(vit).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh.init_weights(needs_reset=True)  # resets every submodule (norms, LayerScale too)
    return fresh.eval()


def pixel_features(images: np.ndarray, size: int = 16) -> np.ndarray:
    """Raw-pixel baseline features (N, 3 * size * size): normalised images, area-downsampled
    to ``size`` px so the vectors stay short."""
    x = normalize(images)  # (N, 3, S, S)
    if x.shape[-1] != size:
        x = torch.nn.functional.adaptive_avg_pool2d(x, size)
    return x.reshape(x.shape[0], -1).numpy()


def split_features(source: Source, split: str, max_images: int = 0, baseline: str | None = None,
                   batch_size: int | None = None) -> Features:
    """Cached features of the first ``max_images`` (0 = all) of ``split`` of an
    ``analysis.source.Source``'s data. ``baseline="random_init"`` uses the same architecture
    at random initialisation instead (seeded by the data seed)."""
    from analysis.source import split_images

    if baseline not in (None, "random_init"):
        raise ValueError(f"baseline '{baseline}' is not known; use None or 'random_init'")
    params = {"split": split, "max_images": max_images, "baseline": baseline, **source.data_params()}

    def compute() -> Features:
        images, labels, _, _ = split_images(source, split, max_images)
        vit = source.vit if baseline is None else random_init_like(source.vit, source.seed)
        feats = extract(vit, images, labels, batch_size=batch_size)
        source.vit.cpu()
        return feats

    key = source.checkpoint if baseline is None else f"{source.checkpoint}|random_init"
    return source.cache.cached_dataclass(Features, "features", key, params, compute)
