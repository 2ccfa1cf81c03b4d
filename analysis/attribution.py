"""Which pixels drive the representation? captum attributions of a scalar of the embedding:
Integrated Gradients (Sundararajan et al. 2017) smoothed with a noise tunnel (SmoothGrad),
and Occlusion with patch-sized windows. Heatmaps come on the patch grid (h, w), like the
attention maps, so the two can be compared side by side.

The scalar, per image and class c (captum's ``target``):

- prototype score: cosine similarity of the image's [CLS] embedding to the class prototype
  (the l2-normalised mean embedding of the class's training images);
- k-NN score: the weighted k-NN's share of votes for c among the image's k nearest training
  embeddings (``core.knn`` maths; differentiable through the similarities).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.knn import KNN_K, KNN_TEMP

if TYPE_CHECKING:  # annotation only: the pure functions here need no run or checkpoint machinery
    from analysis.source import Source

METHODS = ("integrated_gradients", "occlusion")


def _embedding(vit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    tokens = vit.forward_features(x)  # (B, L, D)
    return tokens[:, 0] if getattr(vit, "cls_token", None) is not None else tokens[:, vit.num_prefix_tokens:].mean(1)


class PrototypeScore(nn.Module):
    """x (B, 3, H, W) -> (B, C): cosine similarity of the embedding to each class prototype."""

    def __init__(self, vit: nn.Module, prototypes: torch.Tensor):
        super().__init__()
        self.vit = vit
        self.register_buffer("prototypes", F.normalize(prototypes.float(), dim=1))  # (C, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(_embedding(self.vit, x), dim=1) @ self.prototypes.T


class KnnScore(nn.Module):
    """x (B, 3, H, W) -> (B, C): weighted k-NN vote share per class, votes exp(sim / T) of the
    k most similar bank embeddings (the same maths as ``core.knn.weighted_knn_scores``)."""

    def __init__(self, vit: nn.Module, bank: torch.Tensor, bank_labels: torch.Tensor, num_classes: int,
                 k: int = KNN_K, T: float = KNN_TEMP):
        super().__init__()
        self.vit, self.k, self.T, self.num_classes = vit, min(k, bank.shape[0]), T, num_classes
        self.register_buffer("bank", F.normalize(bank.float(), dim=1))  # (N, D)
        self.register_buffer("bank_labels", bank_labels.long())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sim = F.normalize(_embedding(self.vit, x), dim=1) @ self.bank.T  # (B, N)
        top_sim, top_idx = sim.topk(self.k, dim=1)
        w = (top_sim / self.T).exp()  # (B, k)
        votes = torch.zeros(x.shape[0], self.num_classes, dtype=w.dtype, device=w.device)
        votes = votes.scatter_add(1, self.bank_labels[top_idx], w)  # (B, C)
        return votes / votes.sum(1, keepdim=True)


def class_prototypes(features: np.ndarray, labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """(C, D) l2-normalised mean of each class's l2-normalised features (zeros for absent classes)."""
    f = F.normalize(torch.as_tensor(features).float(), dim=1)
    y = torch.as_tensor(labels).long()
    keep = y >= 0
    sums = torch.zeros(num_classes, f.shape[1]).index_add_(0, y[keep], f[keep])
    return F.normalize(sums, dim=1)


@dataclass
class Attribution:
    """Attributions of a scalar score for B images."""

    heatmap: np.ndarray  # (B, h, w) attributions summed within each patch (signed)
    pixels: np.ndarray  # (B, H, W) per pixel: IG summed over colour channels; occlusion its window's value
    score: np.ndarray  # (B,) the scalar at the input
    baseline_score: np.ndarray  # (B,) the scalar at the baseline (IG) or NaN (occlusion)
    delta: np.ndarray | None  # (B,) IG convergence delta: sum(attr) - (f(x) - f(baseline)); None otherwise
    target: np.ndarray  # (B,) the class each image's score was taken for
    method: str

    @property
    def completeness_gap(self) -> float | None:
        """max |delta| over the images (IG only): small means the attributions add up faithfully."""
        return None if self.delta is None else float(np.abs(self.delta).max())


