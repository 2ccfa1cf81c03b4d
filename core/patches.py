"""Images as rows of pixel patches and MAE's scores on them (He et al. 2022, models_mae.py):
the masked MSE (MAE's loss) and the masked PSNR. ``trainer.methods.mae`` trains with these and
``sslscope.monitor.Monitor.mae`` scores another trainer's tensors with the same functions.

Patches are in raster order, pixels within a patch (row, col, channel), as models_mae's
``patchify``; images are ImageNet-normalised (``core.images``) unless said otherwise.
"""

from __future__ import annotations

import math

import torch

from core.images import MEAN, STD

NORM_PIX_EPS = 1.0e-6  # models_mae.forward_loss: (x - mean) / (var + 1e-6) ** 0.5


def patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, L, p*p*3), patches in raster order, pixels (row, col, channel)."""
    b, c, h_px, w_px = imgs.shape
    h, w = h_px // p, w_px // p
    x = imgs.reshape(b, c, h, p, w, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(b, h * w, p * p * c)


def unpatchify(x: torch.Tensor, p: int, c: int = 3) -> torch.Tensor:
    """(B, L, p*p*c) -> (B, c, H, W); inverse of ``patchify`` for a square grid."""
    b, n, _ = x.shape
    h = w = math.isqrt(n)
    x = x.reshape(b, h, w, p, p, c)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(b, c, h * p, w * p)


def pixel_targets(imgs: torch.Tensor, p: int, norm_pix_loss: bool) -> torch.Tensor:
    """Reconstruction targets (B, L, p*p*3): the patches, or with ``norm_pix_loss`` each patch
    normalised by its own mean and variance (models_mae.forward_loss)."""
    target = patchify(imgs, p)
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + NORM_PIX_EPS) ** 0.5
    return target


def unnormalize_patches(pred: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """A prediction of per-patch normalised pixels (B, L, K) mapped back to image units with
    the mean and variance of the true ``patches`` (B, L, K), as the MAE demo draws them."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return pred * (var + NORM_PIX_EPS) ** 0.5 + mean


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE over the removed patches only: pred, target (B, L, K), mask (B, L), 1 = removed."""
    loss = ((pred - target) ** 2).mean(dim=-1)  # (B, L), mean loss per patch
    return (loss * mask).sum() / mask.sum()


def to_unit_pixels(patches: torch.Tensor, c: int = 3) -> torch.Tensor:
    """Patches (..., p*p*c) of normalised images -> the same in [0, 1] pixel units, clamped."""
    mean = torch.tensor(MEAN, dtype=patches.dtype, device=patches.device)
    std = torch.tensor(STD, dtype=patches.dtype, device=patches.device)
    k = patches.shape[-1] // c  # channel is the fastest-varying index of a patch
    return (patches * std.repeat(k) + mean.repeat(k)).clamp(0, 1)


def psnr_masked_patches(pred_pix: torch.Tensor, target_pix: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PSNR in dB over the removed patches (mask (B, L), 1 = removed), in [0, 1] pixels, of a
    prediction and the true patches (B, L, p*p*3), both in normalised-image units."""
    err = (to_unit_pixels(pred_pix.float()) - to_unit_pixels(target_pix.float())) ** 2
    mse = (err.mean(dim=-1) * mask).sum() / mask.sum()
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-10))


def psnr_masked(pred_pix: torch.Tensor, imgs: torch.Tensor, mask: torch.Tensor, p: int) -> torch.Tensor:
    """PSNR in dB over the removed patches, in [0, 1] pixels. ``pred_pix`` (B, L, p*p*3) is a
    prediction in normalised-image units (not norm-pix units), ``imgs`` (B, 3, H, W)."""
    return psnr_masked_patches(pred_pix, patchify(imgs.float(), p), mask)
