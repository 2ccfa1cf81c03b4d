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
centre update and the ``dino/*`` statistics, by the pure functions of ``core.dino_stats``
(which ``sslscope.monitor`` calls on the tensors of other trainers too). Training (``methods.dino``), the checkpoint
diagnosis (``analysis.collapse``) and through it the dashboard call this one object, so a
Sinkhorn run is judged on the Sinkhorn assignments it trained with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from core.dino_stats import (  # noqa: F401 - the maths lives in core; these names stay importable from here
    CENTERINGS,
    dino_cross_entropy,
    dino_stats,
    sinkhorn_knopp,
    teacher_distribution,
    teacher_probs_centered,
    teacher_stats,
    updated_center,
)
from trainer.config import Config
from trainer.schedules import linear_warmup_then_constant, value_at


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


class CenteredTeacherLoss(nn.Module):
    """The state DINO's [CLS] loss and iBOT's patch loss each keep (DINOv2 gives them separate
    centres, the same tau schedule and centring mode): centre buffer ``center`` (1, K),
    checkpointed, centring mode, tau_t schedule (one value per step) and tau_s."""

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

    def teacher_temp(self, it: int) -> float:
        """tau_t at step ``it`` (the last value past the end of the schedule)."""
        return value_at(self.teacher_temp_schedule, it)


class DINOLoss(CenteredTeacherLoss):
    """DINO's loss with its state (``CenteredTeacherLoss``: centre ``c``, centring mode, tau_t
    schedule and tau_s).

    ``forward(teacher_logits, student_logits, it)`` takes the teacher's logits of the global
    crops and the student's of every crop (globals first, each (B, K)), and returns the loss,
    the teacher distribution and its statistics (none without ``with_stats``: the steps that do
    not log); with ``update_center`` (training) the centre moves after the loss, as in DINO.
    """

    @classmethod
    def from_config(cls, cfg: Config) -> DINOLoss:
        """The loss of ``cfg.dino`` over ``cfg.optim.steps`` (tau_t: ``teacher_temp_schedule``)."""
        d = cfg.dino
        return cls(d.out_dim, d.student_temp, teacher_temp_schedule(cfg), d.centering, d.center_momentum,
                   d.sinkhorn_iters)

    @torch.no_grad()
    def teacher_probs(self, teacher_logits: list[torch.Tensor], it: int) -> list[torch.Tensor]:
        """p_t per teacher view (B, K): Sinkhorn-Knopp over all views of the batch together,
        or softmax((g_t - c) / tau_t) with the running centre, or without one."""
        return teacher_distribution(teacher_logits, self.teacher_temp(it), self.centering, self.center,
                                    self.sinkhorn_iters)

    @torch.no_grad()
    def update_center(self, teacher_logits: list[torch.Tensor]) -> None:
        """c <- m c + (1 - m) mean(g_t) over every teacher view (mean centring only)."""
        if self.centering == "mean":
            self.center.copy_(updated_center(self.center, torch.cat(teacher_logits).float(), self.center_momentum))

    def forward(self, teacher_logits: list[torch.Tensor], student_logits: list[torch.Tensor], it: int,
                update_center: bool = True, with_stats: bool = True) -> DINOLossOutput:  # type: ignore[override]
        probs = self.teacher_probs(teacher_logits, it)
        loss = dino_cross_entropy(probs, student_logits, self.student_temp)
        if update_center:
            self.update_center(teacher_logits)  # after the loss
        stats = dino_stats(loss, self.teacher_temp(it), self.center, probs, student_logits,
                           self.student_temp) if with_stats else {}
        return DINOLossOutput(loss, probs, stats)
