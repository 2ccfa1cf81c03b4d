"""Weighted k-NN classification of features, as in DINO's ``eval_knn`` (Caron et al. 2021).

Each test feature votes with its ``k`` most cosine-similar training features; a neighbour of
similarity s adds exp(s / T) to its class. k = 20 and T = 0.07 are DINO's defaults.

Part of ``core`` (torch only, no scikit-learn), so the trainer's online evaluation and the
dashboard's offline scores are the same maths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KNN_K = 20
KNN_TEMP = 0.07


@torch.no_grad()
def weighted_knn_scores(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                        k: int = KNN_K, T: float = KNN_TEMP, num_classes: int | None = None,
                        chunk: int = 1024) -> torch.Tensor:
    """Class vote totals (M, C): sum over the k nearest training features (cosine) of
    exp(sim / T), per class.

    train_feats (N, D), train_labels (N,) int in [0, C), test_feats (M, D); features need not be
    normalised (they are l2-normalised here). ``k`` is clipped to N. Test rows are processed in
    chunks of ``chunk`` so the (chunk, N) similarity matrix stays small.
    """
    if train_feats.ndim != 2 or test_feats.ndim != 2 or train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f"features must be (N, D) and (M, D) with equal D; got {tuple(train_feats.shape)} "
                         f"and {tuple(test_feats.shape)}")
    if train_labels.shape != (train_feats.shape[0],):
        raise ValueError(f"train_labels must be ({train_feats.shape[0]},); got {tuple(train_labels.shape)}")
    if train_feats.shape[0] == 0:
        raise ValueError("k-NN needs at least one training feature")
    labels = train_labels.to(train_feats.device).long()
    if (labels < 0).any():
        raise ValueError("k-NN needs labelled training features (labels >= 0); drop the unlabelled ones")
    C = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    k = min(int(k), train_feats.shape[0])
    train_n = F.normalize(train_feats.float(), dim=1)
    out = []
    for start in range(0, test_feats.shape[0], chunk):
        q = F.normalize(test_feats[start:start + chunk].float().to(train_n.device), dim=1)
        sim = q @ train_n.T  # (m, N) cosine similarities
        top_sim, top_idx = sim.topk(k, dim=1)  # (m, k)
        weights = (top_sim / T).exp()  # (m, k)
        votes = torch.zeros(q.shape[0], C, device=q.device, dtype=weights.dtype)
        votes.scatter_add_(1, labels[top_idx], weights)  # (m, C): sum of weights per class
        out.append(votes)
    if not out:
        return torch.zeros(0, C, device=train_feats.device)
    return torch.cat(out)


@torch.no_grad()
def weighted_knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                         k: int = KNN_K, T: float = KNN_TEMP, num_classes: int | None = None) -> torch.Tensor:
    """Predicted class (M,) int64 of each test feature: argmax of :func:`weighted_knn_scores`."""
    return weighted_knn_scores(train_feats, train_labels, test_feats, k, T, num_classes).argmax(dim=1)


@torch.no_grad()
def knn_top1(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
             test_labels: torch.Tensor, k: int = KNN_K, T: float = KNN_TEMP,
             num_classes: int | None = None) -> float:
    """Top-1 accuracy in [0, 1] of the weighted k-NN on labelled test features."""
    if test_labels.numel() == 0:
        return float("nan")
    pred = weighted_knn_predict(train_feats, train_labels, test_feats, k, T, num_classes)
    return float((pred.cpu() == test_labels.cpu().long()).float().mean())


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    idx = target.long().cpu() * num_classes + pred.long().cpu()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
