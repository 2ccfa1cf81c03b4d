"""DINO's objective as one object that owns its state (Caron et al. 2021; DINOv2, Oquab et al.
2024), as lightly's ``DINOLoss`` owns its centre:

    p_t = softmax((g_t - c) / tau_t)        teacher, centred and sharpened (no gradient)
    log p_s = log_softmax(g_s / tau_s)       student
    L = mean over pairs (t view != s view) of  -sum_k p_t[k] log p_s[k]
    c <- m c + (1 - m) mean_batch(g_t)       after the loss

DINOv2 replaces the running centre by Sinkhorn-Knopp (SwAV, Caron et al. 2020), which makes the
teacher's assignments doubly normalised: every prototype gets equal mass over the batch.

``DINOLoss`` holds the centre buffer, the centring mode, the teacher-temperature schedule and
the student temperature, and computes the teacher distribution, the loss over view pairs, the
centre update and the ``dino/*`` statistics. Training (``methods.dino``), the checkpoint
diagnosis (``analysis.collapse``) and through it the dashboard call this one object, so a
Sinkhorn run is judged on the Sinkhorn assignments it trained with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from core import metrics as M
from trainer.config import Config
from trainer.schedules import linear_warmup_then_constant, value_at

CENTERINGS = ("mean", "sinkhorn", "none")


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
    number of iterations. Distributed-aware like DINOv2: N counts the rows of every rank (the
    global batch for [CLS], all masked patches of all ranks for iBOT)."""
    distributed = dist.is_available() and dist.is_initialized()
    # subtract the global max first for stability (a constant cancels in the normalisation)
    g = teacher_logits.float()
    top = g.max() if g.numel() else g.new_tensor(-math.inf)
    if distributed:
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    q = torch.exp((g - top) / teacher_temp).T  # (K, N)
    n = q.shape[1]
    if distributed:  # the samples of every rank: iBOT's masked-patch counts differ between ranks
        count = torch.tensor(float(n), device=q.device)
        dist.all_reduce(count)
        n = int(count.item())
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
    ent = -(p * torch.log(p + 1e-12)).sum(-1).mean()
    mean_p = p.mean(0)
    batch_ent = -(mean_p * torch.log(mean_p + 1e-12)).sum()
    kl_sum, n = torch.zeros(()), 0
    for i, pt in enumerate(teacher_probs):
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
        M.DINO_TEACHER_ENTROPY: ent,
        M.DINO_TEACHER_BATCH_ENTROPY: batch_ent,
        M.DINO_KL_TEACHER_STUDENT: kl_sum / max(n, 1),
        M.DINO_TEACHER_MAX_PROB: p.max(-1).values.mean(),
        M.DINO_TOP10PCT_MASS: mean_p.topk(top).values.sum(),
        M.DINO_LOG_K: torch.tensor(math.log(k)),
    }


def teacher_temp_schedule(cfg: Config) -> np.ndarray:
    """tau_t per step, shared by the [CLS] and the iBOT patch losses (DINOv2): a linear warm-up,
    and without sharpening (ablation) tau_t = tau_s at every step."""
    d = cfg.dino
    if d.sharpening:
        return linear_warmup_then_constant(d.warmup_teacher_temp, d.teacher_temp, cfg.optim.steps,
                                           d.teacher_temp_warmup_steps)
    return np.full(cfg.optim.steps, d.student_temp)


@dataclass
class DINOLossOutput:
    """The loss to back-propagate, the teacher's distribution per view and the ``dino/*`` stats."""

    loss: torch.Tensor  # scalar cross-entropy over view pairs (gradient to the student)
    teacher_probs: list[torch.Tensor]  # per teacher view (B, K)
    stats: dict[str, torch.Tensor | float] = field(default_factory=dict)


class DINOLoss(nn.Module):
    """DINO's loss with its state: centre ``c`` (buffer, checkpointed), centring mode,
    tau_t schedule (one value per step) and tau_s.

    ``forward(teacher_logits, student_logits, it)`` takes the teacher's logits of the global
    crops and the student's of every crop (globals first, each (B, K)), and returns the loss,
    the teacher distribution and its statistics; with ``update_center`` (training) the centre
    moves after the loss, as in DINO.
    """

    def __init__(self, out_dim: int, student_temp: float, teacher_temp_schedule: np.ndarray,
                 centering: str = "mean", center_momentum: float = 0.9, sinkhorn_iters: int = 3):
        super().__init__()
        assert centering in CENTERINGS, f"centering '{centering}' is not one of {CENTERINGS}"
        self.student_temp = student_temp
        self.teacher_temp_schedule = np.asarray(teacher_temp_schedule, np.float64)
        self.centering = centering
        self.center_momentum = center_momentum
        self.sinkhorn_iters = sinkhorn_iters
        self.register_buffer("center", torch.zeros(1, out_dim))  # c, checkpointed with the weights

    @classmethod
    def from_config(cls, cfg: Config) -> DINOLoss:
        """The loss of ``cfg.dino`` over ``cfg.optim.steps`` (tau_t: ``teacher_temp_schedule``)."""
        d = cfg.dino
        return cls(d.out_dim, d.student_temp, teacher_temp_schedule(cfg), d.centering, d.center_momentum,
                   d.sinkhorn_iters)

    def teacher_temp(self, it: int) -> float:
        """tau_t at step ``it`` (the last value past the end of the schedule)."""
        return value_at(self.teacher_temp_schedule, it)

    @torch.no_grad()
    def teacher_probs(self, teacher_logits: list[torch.Tensor], it: int) -> list[torch.Tensor]:
        """p_t per teacher view (B, K): Sinkhorn-Knopp over all views of the batch together,
        or softmax((g_t - c) / tau_t) with the running centre, or without one."""
        g = torch.cat(teacher_logits).float()  # (V_t * B, K)
        tau_t = self.teacher_temp(it)
        if self.centering == "sinkhorn":
            p = sinkhorn_knopp(g, tau_t, self.sinkhorn_iters)
        else:
            p = teacher_probs_centered(g, self.center if self.centering == "mean" else None, tau_t)
        return list(p.chunk(len(teacher_logits)))

    @torch.no_grad()
    def update_center(self, teacher_logits: list[torch.Tensor]) -> None:
        """c <- m c + (1 - m) mean(g_t) over every teacher view (mean centring only)."""
        if self.centering == "mean":
            self.center.copy_(updated_center(self.center, torch.cat(teacher_logits).float(), self.center_momentum))

    def forward(self, teacher_logits: list[torch.Tensor], student_logits: list[torch.Tensor], it: int,
                update_center: bool = True) -> DINOLossOutput:  # type: ignore[override]
        probs = self.teacher_probs(teacher_logits, it)
        loss = dino_cross_entropy(probs, student_logits, self.student_temp)
        if update_center:
            self.update_center(teacher_logits)  # after the loss
        stats: dict[str, torch.Tensor | float] = {M.DINO_CE: loss.detach(), M.DINO_TEACHER_TEMP: self.teacher_temp(it),
                                                  M.DINO_CENTER_NORM: self.center.norm()}
        stats.update(teacher_stats(probs, student_logits, self.student_temp))
        return DINOLossOutput(loss, probs, stats)
