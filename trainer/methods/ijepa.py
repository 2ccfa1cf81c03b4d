"""I-JEPA: joint-embedding predictive architecture (Assran et al. 2023), following the
official code's structure (ijepa/src/train.py) and names.

A context encoder sees one large block of the image with several target blocks cut out; a
narrow predictor, given the context tokens and the positions of one target block, predicts
that block's representation as produced by a target encoder (an EMA of the context encoder)
on the full image, layer-normed. The loss lives in representation space, never in pixels.

Switches: ``ema=False`` drops the EMA copy, so the target is the context encoder itself on the
full image under stop-gradient: the latent-collapse ablation. ``reg`` adds an anti-collapse
regulariser on the context encoder's pooled features (KoLeo as in DINOv2, or VICReg's
variance hinge) with weight ``reg_weight``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from trainer.config import Config, ConfigError
from trainer.data.datasets import to_uint8_image
from trainer.data.masking import MultiBlockMaskGenerator, MultiBlockMasks, step_generator
from trainer.ema import ema_update_
from trainer.methods.base import Batch, Method, StepOutput, ViewSpec
from trainer.methods.dino_loss import koleo_loss
from trainer.methods.stats import mean_cosine, rankme, std_l2
from trainer.models.backbone import build_backbone, forward_masked, grid_size, num_prefix
from trainer.models.jepa_predictor import JEPAPredictor, gather_tokens
from trainer.schedules import cosine_schedule

PROBE_IT = -1  # the probe batch's masks come from step_generator(seed, PROBE_IT): one fixed draw


def block_targets(h: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
    """Target features h (B, N, D) at each block's patches target_ids (B, T, K) -> (T*B, K, D),
    block-major like the predictor's output."""
    b, t, k = target_ids.shape
    return gather_tokens(h.repeat(t, 1, 1), target_ids.transpose(0, 1).reshape(t * b, k))


