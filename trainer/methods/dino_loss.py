"""The maths of DINO's objective, as pure functions (Caron et al. 2021; DINOv2, Oquab et al. 2024).

    p_t = softmax((g_t - c) / tau_t)        teacher, centred and sharpened (no gradient)
    log p_s = log_softmax(g_s / tau_s)       student
    L = mean over pairs (t view != s view) of  -sum_k p_t[k] log p_s[k]
    c <- m c + (1 - m) mean_batch(g_t)       after the loss

DINOv2 replaces the running centre by Sinkhorn-Knopp (SwAV, Caron et al. 2020), which makes the
teacher's assignments doubly normalised: every prototype gets equal mass over the batch.
KoLeo (Sablayrolles et al. 2019) spreads features by pushing up the log distance of each
sample to its nearest neighbour in the batch.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        x = x.clone()
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x


def teacher_probs_centered(teacher_logits: torch.Tensor, center: torch.Tensor | None,
                           teacher_temp: float) -> torch.Tensor:
    """p_t = softmax((g_t - c) / tau_t); ``center`` None = no centring. (N, K) -> (N, K)."""
    g = teacher_logits if center is None else teacher_logits - center
    return F.softmax(g.float() / teacher_temp, dim=-1)


@torch.no_grad()
def sinkhorn_knopp(teacher_logits: torch.Tensor, teacher_temp: float, n_iters: int = 3) -> torch.Tensor:
    """DINOv2's Sinkhorn-Knopp centring. (N, K) logits -> (N, K) assignments whose rows sum
    to 1 and whose columns each sum to N / K (equal use of the prototypes), up to the finite
    number of iterations. Distributed-aware like DINOv2: N counts the global batch."""
    distributed = dist.is_available() and dist.is_initialized()
    # subtract the global max first for stability (a constant cancels in the normalisation)
    top = teacher_logits.float().max()
    if distributed:
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    q = torch.exp((teacher_logits.float() - top) / teacher_temp).T  # (K, N)
    n = q.shape[1] * (dist.get_world_size() if distributed else 1)
    k = q.shape[0]
    total = q.sum()
    if distributed:
        dist.all_reduce(total)
    q /= total
    for _ in range(n_iters):
        rows = q.sum(dim=1, keepdim=True)  # (K, 1): mass of each prototype
        if distributed:
            dist.all_reduce(rows)
        q /= rows
        q /= k
        q /= q.sum(dim=0, keepdim=True)  # each sample's mass
        q /= n
    q *= n  # columns (samples) sum to 1
    return q.T  # (N, K)


def dino_cross_entropy(teacher_probs: list[torch.Tensor], student_logits: list[torch.Tensor],
                       student_temp: float) -> torch.Tensor:
    """Mean over (teacher view i, student view j), i != j, of -sum p_t log p_s, averaged over
    the batch. ``teacher_probs``: V_t tensors (B, K); ``student_logits``: V_s tensors (B, K);
    teacher view i and student view i are the same crop (globals first)."""
    total = torch.zeros((), device=student_logits[0].device)
    n_terms = 0
    log_ps = [F.log_softmax(s.float() / student_temp, dim=-1) for s in student_logits]
    for i, pt in enumerate(teacher_probs):
        for j, lps in enumerate(log_ps):
            if i == j:
                continue  # same view: skipped (DINO Alg. 1)
            total = total + torch.sum(-pt * lps, dim=-1).mean()
            n_terms += 1
    assert n_terms > 0, "DINO needs at least two views"
    return total / n_terms


@torch.no_grad()
def updated_center(center: torch.Tensor, teacher_logits: torch.Tensor, momentum: float) -> torch.Tensor:
    """c <- m c + (1 - m) mean over the (global) batch of g_t. ``teacher_logits``: (N, K)."""
    batch_center = _all_reduce_mean(teacher_logits.float().mean(dim=0, keepdim=True))  # (1, K)
    return center * momentum + batch_center * (1 - momentum)


def koleo_loss(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KoLeo: -mean_i log(min_{j != i} ||x_i - x_j||) on l2-normalised rows. (N, D) -> scalar."""
    xn = F.normalize(x.float(), dim=-1, eps=eps)
    with torch.no_grad():
        dots = xn @ xn.T  # (N, N)
        dots.fill_diagonal_(-2.0)  # never pick itself
        nn_idx = dots.argmax(dim=1)  # nearest neighbour on the sphere = max cosine
    dist_nn = F.pairwise_distance(xn, xn[nn_idx], eps=eps)
    return -torch.log(dist_nn + eps).mean()


@torch.no_grad()
def teacher_stats(teacher_probs: torch.Tensor, student_logits: list[torch.Tensor], teacher_views: list[torch.Tensor],
                  student_temp: float) -> dict[str, torch.Tensor]:
    """Collapse diagnostics from the teacher's distribution (DESIGN.md metric names).

    ``teacher_probs``: (V_t * B, K) all teacher views stacked; ``teacher_views``: the same split
    per view; ``student_logits``: per-view student logits. KL(teacher || student) is averaged
    over the same view pairs as the loss, so KL = loss - teacher entropy.
    """
    p = teacher_probs.float()
    k = p.shape[-1]
    ent = -(p * torch.log(p + 1e-12)).sum(-1).mean()
    mean_p = p.mean(0)
    batch_ent = -(mean_p * torch.log(mean_p + 1e-12)).sum()
    kl_sum, n = torch.zeros(()), 0
    for i, pt in enumerate(teacher_views):
        log_pt = torch.log(pt.float() + 1e-12)
        for j, s in enumerate(student_logits):
            if i == j:
                continue
            lps = F.log_softmax(s.float() / student_temp, dim=-1)
            kl_sum = kl_sum + (pt * (log_pt - lps)).sum(-1).mean().cpu()
            n += 1
    # share of the batch-mean mass held by the top 10% of dimensions (one-hot collapse: ~1)
    top = max(1, k // 10)
    return {
        "dino/teacher_entropy": ent,
        "dino/teacher_batch_entropy": batch_ent,
        "dino/kl_teacher_student": kl_sum / max(n, 1),
        "dino/teacher_max_prob": p.max(-1).values.mean(),
        "dino/top10pct_mass": mean_p.topk(top).values.sum(),
        "dino/log_k": torch.tensor(math.log(k)),
    }
