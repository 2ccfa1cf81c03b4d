"""Online evaluation during training: weighted k-NN on a held-out split and the probe batch.

k-NN (DINO's protocol, k = 20, T = 0.07, cosine) uses the maths of ``analysis.knn`` so the
number logged while training equals the one the analysis pages report offline.
"""

from __future__ import annotations

import torch
from torch import nn

from analysis.knn import knn_top1


@torch.no_grad()
def encode(encoder: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 256,
           feature: str = "cls") -> torch.Tensor:
    """Image features (N, D) of normalised images (N, 3, S, S), in eval mode, on CPU.

    ``feature``: "cls" = the [CLS] token (DINO trains it); "pooled" = the mean of the patch
    tokens, registers excluded (MAE and I-JEPA put their loss on patch tokens).
    """
    if feature not in ("cls", "pooled"):
        raise ValueError(f"k-NN feature '{feature}' is not known; choose cls or pooled")
    was_training = encoder.training
    encoder.eval()
    prefix = encoder.num_prefix_tokens
    feats = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].to(device, non_blocking=True)
        tokens = encoder.forward_features(x)  # (B, prefix + L, D)
        pooled = tokens[:, 0] if feature == "cls" else tokens[:, prefix:].mean(dim=1)  # (B, D)
        feats.append(pooled.float().cpu())
    encoder.train(was_training)
    return torch.cat(feats) if feats else torch.zeros(0, 0)


@torch.no_grad()
def knn_eval(encoder: nn.Module, bank_images: torch.Tensor, bank_labels: torch.Tensor,
             query_images: torch.Tensor, query_labels: torch.Tensor, device: torch.device,
             k: int, temp: float, feature: str = "cls") -> float:
    """Top-1 (0..1) of the weighted k-NN: bank = train split features, queries = val split."""
    keep = bank_labels >= 0
    if keep.sum() == 0 or (query_labels >= 0).sum() == 0:
        return float("nan")  # unlabelled data: no k-NN
    bank = encode(encoder, bank_images[keep], device, feature=feature)
    qmask = query_labels >= 0
    query = encode(encoder, query_images[qmask], device, feature=feature)
    num_classes = int(max(bank_labels.max(), query_labels.max())) + 1
    return knn_top1(bank, bank_labels[keep], query, query_labels[qmask], k=k, T=temp, num_classes=num_classes)
