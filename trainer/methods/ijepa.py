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
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core import distributed
from core import metrics as M
from core.eval_mode import eval_mode
from core.features import image_feature
from core.images import to_uint8_image
from core.koleo import koleo_loss
from core.latent import feature_std, jepa_loss, jepa_stats  # noqa: F401 - feature_std stays importable from here
from core.probes import ORIGINAL, ProbeEntry
from core.vit import block_tokens
from trainer.config import Config, ConfigError
from trainer.data.masking import MultiBlockMaskGenerator, MultiBlockMasks, step_generator
from trainer.data.views import Batch, ViewSpec
from trainer.methods.base import StepOutput
from trainer.methods.ema import EMAMethod
from trainer.models.backbone import build_backbone, forward_masked, grid_size, num_prefix
from trainer.models.jepa_predictor import JEPAPredictor, gather_tokens

PROBE_IT = -1  # the probe batch's masks come from step_generator(seed, PROBE_IT): one fixed draw


def block_targets(h: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
    """Target features h (B, N, D) at each block's patches target_ids (B, T, K) -> (T*B, K, D),
    block-major like the predictor's output."""
    b, t, k = target_ids.shape
    return gather_tokens(h.repeat(t, 1, 1), target_ids.transpose(0, 1).reshape(t * b, k))


def variance_hinge(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg's variance term: mean over dims of relu(gamma - std over the batch). (N, D) -> scalar."""
    std = torch.sqrt(z.float().var(dim=0) + eps)
    return F.relu(gamma - std).mean()


@dataclass
class Prediction:
    """One multi-block draw over B images, predictions compared with the targets."""

    loss: float  # the training loss on this draw
    masks: MultiBlockMasks
    cosine: torch.Tensor  # (B, T, K) cosine of predicted to target feature per target patch
    per_patch: torch.Tensor  # (B, h, w) mean cosine over the blocks covering a patch; NaN outside targets
    pre: torch.Tensor  # (B, P + N, D) target encoder's last-block tokens before the final norm


class IJEPA(EMAMethod):
    name = "ijepa"
    # the loss is on patch tokens, so collapse/*, k-NN and the probe embeddings read their
    # average pool (as the paper evaluates)
    feature = "pooled"
    encoder_prefix = "target_encoder."  # "context_encoder." when ema is off (set per instance)
    probe_layout = (
        ORIGINAL,
        ProbeEntry("context_mask", "mask", ("h", "w"), "I-JEPA context"),
        ProbeEntry("target_masks", "mask", ("T", "h", "w"), "targets"),
        ProbeEntry("pred_cosine", "heatmap", ("h", "w"), "cos(pred, target)"),
        ProbeEntry("embeddings", "embedding", ("D",), "target encoder, pooled"),
    )

    def __init__(self, cfg: Config):
        super().__init__(cfg.ijepa.momentum, cfg.optim.steps)
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

    # --- interface ---------------------------------------------------------------------
    def views(self) -> ViewSpec:
        return ViewSpec(kind="single", global_size=self.cfg.data.image_size)

    def encoder(self) -> nn.Module:
        return self.target_encoder if self.target_encoder is not None else self.context_encoder

    def ema_modules(self) -> tuple[nn.Module, nn.Module] | None:
        return None if self.target_encoder is None else (self.target_encoder, self.context_encoder)

    def forward(self, batch: Batch, it: int, with_stats: bool = True) -> StepOutput:  # type: ignore[override]
        imgs = batch.views[0]
        # the masks of the global batch, this rank's rows (core.distributed)
        masks = self.mask_generator(imgs.shape[0], step_generator(self.cfg.run.seed, it), shard=distributed.shard())
        loss, pred, target, z, pre = self.forward_parts(imgs, masks)
        stats: dict[str, torch.Tensor | float] = {M.IJEPA_LOSS: loss.detach()}
        j = self.cfg.ijepa
        if j.reg != "none" and j.reg_weight > 0:
            pooled = z[:, num_prefix(self.context_encoder):].mean(dim=1)  # (B, D) context features
            pooled = distributed.gather_rows(pooled)  # over the global batch, as one process sees it
            reg = koleo_loss(pooled) if j.reg == "koleo" else variance_hinge(pooled)
            loss = loss + j.reg_weight * reg
            stats[M.IJEPA_REG] = reg.detach()
        if not with_stats:
            return StepOutput(loss)
        with torch.no_grad():
            stats.update(jepa_stats(pred, target))
            stats.update(self.feature_stats(self.encoder(), pre))  # target encoder, full image
        return StepOutput(loss, stats)

    # --- parts -------------------------------------------------------------------------
    def forward_parts(self, imgs: torch.Tensor, masks: MultiBlockMasks
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss, predictions and targets (T*B, K, D), context tokens z (B, P + Nc, D) and the
        target encoder's last-block tokens before the final norm (B, P + N, D)."""
        ctx_ids, tgt_ids = masks.context_ids.to(imgs.device), masks.target_ids.to(imgs.device)
        with torch.no_grad():  # stop-gradient on the target branch, with or without EMA
            vit = self.encoder()
            pre = block_tokens(vit, imgs)  # (B, P + N, D)
            h = vit.norm(pre)[:, num_prefix(vit):]  # = forward_features(imgs) patch tokens
            target = block_targets(F.layer_norm(h.float(), (h.shape[-1],)), tgt_ids)  # (T*B, K, D)
        z = forward_masked(self.context_encoder, imgs, ctx_ids)  # (B, P + Nc, D)
        pred = self.predictor(z, ctx_ids, tgt_ids)  # (T*B, K, D)
        return jepa_loss(pred.float(), target, self.cfg.ijepa.loss), pred, target, z, pre

    @torch.no_grad()
    def predict(self, images: torch.Tensor, g: torch.Generator) -> Prediction:
        """Context encoder and predictor on normalised images (B, 3, H, W) under one
        multi-block draw from ``g``, compared with the target encoder (eval mode inside; the
        probe and ``analysis.jepa`` both read this)."""
        b = images.shape[0]
        masks = self.mask_generator(b, g)
        with eval_mode(self):
            loss, pred, target, _, pre = self.forward_parts(images, masks)
        t, k = masks.target_ids.shape[1:]
        cos = F.cosine_similarity(pred.float(), target.float(), dim=-1)  # (T*B, K), block-major
        cos = cos.reshape(t, b, k).transpose(0, 1).cpu()  # (B, T, K)
        ids = masks.target_ids.cpu().reshape(b, t * k)
        n = self.grid * self.grid
        total = torch.zeros(b, n).scatter_add_(1, ids, cos.reshape(b, t * k))
        count = torch.zeros(b, n).scatter_add_(1, ids, torch.ones(b, t * k))
        per_patch = torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))
        return Prediction(float(loss), masks, cos, per_patch.reshape(b, self.grid, self.grid), pre)

    @torch.no_grad()
    def probe(self, images: torch.Tensor) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """The probe batch under one fixed multi-block draw (the same at every evaluation):
        ``context_mask`` (P, h, w) and ``target_masks`` (P, T, h, w) uint8; ``pred_cosine``
        (P, h, w) float, cosine of predicted to target feature per target patch (mean over
        the blocks covering it, NaN outside every target); ``original`` (P, H, W, 3) uint8;
        ``embeddings`` (P, D), the encoder's pooled feature (``core.features``)."""
        pr = self.predict(images, step_generator(self.cfg.run.seed, PROBE_IT))
        p_imgs, t = images.shape[0], pr.masks.target_ids.shape[1]
        side = (p_imgs, self.grid, self.grid)
        arrays = {
            "original": to_uint8_image(images),
            "context_mask": pr.masks.context_mask().reshape(side).to(torch.uint8).numpy(),
            "target_masks": pr.masks.target_masks().reshape(p_imgs, t, self.grid, self.grid).to(torch.uint8).numpy(),
            "pred_cosine": pr.per_patch.numpy().astype(np.float32),
            "embeddings": image_feature(self.encoder(), pr.pre, self.feature).float().cpu().numpy(),
        }
        return arrays, {M.IJEPA_PRED_COSINE_PROBE: float(pr.cosine.mean())}
