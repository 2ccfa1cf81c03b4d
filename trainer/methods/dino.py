"""DINO: self-distillation with no labels (Caron et al. 2021), with DINOv2's options
(Sinkhorn-Knopp centring, KoLeo, registers; Oquab et al. 2024; Darcet et al. 2024).

A student (ViT + DINOHead) matches, on every pair of *different* views, the distribution of a
teacher that is an EMA of the student and sees only the global crops. The teacher output is
centred (stops one dimension dominating: guards against one-hot collapse) and sharpened by a
low temperature (guards against uniform collapse); each alone collapses (paper Fig. 7),
which the ``centering`` / ``sharpening`` switches reproduce.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from trainer.config import Config, local_crop_size
from trainer.ema import ema_update_
from trainer.methods.base import Batch, Method, StepOutput, ViewSpec
from trainer.methods.dino_loss import (
    dino_cross_entropy,
    koleo_loss,
    sinkhorn_knopp,
    teacher_probs_centered,
    teacher_stats,
    updated_center,
)
from trainer.methods.stats import high_norm_frac, mean_cosine, rankme, std_l2
from trainer.models.backbone import build_backbone, capture_attention, num_prefix
from trainer.models.dino_head import DINOHead
from trainer.schedules import cosine_schedule, linear_warmup_then_constant


class MultiCropWrapper(nn.Module):
    """Backbone + head, one backbone pass per crop resolution (DINO's MultiCropWrapper)."""

    def __init__(self, backbone: nn.Module, head: DINOHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, crops: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """crops: V tensors (B, 3, H_v, W_v), equal sizes adjacent. Returns per-view logits
        (B, K) and the full token output (V_0 * B, L, D) of the first resolution group."""
        b = crops[0].shape[0]
        logits, first_tokens = [], None
        start = 0
        while start < len(crops):  # group consecutive crops of one size into one pass
            end = start
            while end < len(crops) and crops[end].shape[-1] == crops[start].shape[-1]:
                end += 1
            tokens = self.backbone.forward_features(torch.cat(crops[start:end]))  # (n*B, L, D)
            if first_tokens is None:
                first_tokens = tokens
            logits.extend(self.head(tokens[:, 0]).split(b))  # [CLS] -> head, per view (B, K)
            start = end
        assert first_tokens is not None
        return logits, first_tokens


class DINO(Method):
    name = "dino"
    encoder_prefix = "teacher.backbone."

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg, d = cfg, cfg.dino
        size = cfg.data.image_size
        backbone = build_backbone(cfg.model, size)
        head = DINOHead(backbone.num_features, d.out_dim, d.hidden_dim, d.bottleneck_dim,
                        norm_last_layer=d.norm_last_layer)
        self.student = MultiCropWrapper(backbone, head)
        self.teacher = copy.deepcopy(self.student)
        self.teacher.requires_grad_(False)  # updated by EMA only
        self.register_buffer("center", torch.zeros(1, d.out_dim))  # c, checkpointed with the weights
        steps = cfg.optim.steps
        # schedules: pure per-iteration arrays
        self.momentum_schedule = cosine_schedule(d.momentum_teacher, 1.0, steps)
        self.teacher_temp_schedule = linear_warmup_then_constant(
            d.warmup_teacher_temp, d.teacher_temp, steps, d.teacher_temp_warmup_steps)
        self._local_size = local_crop_size(cfg)
        self._ema_pairs: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None

    # --- interface ---------------------------------------------------------------------
    def views(self) -> ViewSpec:
        d = self.cfg.dino
        return ViewSpec(kind="multicrop", global_size=self.cfg.data.image_size, n_global=2,
                        local_size=self._local_size, n_local=d.n_local,
                        global_scale=(d.global_scale_min, 1.0), local_scale=(d.local_scale_min, d.local_scale_max),
                        color_jitter=(d.brightness_jitter, d.contrast_jitter, d.saturation_jitter, d.hue_jitter),
                        jitter_p=d.jitter_p, grayscale_p=d.grayscale_p)

    def encoder(self) -> nn.Module:
        return self.teacher.backbone

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.student.parameters() if p.requires_grad]

    def teacher_temp(self, it: int) -> float:
        """tau_t at step ``it``; without sharpening it equals tau_s (ablation)."""
        if not self.cfg.dino.sharpening:
            return self.cfg.dino.student_temp
        return float(self.teacher_temp_schedule[min(it, len(self.teacher_temp_schedule) - 1)])

    def forward(self, batch: Batch, it: int) -> StepOutput:  # type: ignore[override]
        d = self.cfg.dino
        n_global = 2
        globals_, crops = batch.views[:n_global], batch.views
        with torch.no_grad():
            t_logits, t_tokens = self.teacher(globals_)  # n_global x (B, K)
        s_logits, s_tokens = self.student(crops)  # V x (B, K)
        tau_t = self.teacher_temp(it)
        t_all = torch.cat(t_logits).float()  # (n_global * B, K)
        with torch.no_grad():
            if d.centering == "sinkhorn":
                p_all = sinkhorn_knopp(t_all, tau_t, d.sinkhorn_iters)
            else:
                p_all = teacher_probs_centered(t_all, self.center if d.centering == "mean" else None, tau_t)
        p_views = list(p_all.chunk(n_global))
        loss = dino_cross_entropy(p_views, s_logits, d.student_temp)
        stats: dict[str, torch.Tensor | float] = {"dino/ce": loss.detach()}
        if d.koleo_weight > 0:
            b = batch.views[0].shape[0]
            cls = s_tokens[:, 0]  # (n_global * B, D): student backbone [CLS] of the globals
            kl = sum(koleo_loss(c) for c in cls.split(b)) / n_global
            loss = loss + d.koleo_weight * kl
            stats["dino/koleo"] = kl.detach()
        if d.centering == "mean":
            self.center.copy_(updated_center(self.center, t_all, d.center_momentum))  # after the loss
        with torch.no_grad():
            stats.update(teacher_stats(p_all, s_logits, p_views, d.student_temp))
            emb = t_tokens[: batch.views[0].shape[0], 0]  # teacher [CLS] of global view 1 (B, D)
            stats.update({
                "dino/teacher_temp": tau_t,
                "dino/center_norm": self.center.norm(),
                "collapse/std_l2": std_l2(emb),
                "collapse/rankme": rankme(emb),
                "collapse/mean_cosine": mean_cosine(emb),
                "tokens/high_norm_frac": high_norm_frac(t_tokens[:, num_prefix(self.teacher.backbone):]),
            })
        return StepOutput(loss, stats)

    def on_optimizer_step(self, it: int) -> None:
        if it < self.cfg.dino.freeze_last_layer_steps:  # DINO: last layer frozen at first
            for p in self.student.head.last_layer.parameters():
                p.grad = None

    @torch.no_grad()
    def after_step(self, it: int) -> None:
        if self._ema_pairs is None:
            self._ema_pairs = (list(self.teacher.parameters()), list(self.student.parameters()))
        m = float(self.momentum_schedule[min(it, len(self.momentum_schedule) - 1)])
        ema_update_(*self._ema_pairs, momentum=m)

    def ema_momentum(self, it: int) -> float:
        return float(self.momentum_schedule[min(it, len(self.momentum_schedule) - 1)])

    @torch.no_grad()
    def probe(self, images: torch.Tensor) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Last-layer [CLS] attention maps (P, heads, h, w), [CLS] embeddings and the
        register-attention share of the teacher on the probe batch."""
        vit = self.teacher.backbone
        was_training = vit.training
        vit.eval()
        with capture_attention(vit, [len(vit.blocks) - 1]) as maps:
            tokens = vit.forward_features(images)  # (P, L, D)
        vit.train(was_training)
        attn = maps[-1].float()  # (P, heads, L, L)
        p = num_prefix(vit)
        side = int(math.isqrt(tokens.shape[1] - p))
        cls_attn = attn[:, :, 0, p:].reshape(attn.shape[0], attn.shape[1], side, side)  # (P, heads, h, w)
        stats = {"tokens/high_norm_frac_probe": float(high_norm_frac(tokens[:, p:]))}
        if p > 1:  # share of all queries' attention that lands on the register tokens
            stats["tokens/register_attn_share"] = float(attn[..., 1:p].sum(-1).mean())
        arrays = {"attn": cls_attn.numpy().astype(np.float32), "embeddings": tokens[:, 0].numpy()}
        return arrays, stats
