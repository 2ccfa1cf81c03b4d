"""iBOT's masked-patch loss as DINOv2 uses it (Zhou et al. 2022; ``dinov2/loss/ibot_patch_loss.py``
and ``dinov2/train/ssl_meta_arch.py``), with its own state:

    p_t^j = softmax((g_t^j - c_patch) / tau_t)   teacher, on the *unmasked* crop, at masked patch j
    log p_s^j = log_softmax(g_s^j / tau_s)        student, on the masked crop, at the same patch
    CE_j = -sum_k p_t^j[k] log p_s^j[k]
    L_iBOT = (1 / n) sum_j w_j CE_j,   w_j = 1 / (masked patches in j's crop)
    c_patch <- m c_patch + (1 - m) mean_j g_t^j      after the loss

n counts every global crop of the batch, masked or not (DINOv2's ``forward_masked`` divides by
``student_masks_flat.shape[0]``), so each masked crop adds the mean cross-entropy of its
tokens and L_iBOT is about ``mask_probability`` x the mean over masked crops. The patch centre
is a separate buffer from the [CLS] centre; with Sinkhorn-Knopp centring the doubly-normalised
assignments are taken over all masked patches of all ranks together. tau_t follows the [CLS]
schedule and tau_s is the same.

Logged (``core.metrics``): ``ibot/loss`` (the term above, which enters the total times
``dino.ibot_weight``), ``ibot/ce`` (the unweighted mean CE over masked tokens: DINOv2 logs only
the weighted, halved term), ``ibot/teacher_entropy`` and ``ibot/kl`` (means over masked tokens,
KL = CE - H), ``ibot/log_k`` (ln K of the patch prototypes) and ``ibot/center_norm``.

This module holds the state (patch centre, tau_t schedule); the pure maths and the ``ibot/*``
dict are ``core.dino_stats``'s, next to the [CLS] loss's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from core.dino_stats import (  # noqa: F401 - the maths lives in core; these names stay importable from here
    ibot_cross_entropy,
    ibot_stats,
    masked_mean,
    sinkhorn_knopp,
    teacher_probs_centered,
    weighted_patch_loss,
)
from trainer.config import Config
from trainer.methods.dino_loss import CenteredTeacherLoss, teacher_temp_schedule


@dataclass
class IBOTLossOutput:
    """The weighted iBOT term, the teacher's assignments per masked token and the ``ibot/*`` stats."""

    loss: torch.Tensor  # scalar L_iBOT (gradient to the student)
    teacher_probs: torch.Tensor  # (M, K)
    stats: dict[str, torch.Tensor | float] = field(default_factory=dict)


class IBOTPatchLoss(CenteredTeacherLoss):
    """The iBOT patch loss with its own patch centre (buffer ``center`` (1, K), checkpointed),
    the centring mode of the [CLS] loss, tau_t schedule and tau_s (module docstring)."""

    @classmethod
    def from_config(cls, cfg: Config, out_dim: int) -> IBOTPatchLoss:
        """The patch loss of ``cfg.dino`` with ``out_dim`` patch prototypes (shared or separate head)."""
        d = cfg.dino
        return cls(out_dim, d.student_temp, teacher_temp_schedule(cfg), d.centering, d.center_momentum,
                   d.sinkhorn_iters)

    @torch.no_grad()
    def teacher_probs(self, teacher_logits: torch.Tensor, it: int) -> torch.Tensor:
        """p_t per masked token (M, K): Sinkhorn-Knopp over all masked tokens of all ranks, or
        softmax((g_t - c_patch) / tau_t), or without a centre."""
        tau_t = self.teacher_temp(it)
        if self.centering == "sinkhorn":
            return sinkhorn_knopp(teacher_logits, tau_t, self.sinkhorn_iters)
        return teacher_probs_centered(teacher_logits, self.center if self.centering == "mean" else None, tau_t)

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """c_patch <- m c_patch + (1 - m) mean over all masked tokens of g_t (mean centring only)."""
        if self.centering == "mean":
            self.center.mul_(self.center_momentum).add_(masked_mean(teacher_logits) * (1 - self.center_momentum))

    def forward(self, teacher_logits: torch.Tensor, student_logits: torch.Tensor, weights: torch.Tensor,
                n_crops: int, it: int, update_center: bool = True) -> IBOTLossOutput:  # type: ignore[override]
        """``teacher_logits`` / ``student_logits`` (M, K) at the masked tokens, ``weights`` (M,)
        1 / (masked tokens of the token's crop), ``n_crops`` the global crops of the batch."""
        probs = self.teacher_probs(teacher_logits, it)
        ce = ibot_cross_entropy(probs, student_logits, self.student_temp)  # (M,)
        loss = weighted_patch_loss(ce, weights, n_crops)
        if update_center:
            self.update_center(teacher_logits)  # after the loss, as the [CLS] centre
        stats = ibot_stats(loss, ce, probs, self.center)
        return IBOTLossOutput(loss, probs, stats)