def patch_sum(attr: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, h, w): the total attribution of each patch."""
    return F.avg_pool2d(attr.sum(1, keepdim=True), patch_size).squeeze(1) * patch_size * patch_size


def _select(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return out.gather(1, target.view(-1, 1)).squeeze(1)


def integrated_gradients(score: nn.Module, images: torch.Tensor, target: torch.Tensor, patch_size: int,
                         baseline: torch.Tensor | None = None, n_steps: int = 24, noise_tunnel: bool = True,
                         nt_samples: int = 6, nt_stdev: float = 0.15, seed: int = 0) -> Attribution:
    """IG of ``score(x)[b, target[b]]`` from ``baseline`` (default zeros: the dataset mean
    colour in normalised units) to x; with ``noise_tunnel`` averaged over ``nt_samples`` noisy
    copies (SmoothGrad, std ``nt_stdev`` in normalised units). Without the tunnel the
    convergence delta measures completeness: sum(attr) = f(x) - f(baseline) + delta."""
    from captum.attr import IntegratedGradients, NoiseTunnel

    score.eval()
    x = images.detach().float()
    base = torch.zeros_like(x) if baseline is None else baseline.float().expand_as(x)
    target = target.long().view(-1)
    ig = IntegratedGradients(score)
    delta = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the tunnel's noise
        if noise_tunnel:
            attr = NoiseTunnel(ig).attribute(x, nt_type="smoothgrad", nt_samples=nt_samples, stdevs=nt_stdev,
                                             baselines=base, target=target, n_steps=n_steps)
        else:
            attr, delta = ig.attribute(x, baselines=base, target=target, n_steps=n_steps,
                                       return_convergence_delta=True)
    with torch.no_grad():
        fx, fb = _select(score(x), target), _select(score(base), target)
    return Attribution(patch_sum(attr.detach(), patch_size).numpy(), attr.detach().sum(1).numpy(), fx.numpy(),
                       fb.numpy(), None if delta is None else delta.detach().numpy(), target.numpy(),
                       "integrated_gradients" + ("+noise_tunnel" if noise_tunnel else ""))


def occlusion(score: nn.Module, images: torch.Tensor, target: torch.Tensor, patch_size: int,
              fill: float = 0.0) -> Attribution:
    """Occlusion with non-overlapping patch-sized windows: each patch's value is
    f(x) - f(x with that patch set to ``fill``, 0 = the mean colour)."""
    from captum.attr import Occlusion

    score.eval()
    x = images.detach().float()
    target = target.long().view(-1)
    window = (x.shape[1], patch_size, patch_size)
    attr = Occlusion(score).attribute(x, sliding_window_shapes=window, strides=window, baselines=fill,
                                      target=target)
    with torch.no_grad():
        fx = _select(score(x), target)
    # every pixel of a window carries the window's value: read one per patch
    heat = attr.detach()[:, 0, ::patch_size, ::patch_size]  # (B, h, w)
    return Attribution(heat.numpy(), attr.detach()[:, 0].numpy(), fx.numpy(),
                       np.full(x.shape[0], np.nan, np.float32), None, target.numpy(), "occlusion")


SCORES = ("prototype", "knn")


def source_score(source: Source, score: str = "prototype", k: int = KNN_K, T: float = KNN_TEMP,
                 max_bank: int = 0) -> nn.Module:
    """The scalar-producing module for an ``analysis.source.Source``: prototypes or the k-NN
    bank come from the [CLS] features of its train split (first ``max_bank``, 0 = all)."""
    from analysis.features import split_features

    if score not in SCORES:
        raise ValueError(f"score '{score}' is not known; choose one of: {', '.join(SCORES)}")
    feats = split_features(source, "train", max_bank)
    keep = feats.labels >= 0
    if not keep.any():
        raise ValueError("attributions of class scores need labelled training images; this data is unlabelled")
    c = int(feats.labels.max()) + 1
    if score == "prototype":
        return PrototypeScore(source.vit, class_prototypes(feats.cls, feats.labels, c))
    return KnnScore(source.vit, torch.from_numpy(feats.cls[keep]), torch.from_numpy(feats.labels[keep]), c, k, T)


def attribute_source(source: Source, n_images: int = 8, method: str = "integrated_gradients", score: str = "prototype",
                     split: str = "val", **kwargs) -> tuple[np.ndarray, np.ndarray, Attribution]:
    """Attributions for the first ``n_images`` of ``split``, each for its true class (its
    best-scoring class where unlabelled). Returns uint8 images (n, S, S, 3), labels and the
    ``Attribution``; ``kwargs`` go to ``integrated_gradients`` or ``occlusion``."""
    from analysis.source import split_images
    from trainer.data.datasets import normalize

    if method not in METHODS:
        raise ValueError(f"attribution method '{method}' is not known; choose one of: {', '.join(METHODS)}")
    images, labels, _, _ = split_images(source, split, n_images)
    fn = source_score(source, score)
    x = normalize(images)
    with torch.no_grad():
        best = fn(x).argmax(1)
    target = torch.where(torch.from_numpy(labels) >= 0, torch.from_numpy(labels), best)
    p = source.vit.patch_embed.patch_size[0]
    run = integrated_gradients if method == "integrated_gradients" else occlusion
    return images, labels, run(fn, x, target, p, **kwargs)
