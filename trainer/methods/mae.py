"""MAE: masked autoencoders (He et al. 2022), following models_mae.py's structure and names.

Each image is cut into patches; a random ``mask_ratio`` of them is removed (argsort of noise,
``ids_restore`` to undo the shuffle); the encoder -- the shared timm ViT, registers allowed --
sees only the visible patches plus its prefix tokens, which is where MAE's compute saving comes
from; a light decoder puts mask tokens at the removed places and predicts their pixels; the
loss is the MSE on the removed patches only, optionally against per-patch normalised pixels
(``norm_pix_loss``, the paper's best setting).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core import distributed
from core import metrics as M
from core.eval_mode import eval_mode
from core.features import image_feature
from core.images import to_uint8_image
from core.patches import (  # noqa: F401 - the maths lives in core; these names stay importable from here
    masked_mse,
    patchify,
    pixel_targets,
    psnr_masked,
    to_unit_pixels,
    unnormalize_patches,
    unpatchify,
)
from core.probes import ORIGINAL, ProbeEntry
from core.vit import block_tokens
from trainer.config import Config, ConfigError
from trainer.data.masking import random_masking, step_generator
from trainer.data.views import Batch, ViewSpec
from trainer.methods.base import Method, StepOutput
from trainer.models.backbone import build_backbone, forward_masked, grid_size, num_prefix
from trainer.models.mae_decoder import MAEDecoder

PROBE_IT = -1  # the probe batch's masks come from step_generator(seed, PROBE_IT): one fixed draw


def pixels_from_pred(pred: torch.Tensor, imgs: torch.Tensor, p: int, norm_pix_loss: bool) -> torch.Tensor:
    """A prediction (B, L, p*p*3) in normalised-image units. Under ``norm_pix_loss`` the decoder
    predicts per-patch normalised pixels; they are mapped back with the true patch's mean and
    variance, as the MAE demo does for its pictures."""
    pred = pred.detach().float()
    if not norm_pix_loss:
        return pred
    return unnormalize_patches(pred, patchify(imgs.float(), p))


@dataclass
class Pictures:
    """MAE's pictures of B images, tensors in normalised-image units."""

    pixels: torch.Tensor  # (B, L, p*p*3) prediction per patch (un-normalised under norm_pix_loss)
    mask: torch.Tensor  # (B, L) 1 = removed
    masked: torch.Tensor  # (B, 3, H, W) input with the removed patches at 0 (the dataset mean colour)
    reconstruction: torch.Tensor  # (B, 3, H, W) the decoder's prediction everywhere
    pasted: torch.Tensor  # (B, 3, H, W) prediction at removed patches, original at visible ones


