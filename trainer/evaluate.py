"""Online evaluation during training: weighted k-NN on a held-out split, and at step 0 the
same k-NN on raw pixels (the reference a learnt feature should beat; the random-initialisation
reference is step 0's ``eval/knn_top1`` itself).

k-NN (DINO's protocol, k = 20, T = 0.07, cosine) on the features of ``core.features`` with the
maths of ``core.knn``, so the number logged while training equals the one the analysis pages
report offline, and reads the same feature as the method's ``collapse/*`` statistics.

Under ``torch.distributed`` every rank extracts the features of its block of the bank and of
the queries (``core.distributed.shard_rows``) and the blocks are gathered on every rank, so the
k-NN of N ranks equals one process's and every rank calls ``knn_eval`` (it is a collective).
"""

from __future__ import annotations

import torch
from torch import nn

from core import distributed
from core.features import extract, pixel_features
from core.knn import knn_top1


def encode(encoder: nn.Module, images: torch.Tensor, device: torch.device, feature: str = "cls") -> torch.Tensor:
    """Image features (N, D) of normalised images (N, 3, S, S), on CPU: ``feature`` "cls" =
    the [CLS] token (DINO trains it), "pooled" = the average-pooled patch tokens (MAE and I-JEPA
    put their loss on patch tokens; pooled as timm and MAE pool, see ``core.features``).
    Extracted in eval mode; the encoder's mode is kept."""
    return torch.from_numpy(extract(encoder, images, device=device).get(feature))  # (N, D)


def encode_sharded(encoder: nn.Module, images: torch.Tensor, device: torch.device,
                   feature: str = "cls") -> torch.Tensor:
    """:func:`encode` of all ``images`` (N, D) on CPU, each rank extracting its block of rows,
    the blocks gathered in order on every rank (on ``device``, where the backend communicates)."""
    if not distributed.running():
        return encode(encoder, images, device, feature)
    mine = encode(encoder, images[distributed.shard_rows(len(images))], device, feature)
    return distributed.gather_shards(mine.to(device), len(images)).cpu()


@torch.no_grad()
def knn_eval(encoder: nn.Module, bank_images: torch.Tensor, bank_labels: torch.Tensor,
             query_images: torch.Tensor, query_labels: torch.Tensor, device: torch.device,
             k: int, temp: float, feature: str = "cls") -> float:
    """Top-1 (0..1) of the weighted k-NN: bank = train split features, queries = val split.
    Under DDP a collective (each rank extracts its share of the features), equal on every rank."""
    keep = bank_labels >= 0
    if keep.sum() == 0 or (query_labels >= 0).sum() == 0:
        return float("nan")  # unlabelled data: no k-NN
    bank = encode_sharded(encoder, bank_images[keep], device, feature=feature)
    qmask = query_labels >= 0
    query = encode_sharded(encoder, query_images[qmask], device, feature=feature)
    num_classes = int(max(bank_labels.max(), query_labels.max())) + 1
    return knn_top1(bank, bank_labels[keep], query, query_labels[qmask], k=k, T=temp, num_classes=num_classes)


@torch.no_grad()
def knn_eval_pixels(bank_images: torch.Tensor, bank_labels: torch.Tensor, query_images: torch.Tensor,
                    query_labels: torch.Tensor, k: int, temp: float) -> float:
    """Top-1 (0..1) of the same weighted k-NN (same bank, queries, k and T) on raw pixels
    (``core.features.pixel_features`` of the normalised images (N, 3, S, S))."""
    keep, qmask = bank_labels >= 0, query_labels >= 0
    if keep.sum() == 0 or qmask.sum() == 0:
        return float("nan")
    num_classes = int(max(bank_labels.max(), query_labels.max())) + 1
    return knn_top1(pixel_features(bank_images[keep]), bank_labels[keep], pixel_features(query_images[qmask]),
                    query_labels[qmask], k=k, T=temp, num_classes=num_classes)
