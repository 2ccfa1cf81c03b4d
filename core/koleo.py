"""KoLeo (Sablayrolles et al. 2019; DINOv2's ``KoLeoLoss``): spreads features by pushing up
the log distance of each sample to its nearest neighbour in the batch. Used by DINO on the
student's [CLS] and by I-JEPA on the pooled context features."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def koleo_loss(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KoLeo: -mean_i log(min_{j != i} ||x_i - x_j||) on l2-normalised rows. (N, D) -> scalar."""
    xn = F.normalize(x.float(), dim=-1, eps=eps)
    with torch.no_grad():
        dots = xn @ xn.T  # (N, N)
        dots.fill_diagonal_(-2.0)  # never pick itself
        nn_idx = dots.argmax(dim=1)  # nearest neighbour on the sphere = max cosine
    dist_nn = F.pairwise_distance(xn, xn[nn_idx], eps=eps)
    return -torch.log(dist_nn + eps).mean()
