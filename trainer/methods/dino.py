"""DINO: self-distillation with no labels (Caron et al. 2021), with DINOv2's options
(Sinkhorn-Knopp centring, KoLeo, registers, the iBOT patch loss; Oquab et al. 2024; Darcet et
al. 2024; Zhou et al. 2022) and DINOv3's Gram anchoring (Simeoni et al. 2025).

A student (ViT + DINOHead) matches, on every pair of *different* views, the distribution of a
teacher that is an EMA of the student and sees only the global crops. The teacher output is
centred (stops one dimension dominating: guards against one-hot collapse) and sharpened by a
low temperature (guards against uniform collapse); each alone collapses (paper Fig. 7),
which the ``centering`` / ``sharpening`` switches reproduce.

iBOT (``dino.ibot_weight`` > 0): a share of the student's global crops have blocks of patches
replaced by a learnable mask token before the positions are added (``trainer.data.ibot_masks``,
``core.vit.embed``); at those patches the student predicts, through the DINO head or its own
(``dino.ibot_separate_head``), the teacher's patch distribution on the unmasked crop
(``ibot_loss.IBOTPatchLoss``). The [CLS] loss then reads the masked crops too, as in DINOv2.

Gram anchoring (``dino.gram_weight`` > 0): a frozen copy of the EMA teacher taken after
``dino.gram_teacher_step`` (refreshed every ``dino.gram_refresh_every`` steps, at most
``dino.gram_max_refreshes`` times) anchors the patch-similarity matrices of the student's
global crops (``gram.gram_loss``), with a weight that is 0 until ``dino.gram_start``.

Every run logs the dense statistics (``core.dense``) and its probe saves the teacher's patch
features, which the dashboard shows as PCA colours and patch-similarity maps.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core import distributed
from core import metrics as M
from core.collapse import high_norm_frac, register_attn_share
from core.dense import dense_stats
from core.eval_mode import eval_mode
from core.images import to_uint8_image
from core.koleo import koleo_loss
from core.probes import ORIGINAL, ProbeEntry
from core.vit import block_tokens
from trainer.config import Config, gram_teacher_size, local_crop_size
from trainer.data.ibot_masks import PatchMasks, ibot_masks
from trainer.data.masking import step_generator
from trainer.data.views import Batch, ViewSpec
from trainer.methods.base import StepOutput
from trainer.methods.dino_loss import DINOLoss
from trainer.methods.ema import EMAMethod
from trainer.methods.gram import gram_copy_steps, gram_loss, resize_patch_grid
from trainer.methods.ibot_loss import IBOTLossOutput, IBOTPatchLoss
from trainer.models.backbone import build_backbone, capture_attention, num_prefix
from trainer.models.dino_head import DINOHead
from trainer.schedules import delayed_cosine_ramp, value_at

N_GLOBAL = 2  # global crops per image (DINO, DINOv2)


class MultiCropWrapper(nn.Module):
    """Backbone + head, one backbone pass per crop resolution (DINO's MultiCropWrapper). With
    iBOT it also holds the mask token (D,) that replaces masked patch embeddings and, with a
    separate iBOT head, that head; the teacher is a copy of all of it."""

    def __init__(self, backbone: nn.Module, head: DINOHead, mask_token: bool = False,
                 ibot_head: DINOHead | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = head
        if mask_token:  # DINOv2 initialises it to zeros
            self.mask_token = nn.Parameter(torch.zeros(1, backbone.num_features))
        if ibot_head is not None:
            self.ibot_head = ibot_head

    def patch_head(self) -> DINOHead:
        """The head the masked patch tokens go through: the iBOT head, or the shared DINO head."""
        return getattr(self, "ibot_head", self.head)

    def forward(self, crops: list[torch.Tensor], masks: torch.Tensor | None = None
                ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """crops: V tensors (B, 3, H_v, W_v), equal sizes adjacent. Returns per-view logits
        (B, K), and of the first resolution group the final tokens (V_0 * B, L, D) and the last
        block's tokens before the final norm (``core.features`` reads the image feature there).
        ``masks`` (n, N) bool: the first n crops of the first group (the global crops, in view
        order) get their masked patch embeddings replaced by the mask token."""
        b = crops[0].shape[0]
        logits, first = [], None
        start = 0
        while start < len(crops):  # group consecutive crops of one size into one pass
            end = start
            while end < len(crops) and crops[end].shape[-1] == crops[start].shape[-1]:
                end += 1
            x = torch.cat(crops[start:end])
            group_masks = None
            if masks is not None and start == 0:  # pad for local crops of the globals' size: never masked
                group_masks = torch.zeros(len(x), masks.shape[1], dtype=torch.bool, device=x.device)
                group_masks[:len(masks)] = masks.to(x.device)
            pre = block_tokens(self.backbone, x, group_masks, getattr(self, "mask_token", None))  # (n*B, L, D)
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
        ProbeEntry("patches", "dense", ("h", "w", "D"), "teacher patch features (after the final norm)"),
    )

    def __init__(self, cfg: Config):
        super().__init__(cfg.dino.momentum_teacher, cfg.optim.steps)
        self.cfg, d = cfg, cfg.dino
        size = cfg.data.image_size
        backbone = build_backbone(cfg.model, size)

        def head(out_dim: int) -> DINOHead:
            return DINOHead(backbone.num_features, out_dim, d.hidden_dim, d.bottleneck_dim,
                            norm_last_layer=d.norm_last_layer)

        self.ibot = d.ibot_weight > 0
        ibot_k = (d.ibot_out_dim or d.out_dim) if d.ibot_separate_head else d.out_dim
        dino_head = head(d.out_dim)  # built first, so its initial weights match a run without iBOT
        ibot_head = head(ibot_k) if self.ibot and d.ibot_separate_head else None
        self.student = MultiCropWrapper(backbone, dino_head, mask_token=self.ibot, ibot_head=ibot_head)
        self.teacher = copy.deepcopy(self.student)
        self.teacher.requires_grad_(False)  # updated by EMA only
        self.loss = DINOLoss.from_config(cfg)  # centre, centring mode, temperatures (checkpointed: loss.center)
        if self.ibot:
            self.ibot_loss = IBOTPatchLoss.from_config(cfg, ibot_k)  # patch centre (checkpointed: ibot_loss.center)
        self.gram = d.gram_weight > 0
        if self.gram:  # frozen copy of the EMA teacher's backbone (checkpointed: gram_teacher.*)
            self.gram_teacher = copy.deepcopy(self.teacher.backbone).eval()
            self.gram_teacher.requires_grad_(False)
            self.gram_weights = delayed_cosine_ramp(d.gram_weight, d.gram_start, d.gram_ramp_steps, cfg.optim.steps)
            self.gram_copies = gram_copy_steps(d.gram_teacher_step, d.gram_refresh_every, d.gram_max_refreshes)
            self._gram_size = gram_teacher_size(cfg)
        self.register_load_state_dict_pre_hook(_old_center_key)
        self._local_size = local_crop_size(cfg)

    # --- interface ---------------------------------------------------------------------
    def views(self) -> ViewSpec:
        d = self.cfg.dino
        return ViewSpec(kind="multicrop", global_size=self.cfg.data.image_size, n_global=N_GLOBAL,
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

    def draw_masks(self, it: int, batch_size: int) -> PatchMasks | None:
        """The iBOT masks of step ``it`` for this rank's 2 x ``batch_size`` global crops (None
        without iBOT): a function of (seed, step), so resume and the diagnosis redraw them. Under
        DDP they are drawn for the global batch and each rank keeps the rows of its images (view-
        major: crop v of global image i is row v * world * B + i), so which crops are masked and
        how much equals one process on the same global batch (``core.distributed``)."""
        if not self.ibot:
            return None
        d = self.cfg.dino
        rank, world = distributed.shard()
        side = self.cfg.data.image_size // self.student.backbone.patch_embed.patch_size[0]
        drawn = ibot_masks(N_GLOBAL * batch_size * world, (side, side), step_generator(self.cfg.run.seed, it, 0),
                           d.ibot_mask_probability, (d.ibot_mask_ratio_min, d.ibot_mask_ratio_max))
        if world == 1:
            return drawn
        rows = torch.cat([torch.arange(batch_size) + v * world * batch_size + rank * batch_size
                          for v in range(N_GLOBAL)])
        return PatchMasks(drawn.masks[rows])

    def forward(self, batch: Batch, it: int, with_stats: bool = True) -> StepOutput:  # type: ignore[override]
        d = self.cfg.dino
        b = batch.views[0].shape[0]
        globals_, crops = batch.views[:N_GLOBAL], batch.views
        masks = self.draw_masks(it, b)
        with torch.no_grad():
            t_logits, t_tokens, t_pre = self.teacher(globals_)  # n_global x (B, K)
        s_logits, s_tokens, _ = self.student(crops, None if masks is None else masks.masks)  # V x (B, K)
        out = self.loss(t_logits, s_logits, it, with_stats=with_stats)  # the centre moves after the loss
        loss, stats = out.loss, out.stats
        if d.koleo_weight > 0:
            cls = s_tokens[:, 0]  # (n_global * B, D): student backbone [CLS] of the globals
            # nearest neighbours within each global view of the global batch (core.distributed)
            kl = sum(koleo_loss(distributed.gather_rows(c)) for c in cls.split(b)) / N_GLOBAL
            loss = loss + d.koleo_weight * kl
            stats[M.DINO_KOLEO] = kl.detach()
        if masks is not None:
            ibot = self.ibot_terms(t_tokens, s_tokens, masks, it)
            loss = loss + d.ibot_weight * ibot.loss
            stats.update(ibot.stats)
        if self.gram and it >= d.gram_teacher_step:  # the Gram teacher exists: log its loss from then on
            weight = value_at(self.gram_weights, it)
            if weight > 0 or with_stats:  # at weight 0 it is computed only to be logged
                g = self.gram_term(globals_, s_tokens[:N_GLOBAL * b], with_grad=weight > 0)
                if weight > 0:
                    loss = loss + weight * g
                stats[M.GRAM_LOSS] = g.detach()
        if not with_stats:  # the steps that do not log: the loss only (the terms above are cheap)
            return StepOutput(loss)
        with torch.no_grad():
            vit = self.teacher.backbone
            stats.update(self.feature_stats(vit, t_pre[:b]))  # teacher, global view 1
            stats[M.TOKENS_HIGH_NORM_FRAC] = high_norm_frac(t_tokens[:, num_prefix(vit):])
            stats.update(dense_stats(t_tokens[:b], num_prefix(vit)))
        return StepOutput(loss, stats)

    def ibot_terms(self, t_tokens: torch.Tensor, s_tokens: torch.Tensor, masks: PatchMasks, it: int,
                   update_center: bool = True) -> IBOTLossOutput:
        """The iBOT loss at the masked patches: the teacher's final patch tokens of the unmasked
        global crops and the student's of the masked ones, (n, prefix + N, D) each, gathered at
        ``masks.indices`` and passed through the patch head of each."""
        p = num_prefix(self.teacher.backbone)
        n = masks.n_crops
        idx = masks.indices.to(t_tokens.device)
        t_patch = t_tokens[:n, p:].flatten(0, 1)[idx]  # (M, D)
        s_patch = s_tokens[:n, p:].flatten(0, 1)[idx]
        with torch.no_grad():
            t_logits = self.teacher.patch_head()(t_patch)
        s_logits = self.student.patch_head()(s_patch)
        return self.ibot_loss(t_logits, s_logits, masks.weights.to(t_tokens.device), n, it, update_center)

    def gram_term(self, globals_: list[torch.Tensor], s_tokens: torch.Tensor, with_grad: bool = True) -> torch.Tensor:
        """Gram loss of the student's final patch tokens of the global crops (n, prefix + N, D)
        against the Gram teacher's on the same crops (resized to ``dino.gram_teacher_scale``,
        its patch grid resized back bicubically)."""
        p = num_prefix(self.gram_teacher)
        side = math.isqrt(s_tokens.shape[1] - p)
        with torch.no_grad(), eval_mode(self.gram_teacher):
            x = torch.cat(globals_)
            if self._gram_size != x.shape[-1]:
                x = F.interpolate(x, size=(self._gram_size,) * 2, mode="bicubic", align_corners=False)
            t = self.gram_teacher.norm(block_tokens(self.gram_teacher, x))[:, p:]
            t = resize_patch_grid(t, (side, side))
        s = s_tokens[:, p:] if with_grad else s_tokens[:, p:].detach()
        return gram_loss(s, t)

    @torch.no_grad()
    def after_step(self, it: int) -> None:
        super().after_step(it)  # EMA teacher
        if self.gram and it + 1 in self.gram_copies:  # source / refresh: a hard copy of the EMA teacher
            self.gram_teacher.load_state_dict(self.teacher.backbone.state_dict())

    def schedule_stats(self, it: int) -> dict[str, float]:
        stats = super().schedule_stats(it)
        if self.gram:
            stats[M.GRAM_WEIGHT] = value_at(self.gram_weights, it)
        return stats

    def on_optimizer_step(self, it: int) -> None:
        if it < self.cfg.dino.freeze_last_layer_steps:  # DINO: last layer frozen at first (the iBOT head's too)
            for head in {self.student.head, self.student.patch_head()}:
                for p in head.last_layer.parameters():
                    p.grad = None

    @torch.no_grad()
    def probe(self, images: torch.Tensor) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """The probe pictures, the teacher's last-layer [CLS] attention maps (P, heads, h, w),
        its [CLS] embeddings, its final patch features (P, h, w, D; float16) and the
        register-attention share on the probe batch."""
        vit = self.teacher.backbone
        with eval_mode(vit), capture_attention(vit, [len(vit.blocks) - 1]) as maps:
            tokens = vit.forward_features(images)  # (P, L, D)
        attn = maps[-1].float()  # (P, heads, L, L)
        p = num_prefix(vit)
        side = int(math.isqrt(tokens.shape[1] - p))
        cls_attn = attn[:, :, 0, p:].reshape(attn.shape[0], attn.shape[1], side, side)  # (P, heads, h, w)
        stats = {M.TOKENS_HIGH_NORM_FRAC_PROBE: float(high_norm_frac(tokens[:, p:]))}
        if p > 1:  # share of all queries' attention that lands on the register tokens
            stats[M.TOKENS_REGISTER_ATTN_SHARE] = float(register_attn_share(attn, p))
        patches = tokens[:, p:].reshape(len(tokens), side, side, -1)
        arrays = {"original": to_uint8_image(images), "attn": cls_attn.cpu().numpy().astype(np.float32),
                  "embeddings": tokens[:, 0].float().cpu().numpy(),
                  "patches": patches.float().cpu().numpy().astype(np.float16)}
        return arrays, stats
