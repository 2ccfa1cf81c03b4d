"""DINO's teacher distribution, cross-entropy and ``dino/*`` statistics as pure functions
(Caron et al. 2021; DINOv2, Oquab et al. 2024):

    p_t = softmax((g_t - c) / tau_t)        teacher, centred and sharpened (no gradient)
    log p_s = log_softmax(g_s / tau_s)       student
    CE = mean over pairs (t view != s view) of  -sum_k p_t[k] log p_s[k]
    c <- m c + (1 - m) mean_batch(g_t)       after the loss

or Sinkhorn-Knopp assignments instead of the centred softmax (DINOv2). iBOT's masked-patch
loss (DINOv2) reuses the teacher distribution on patch logits; its per-token cross-entropy,
weighted term, masked-token mean and ``ibot/*`` dict are here too (stateful owner:
``trainer.methods.ibot_loss.IBOTPatchLoss``). The stateful owner of
the centre and the temperature schedule is ``trainer.methods.dino_loss.DINOLoss``; it and
``sslscope.monitor.Monitor.dino`` (a user's own DINO loop) both call these functions, so a
statistic logged by our trainer and the same statistic logged from another trainer's tensors
are one computation.

Functions that reduce over the batch are distributed-aware like DINO and DINOv2 (the global
batch under ``torch.distributed``) unless ``distributed=False``: the monitor writes from rank
0 alone and must not enter a collective the other ranks never join.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

from core import metrics as M
from core.distributed import all_reduce_mean as ranks_mean

CENTERINGS = ("mean", "sinkhorn", "none")


def _distributed(distributed: bool | None) -> bool:
    """Whether to reduce over all ranks: ``None`` = whenever a process group is running."""
    running = dist.is_available() and dist.is_initialized()
    return running if distributed is None else distributed and running


def all_reduce_mean(x: torch.Tensor, distributed: bool | None = None) -> torch.Tensor:
    """The mean of ``x`` over ranks (``x`` itself on one process, or with ``distributed=False``)."""
    return ranks_mean(x) if _distributed(distributed) else x


def teacher_probs_centered(teacher_logits: torch.Tensor, center: torch.Tensor | None,
                           teacher_temp: float) -> torch.Tensor:
    """p_t = softmax((g_t - c) / tau_t); ``center`` None = no centring. (N, K) -> (N, K)."""
    g = teacher_logits if center is None else teacher_logits - center
    return F.softmax(g.float() / teacher_temp, dim=-1)


@torch.no_grad()
def sinkhorn_knopp(teacher_logits: torch.Tensor, teacher_temp: float, n_iters: int = 3,
                   distributed: bool | None = None) -> torch.Tensor:
    """DINOv2's Sinkhorn-Knopp centring. (N, K) logits -> (N, K) assignments whose rows sum
    to 1 and whose columns each sum to N / K (equal use of the prototypes), up to the finite
    number of iterations. Distributed-aware like DINOv2: N counts the rows of every rank (the
    global batch for [CLS], all masked patches of all ranks for iBOT, whose counts differ
    between ranks; a rank may hold none)."""
    distributed = _distributed(distributed)
    # subtract the global max first for stability (a constant cancels in the normalisation)
    g = teacher_logits.float()
    top = g.max() if g.numel() else g.new_tensor(-math.inf)
    if distributed:
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    q = torch.exp((g - top) / teacher_temp).T  # (K, N)
    n = q.shape[1]
    if distributed:  # the rows of every rank, not this rank's count times the world size
        count = torch.tensor(float(n), device=q.device)
        dist.all_reduce(count)
        n = count  # kept on the device: a .item() here would be a host sync every step
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


@torch.no_grad()
def teacher_distribution(teacher_logits: list[torch.Tensor], teacher_temp: float, centering: str = "mean",
                         center: torch.Tensor | None = None, sinkhorn_iters: int = 3,
                         distributed: bool | None = None) -> list[torch.Tensor]:
    """p_t per teacher view (B, K) from the teacher's logits per view (B, K): Sinkhorn-Knopp
    over all views of the batch together, or softmax((g_t - c) / tau_t) with the centre
    ``center`` (1, K) ("mean"), or without one ("none")."""
    assert centering in CENTERINGS, f"centering '{centering}' is not one of {CENTERINGS}"
    g = torch.cat(teacher_logits).float()  # (V_t * B, K)
    if centering == "sinkhorn":
        p = sinkhorn_knopp(g, teacher_temp, sinkhorn_iters, distributed)
    else:
        p = teacher_probs_centered(g, center if centering == "mean" else None, teacher_temp)
    return list(p.chunk(len(teacher_logits)))


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
def updated_center(center: torch.Tensor, teacher_logits: torch.Tensor, momentum: float,
                   distributed: bool | None = None) -> torch.Tensor:
    """c <- m c + (1 - m) mean over the (global) batch of g_t. ``teacher_logits``: (N, K)."""
    batch_center = all_reduce_mean(teacher_logits.float().mean(dim=0, keepdim=True), distributed)  # (1, K)
    return center * momentum + batch_center * (1 - momentum)


def row_entropy(p: torch.Tensor) -> torch.Tensor:
    """(N,) entropy -sum_k p[k] ln p[k] of each row of the distributions ``p`` (N, K)."""
    p = p.float()
    return -(p * torch.log(p + 1e-12)).sum(-1)


@torch.no_grad()
def teacher_stats(teacher_probs: list[torch.Tensor], student_logits: list[torch.Tensor],
                  student_temp: float) -> dict[str, torch.Tensor]:
    """Collapse diagnostics of the teacher's distribution (names in ``core.metrics``).

    ``teacher_probs``: per teacher view (B, K); ``student_logits``: per student view (B, K),
    views aligned as in the loss. Entropies, max prob and top-10% mass are over all teacher
    rows; KL(teacher || student) is averaged over the same view pairs as the loss (i != j), so
    KL = loss - teacher entropy.
    """
    p = torch.cat(teacher_probs).float()
    k = p.shape[-1]
    ent = row_entropy(p).mean()
    mean_p = p.mean(0)
    batch_ent = -(mean_p * torch.log(mean_p + 1e-12)).sum()
    kl_sum, n = torch.zeros((), device=p.device), 0  # on the device: no host copy per view pair
    for i, pt in enumerate(teacher_probs):
        log_pt = torch.log(pt.float() + 1e-12)
        for j, s in enumerate(student_logits):
            if i == j:
                continue
            lps = F.log_softmax(s.float() / student_temp, dim=-1)
            kl_sum = kl_sum + (pt * (log_pt - lps)).sum(-1).mean()
            n += 1
    # share of the batch-mean mass held by the top 10% of dimensions (one-hot collapse: ~1)
    top = max(1, k // 10)
    return {
        M.DINO_TEACHER_ENTROPY: ent,
        M.DINO_TEACHER_BATCH_ENTROPY: batch_ent,
        M.DINO_KL_TEACHER_STUDENT: kl_sum / max(n, 1),
        M.DINO_TEACHER_MAX_PROB: p.max(-1).values.mean(),
        M.DINO_TOP10PCT_MASS: mean_p.topk(top).values.sum(),
        M.DINO_LOG_K: torch.tensor(math.log(k)),
    }


@torch.no_grad()
def dino_stats(ce: torch.Tensor, teacher_temp: float, center: torch.Tensor | None, teacher_probs: list[torch.Tensor],
               student_logits: list[torch.Tensor], student_temp: float) -> dict[str, torch.Tensor | float]:
    """Every ``dino/*`` statistic of one step: the cross-entropy ``ce``, tau_t, the norm of
    the centre (0 without one; after this step's update, as the trainer logs it) and
    :func:`teacher_stats`. The one place this dict is built."""
    stats: dict[str, torch.Tensor | float] = {
        M.DINO_CE: ce.detach(), M.DINO_TEACHER_TEMP: teacher_temp,
        M.DINO_CENTER_NORM: center.norm() if center is not None else torch.zeros(())}
    stats.update(teacher_stats(teacher_probs, student_logits, student_temp))
    return stats


# --- iBOT's masked-patch loss (DINOv2): the stateful owner is trainer.methods.ibot_loss -----------
def ibot_cross_entropy(teacher_probs: torch.Tensor, student_logits: torch.Tensor, student_temp: float) -> torch.Tensor:
    """(M,) CE_j = -sum_k p_t^j[k] log softmax(g_s^j / tau_s)[k] per masked token; inputs (M, K)."""
    return torch.sum(-teacher_probs * F.log_softmax(student_logits.float() / student_temp, dim=-1), dim=-1)


def weighted_patch_loss(ce: torch.Tensor, weights: torch.Tensor, n_crops: int) -> torch.Tensor:
    """L_iBOT = sum_j w_j CE_j / n_crops (DINOv2's ``forward_masked``): ``ce``, ``weights`` (M,),
    w_j = 1 / (masked tokens of j's crop); ``n_crops`` counts every global crop, masked or not."""
    return (ce * weights.to(ce.dtype)).sum() / max(n_crops, 1)


@torch.no_grad()
def masked_mean(teacher_logits: torch.Tensor, distributed: bool | None = None) -> torch.Tensor:
    """(1, K) mean of the teacher's patch logits (M, K) over the masked tokens of every rank:
    their counts differ between ranks, so sums and counts are reduced, not per-rank means."""
    total = teacher_logits.float().sum(0, keepdim=True)
    count = torch.tensor(float(teacher_logits.shape[0]), device=total.device)
    if _distributed(distributed):
        dist.all_reduce(total)
        dist.all_reduce(count)
    return total / count.clamp(min=1.0)


@torch.no_grad()
def ibot_stats(loss: torch.Tensor, ce: torch.Tensor, teacher_probs: torch.Tensor,
               center: torch.Tensor | None) -> dict[str, torch.Tensor | float]:
    """Every ``ibot/*`` statistic of one step: the weighted term ``loss``, the unweighted mean
    of the per-token ``ce`` (M,), the mean entropy of ``teacher_probs`` (M, K), KL = CE - H,
    ln K and the patch centre's norm (0 without one). 0 for CE, H and KL when no token is masked."""
    ce_mean = ce.detach().float().mean() if len(ce) else ce.new_zeros((), dtype=torch.float32)
    ent = row_entropy(teacher_probs)
    ent_mean = ent.mean() if len(ent) else ent.new_zeros(())
    return {M.IBOT_LOSS: loss.detach(), M.IBOT_CE: ce_mean, M.IBOT_TEACHER_ENTROPY: ent_mean,
            M.IBOT_KL: ce_mean - ent_mean, M.IBOT_LOG_K: math.log(teacher_probs.shape[-1]),
            M.IBOT_CENTER_NORM: center.norm() if center is not None else torch.zeros(())}
