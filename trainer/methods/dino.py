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

from core import metrics as M
from core.collapse import high_norm_frac
from core.eval_mode import eval_mode
from core.images import to_uint8_image
from core.koleo import koleo_loss
from core.probes import ORIGINAL, ProbeEntry
from core.vit import block_tokens
from trainer.config import Config, local_crop_size
from trainer.data.views import Batch, ViewSpec
from trainer.methods.base import StepOutput
from trainer.methods.dino_loss import DINOLoss
from trainer.methods.ema import EMAMethod
from trainer.models.backbone import build_backbone, capture_attention, num_prefix
from trainer.models.dino_head import DINOHead


class MultiCropWrapper(nn.Module):
    """Backbone + head, one backbone pass per crop resolution (DINO's MultiCropWrapper)."""

    def __init__(self, backbone: nn.Module, head: DINOHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, crops: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """crops: V tensors (B, 3, H_v, W_v), equal sizes adjacent. Returns per-view logits
        (B, K), and of the first resolution group the final tokens (V_0 * B, L, D) and the last
        block's tokens before the final norm (``core.features`` reads the image feature there)."""
        b = crops[0].shape[0]
        logits, first = [], None
        start = 0
        while start < len(crops):  # group consecutive crops of one size into one pass
            end = start
            while end < len(crops) and crops[end].shape[-1] == crops[start].shape[-1]:
                end += 1
            pre = block_tokens(self.backbone, torch.cat(crops[start:end]))  # (n*B, L, D)
            tokens = self.backbone.norm(pre)  # = backbone.forward_features(x)
            if first is None:
                first = (tokens, pre)
            logits.extend(self.head(tokens[:, 0]).split(b))  # [CLS] -> head, per view (B, K)
            start = end
        assert first is not None
        return logits, *first


def _old_center_key(module: nn.Module, state_dict: dict, prefix: str, *_args) -> None:
    """Checkpoints written before the loss object owned the centre hold it as ``center``."""
    if prefix + "center" in state_dict:
        state_dict.setdefault(prefix + "loss.center", state_dict.pop(prefix + "center"))


class DINO(EMAMethod):
    name = "dino"
    feature = "cls"  # DINO trains the [CLS] token
    encoder_prefix = "teacher.backbone."
    probe_layout = (
        ORIGINAL,
        ProbeEntry("attn", "heatmap", ("heads", "h", "w"), "[CLS] attention, mean of heads"),
        ProbeEntry("embeddings", "embedding", ("D",), "teacher [CLS]"),
    )

    def __init__(self, cfg: Config):
        super().__init__(cfg.dino.momentum_teacher, cfg.optim.steps)
        self.cfg, d = cfg, cfg.dino
        size = cfg.data.image_size
        backbone = build_backbone(cfg.model, size)
        head = DINOHead(backbone.num_features, d.out_dim, d.hidden_dim, d.bottleneck_dim,
                        norm_last_layer=d.norm_last_layer)
        self.student = MultiCropWrapper(backbone, head)
        self.teacher = copy.deepcopy(self.student)
        self.teacher.requires_grad_(False)  # updated by EMA only
        self.loss = DINOLoss.from_config(cfg)  # centre, centring mode, temperatures (checkpointed: loss.center)
        self.register_load_state_dict_pre_hook(_old_center_key)
        self._local_size = local_crop_size(cfg)

    # --- interface ---------------------------------------------------------------------
    def views(self) -> ViewSpec:
        d = self.cfg.dino
        return ViewSpec(kind="multicrop", global_size=self.cfg.data.image_size, n_global=2,
                        local_size=self._local_size, n_local=d.n_local,
                        global_scale=(d.global_scale_min, 1.0), local_scale=(d.local_scale_min, d.local_scale_max),
                        color_jitter=(d.brightness_jitter, d.contrast_jitter, d.saturation_jitter, d.hue_jitter),
                        jitter_p=d.jitter_p, grayscale_p=d.grayscale_p, rotation=d.rotation)

    def encoder(self) -> nn.Module:
        return self.teacher.backbone

    def ema_modules(self) -> tuple[nn.Module, nn.Module]:
        return self.teacher, self.student

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.student.parameters() if p.requires_grad]

    def forward(self, batch: Batch, it: int) -> StepOutput:  # type: ignore[override]
        d = self.cfg.dino
        n_global = 2
        globals_, crops = batch.views[:n_global], batch.views
        with torch.no_grad():
            t_logits, t_tokens, t_pre = self.teacher(globals_)  # n_global x (B, K)
        s_logits, s_tokens, _ = self.student(crops)  # V x (B, K)
        out = self.loss(t_logits, s_logits, it)  # the centre moves after the loss
        loss, stats = out.loss, out.stats
        if d.koleo_weight > 0:
            b = batch.views[0].shape[0]
            cls = s_tokens[:, 0]  # (n_global * B, D): student backbone [CLS] of the globals
            kl = sum(koleo_loss(c) for c in cls.split(b)) / n_global
            loss = loss + d.koleo_weight * kl
            stats[M.DINO_KOLEO] = kl.detach()
        with torch.no_grad():
            vit = self.teacher.backbone
            stats.update(self.feature_stats(vit, t_pre[: batch.views[0].shape[0]]))  # teacher, global view 1
            stats[M.TOKENS_HIGH_NORM_FRAC] = high_norm_frac(t_tokens[:, num_prefix(vit):])
        return StepOutput(loss, stats)

    def on_optimizer_step(self, it: int) -> None:
        if it < self.cfg.dino.freeze_last_layer_steps:  # DINO: last layer frozen at first
            for p in self.student.head.last_layer.parameters():
                p.grad = None

    @torch.no_grad()
    def probe(self, images: torch.Tensor) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """The probe pictures, the teacher's last-layer [CLS] attention maps (P, heads, h, w),
        its [CLS] embeddings and the register-attention share on the probe batch."""
        vit = self.teacher.backbone
        with eval_mode(vit), capture_attention(vit, [len(vit.blocks) - 1]) as maps:
            tokens = vit.forward_features(images)  # (P, L, D)
        attn = maps[-1].float()  # (P, heads, L, L)
        p = num_prefix(vit)
        side = int(math.isqrt(tokens.shape[1] - p))
        cls_attn = attn[:, :, 0, p:].reshape(attn.shape[0], attn.shape[1], side, side)  # (P, heads, h, w)
        stats = {M.TOKENS_HIGH_NORM_FRAC_PROBE: float(high_norm_frac(tokens[:, p:]))}
        if p > 1:  # share of all queries' attention that lands on the register tokens
            stats[M.TOKENS_REGISTER_ATTN_SHARE] = float(attn[..., 1:p].sum(-1).mean())
        arrays = {"original": to_uint8_image(images), "attn": cls_attn.cpu().numpy().astype(np.float32),
                  "embeddings": tokens[:, 0].float().cpu().numpy()}
        return arrays, stats