@torch.no_grad()
def mae_pictures(vit: nn.Module, decoder: nn.Module, images: torch.Tensor, g: torch.Generator, mask_ratio: float,
                 p: int, norm_pix_loss: bool) -> Pictures:
    """The pictures of an MAE (encoder ``vit`` + ``decoder``, patch ``p``) on normalised images
    (B, 3, H, W), masks drawn from ``g`` exactly as training draws them: SSLScope's MAE and an
    official MAE file with its decoder (``analysis.mae_file``) share this one path."""
    b, n = images.shape[0], (images.shape[-2] // p) * (images.shape[-1] // p)
    ids_keep, ids_restore, mask = random_masking(b, n, mask_ratio, g, images.device)
    with eval_mode(vit), eval_mode(decoder):
        pred = decoder(forward_masked(vit, images, ids_keep), ids_restore)  # (B, L, p*p*3)
    pix = pixels_from_pred(pred, images, p, norm_pix_loss)  # (B, L, p*p*3), normalised-image units
    mask_px = unpatchify(mask.unsqueeze(-1).expand(-1, -1, p * p * 3), p)  # (B, 3, H, W), 1 = removed
    recon = unpatchify(pix, p)
    masked = images * (1 - mask_px)
    return Pictures(pix, mask, masked, recon, masked + recon * mask_px)


class MAE(Method):
    name = "mae"
    # the loss is on patch tokens, so collapse/*, k-NN and the probe embeddings read their
    # average pool (MAE's global_pool)
    feature = "pooled"
    encoder_prefix = "encoder."
    probe_layout = (
        ORIGINAL,
        ProbeEntry("masked", "image", ("H", "W", "3"), "MAE input (masked)"),
        ProbeEntry("reconstruction", "image", ("H", "W", "3"), "reconstruction"),
        ProbeEntry("reconstruction_pasted", "image", ("H", "W", "3"), "reconstruction + visible"),
        ProbeEntry("mask", "mask", ("h", "w"), "removed patches"),
        ProbeEntry("embeddings", "embedding", ("D",), "encoder, pooled"),
    )

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg, m = cfg, cfg.mae
        size = cfg.data.image_size
        vit = build_backbone(cfg.model, size)
        if m.decoder_dim % m.decoder_heads or m.decoder_dim % 4:
            raise ConfigError(f"mae.decoder_dim={m.decoder_dim} must be divisible by mae.decoder_heads="
                              f"{m.decoder_heads} and by 4 (2-D sin-cos positions)")
        # Registered under "encoder" (the checkpoint prefix, as in models_mae) while
        # ``encoder()`` stays the interface method. add_module refuses a name the class already
        # has, but nn.Module resolves submodules through _modules only, so both coexist.
        self._modules["encoder"] = vit
        self.patch_size = vit.patch_embed.patch_size[0]
        self.grid = grid_size(vit, size)
        self.decoder = MAEDecoder(vit.num_features, m.decoder_dim, m.decoder_depth, m.decoder_heads,
                                  self.grid, self.patch_size, num_prefix(vit))

    # --- interface ---------------------------------------------------------------------
    def views(self) -> ViewSpec:
        return ViewSpec(kind="single", global_size=self.cfg.data.image_size)

    def encoder(self) -> nn.Module:
        return self._modules["encoder"]

    def forward(self, batch: Batch, it: int, with_stats: bool = True) -> StepOutput:  # type: ignore[override]
        imgs = batch.views[0]
        # the masks of the global batch, this rank's rows (core.distributed)
        g = step_generator(self.cfg.run.seed, it)
        loss, pred, mask, pre = self.forward_parts(imgs, g, shard=distributed.shard())
        if not with_stats:
            return StepOutput(loss)
        with torch.no_grad():
            stats: dict[str, torch.Tensor | float] = {
                M.MAE_LOSS: loss.detach(),
                M.MAE_PSNR_MASKED: psnr_masked(self.pixels_from_pred(pred, imgs), imgs, mask, self.patch_size),
            }
            stats.update(self.feature_stats(self.encoder(), pre))  # pooled over the visible patches
        return StepOutput(loss, stats)

    # --- parts -------------------------------------------------------------------------
    def forward_parts(self, imgs: torch.Tensor, g: torch.Generator, mask_ratio: float | None = None,
                      shard: tuple[int, int] = (0, 1)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss, prediction (B, L, p*p*3), mask (B, L) and the encoder's last-block tokens before
        the final norm (B, P + L_keep, D) for images (B, 3, H, W) with masks drawn from ``g``
        (``mask_ratio``: default the trained one; ``shard``: (rank, world), see ``random_masking``)."""
        b = imgs.shape[0]
        n = self.grid * self.grid
        vit = self.encoder()
        ratio = self.cfg.mae.mask_ratio if mask_ratio is None else mask_ratio
        ids_keep, ids_restore, mask = random_masking(b, n, ratio, g, imgs.device, shard)
        pre = forward_masked(vit, imgs, ids_keep, norm=False)  # (B, P + L_keep, D)
        pred = self.decoder(vit.norm(pre), ids_restore)  # (B, L, p*p*3)
        target = pixel_targets(imgs, self.patch_size, self.cfg.mae.norm_pix_loss)
        loss = masked_mse(pred.float(), target.float(), mask)
        return loss, pred, mask, pre

    def pixels_from_pred(self, pred: torch.Tensor, imgs: torch.Tensor) -> torch.Tensor:
        """Prediction in normalised-image units (B, L, p*p*3); see :func:`pixels_from_pred`."""
        return pixels_from_pred(pred, imgs, self.patch_size, self.cfg.mae.norm_pix_loss)

    @property
    def mask_ratio(self) -> float:
        """The trained mask ratio (what reconstructions use by default)."""
        return self.cfg.mae.mask_ratio

    @property
    def image_size(self) -> int:
        """The image side the decoder's fixed positions fit."""
        return self.cfg.data.image_size

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, g: torch.Generator, mask_ratio: float | None = None) -> Pictures:
        """The MAE paper's pictures of normalised images (B, 3, H, W), masks drawn from ``g``
        (eval mode inside; the probe and ``analysis.reconstruction`` both draw these)."""
        return mae_pictures(self.encoder(), self.decoder, images, g, self.mask_ratio if mask_ratio is None
                            else mask_ratio, self.patch_size, self.cfg.mae.norm_pix_loss)

    @torch.no_grad()
    def probe(self, images: torch.Tensor) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Reconstructions of the probe batch under one fixed mask (the same at every
        evaluation): uint8 (P, H, W, 3) ``original``, ``masked`` (removed patches at the
        dataset mean colour), ``reconstruction``, ``reconstruction_pasted`` (visible patches
        pasted back); ``mask`` (P, h, w) uint8, 1 = removed; ``embeddings`` (P, D) the
        encoder's pooled feature of the full images."""
        pics = self.reconstruct(images, step_generator(self.cfg.run.seed, PROBE_IT))
        vit = self.encoder()
        with eval_mode(vit):
            emb = image_feature(vit, block_tokens(vit, images), self.feature)  # (P, D)
        arrays = {
            "original": to_uint8_image(images),
            "masked": to_uint8_image(pics.masked),  # 0 in normalised units = mean colour
            "reconstruction": to_uint8_image(pics.reconstruction),
            "reconstruction_pasted": to_uint8_image(pics.pasted),
            "mask": pics.mask.reshape(-1, self.grid, self.grid).to(torch.uint8).cpu().numpy(),
            "embeddings": emb.float().cpu().numpy(),
        }
        stats = {M.MAE_PSNR_MASKED_PROBE: float(psnr_masked(pics.pixels, images, pics.mask, self.patch_size))}
        return arrays, stats