def jepa_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean over target patches and dims: smooth L1 (official code) or squared L2 (paper)."""
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target)
    return F.mse_loss(pred, target)


def variance_hinge(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg's variance term: mean over dims of relu(gamma - std over the batch). (N, D) -> scalar."""
    std = torch.sqrt(z.float().var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def feature_std(z: torch.Tensor) -> torch.Tensor:
    """Std over every token (rows of all leading dims) per feature dim, averaged over dims:
    about 1 for layer-normed features that vary, 0 when every token is the same."""
    return z.detach().float().reshape(-1, z.shape[-1]).std(dim=0).mean()


class IJEPA(Method):
    name = "ijepa"
    knn_feature = "pooled"  # the loss is on patch tokens, so k-NN reads their average pool (as the paper evaluates)
    encoder_prefix = "target_encoder."  # "context_encoder." when ema is off (set per instance)

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg, j = cfg, cfg.ijepa
        size = cfg.data.image_size
        self.context_encoder = build_backbone(cfg.model, size)
        vit = self.context_encoder
        self.target_encoder: nn.Module | None = None
        if j.ema:
            self.target_encoder = copy.deepcopy(vit)
            self.target_encoder.requires_grad_(False)  # updated by EMA only
        else:
            self.encoder_prefix = "context_encoder."
        heads = vit.blocks[0].attn.num_heads  # the official predictor uses the encoder's heads
        if j.pred_dim % heads or j.pred_dim % 4:
            raise ConfigError(f"ijepa.pred_dim={j.pred_dim} must be divisible by the encoder's {heads} heads "
                              "and by 4 (2-D sin-cos positions)")
        self.grid = grid_size(vit, size)
        self.predictor = JEPAPredictor(vit.num_features, j.pred_dim, j.pred_depth, heads, self.grid, num_prefix(vit))
        self.mask_generator = MultiBlockMaskGenerator(
            (self.grid, self.grid), j.num_targets, (j.target_scale_min, j.target_scale_max),
            (j.target_aspect_min, j.target_aspect_max), (j.context_scale_min, j.context_scale_max), j.min_context)
        self.momentum_schedule = cosine_schedule(j.momentum, 1.0, cfg.optim.steps)
        self._ema_pairs: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None

    # --- interface ---------------------------------------------------------------------
    def views(self) -> ViewSpec:
        return ViewSpec(kind="single", global_size=self.cfg.data.image_size)

    def encoder(self) -> nn.Module:
        return self.target_encoder if self.target_encoder is not None else self.context_encoder

    def ema_momentum(self, it: int) -> float:
        return float(self.momentum_schedule[min(it, len(self.momentum_schedule) - 1)])

    def forward(self, batch: Batch, it: int) -> StepOutput:  # type: ignore[override]
        imgs = batch.views[0]
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        masks = self.mask_generator(imgs.shape[0], step_generator(self.cfg.run.seed, it, rank))
        loss, pred, target, z, h = self.forward_parts(imgs, masks)
        stats: dict[str, torch.Tensor | float] = {"ijepa/loss": loss.detach()}
        j = self.cfg.ijepa
        if j.reg != "none" and j.reg_weight > 0:
            pooled = z[:, num_prefix(self.context_encoder):].mean(dim=1)  # (B, D) context features
            reg = koleo_loss(pooled) if j.reg == "koleo" else variance_hinge(pooled)
            loss = loss + j.reg_weight * reg
            stats["ijepa/reg"] = reg.detach()
        with torch.no_grad():
            emb = h.float().mean(dim=1)  # (B, D): target encoder, average-pooled patches
            stats.update({
                "ijepa/target_std": feature_std(target),
                "ijepa/pred_std": feature_std(pred),
                "collapse/std_l2": std_l2(emb),
                "collapse/rankme": rankme(emb),
                "collapse/mean_cosine": mean_cosine(emb),
            })
        return StepOutput(loss, stats)

    # --- parts -------------------------------------------------------------------------
    def forward_parts(self, imgs: torch.Tensor, masks: MultiBlockMasks
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss, predictions and targets (T*B, K, D), context tokens z (B, P + Nc, D) and the
        target encoder's patch features h (B, N, D) (before the extra layer norm)."""
        ctx_ids, tgt_ids = masks.context_ids.to(imgs.device), masks.target_ids.to(imgs.device)
        with torch.no_grad():  # stop-gradient on the target branch, with or without EMA
            tokens = self.encoder().forward_features(imgs)  # (B, P + N, D)
            h = tokens[:, num_prefix(self.context_encoder):]
            target = block_targets(F.layer_norm(h.float(), (h.shape[-1],)), tgt_ids)  # (T*B, K, D)
        z = forward_masked(self.context_encoder, imgs, ctx_ids)  # (B, P + Nc, D)
        pred = self.predictor(z, ctx_ids, tgt_ids)  # (T*B, K, D)
        return jepa_loss(pred.float(), target, self.cfg.ijepa.loss), pred, target, z, h

    @torch.no_grad()
    def after_step(self, it: int) -> None:
        if self.target_encoder is None:
            return
        if self._ema_pairs is None:
            self._ema_pairs = (list(self.target_encoder.parameters()), list(self.context_encoder.parameters()))
        ema_update_(*self._ema_pairs, momentum=self.ema_momentum(it))

    @torch.no_grad()
    def probe(self, images: torch.Tensor) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """The probe batch under one fixed multi-block draw (the same at every evaluation):
        ``context_mask`` (P, h, w) and ``target_masks`` (P, T, h, w) uint8; ``pred_cosine``
        (P, h, w) float, cosine of predicted to target feature per target patch (mean over
        the blocks covering it, NaN outside every target); ``original`` (P, H, W, 3) uint8;
        ``embeddings`` (P, D), the encoder's average-pooled patch features."""
        was_training = self.training
        self.eval()
        p_imgs = images.shape[0]
        masks = self.mask_generator(p_imgs, step_generator(self.cfg.run.seed, PROBE_IT))
        _, pred, target, _, h = self.forward_parts(images, masks)
        self.train(was_training)
        t, k = masks.target_ids.shape[1:]
        cos = F.cosine_similarity(pred.float(), target, dim=-1)  # (T*B, K)
        cos = cos.reshape(t, p_imgs, k).transpose(0, 1).cpu()  # (P, T, K)
        n = self.grid * self.grid
        total = torch.zeros(p_imgs, n).scatter_add_(1, masks.target_ids.reshape(p_imgs, -1), cos.reshape(p_imgs, -1))
        count = torch.zeros(p_imgs, n).scatter_add_(1, masks.target_ids.reshape(p_imgs, -1), torch.ones(p_imgs, t * k))
        per_patch = torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))
        side = (p_imgs, self.grid, self.grid)
        arrays = {
            "original": to_uint8_image(images),
            "context_mask": masks.context_mask().reshape(side).to(torch.uint8).numpy(),
            "target_masks": masks.target_masks().reshape(p_imgs, t, self.grid, self.grid).to(torch.uint8).numpy(),
            "pred_cosine": per_patch.reshape(side).numpy().astype(np.float32),
            "embeddings": h.float().mean(dim=1).cpu().numpy(),
        }
        return arrays, {"ijepa/pred_cosine_probe": float(cos.mean())}
