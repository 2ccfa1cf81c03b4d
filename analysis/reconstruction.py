"""What does MAE reconstruct? For a chosen mask ratio and seed: the original, the masked
input, the reconstruction, the reconstruction with the visible patches pasted back (the MAE
paper's figures), and the PSNR over the removed patches.

Built from the MAE method's own public pieces (``random_masking``, ``forward_masked``, its
decoder, ``pixels_from_pred``, ``psnr_masked``), so the pictures show exactly what training
optimises, at any mask ratio rather than only the trained one. An official MAE file with its
decoder (``analysis.mae_file.FileMAE``) offers the same pieces and is reconstructed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trainer.data.datasets import to_uint8_image
from trainer.data.masking import random_masking
from trainer.methods.mae import MAE, psnr_masked, unpatchify
from trainer.models.backbone import forward_masked


@dataclass
class Reconstruction:
    """MAE reconstructions of B images; pictures uint8 (B, H, W, 3)."""

    original: np.ndarray
    masked: np.ndarray  # removed patches at the dataset mean colour (0 in normalised units)
    reconstruction: np.ndarray  # the decoder's prediction everywhere
    pasted: np.ndarray  # prediction at removed patches, original at visible ones
    prediction: np.ndarray  # (B, 3, H, W) float32: the decoder's prediction in normalised-image units
    mask: np.ndarray  # (B, h, w) bool, True = removed
    psnr: np.ndarray  # (B,) dB over each image's removed patches, pixels in [0, 1]
    psnr_mean: float  # dB over all removed patches of the batch (as mae/psnr_masked)
    mask_ratio: float
    seed: int


@torch.inference_mode()
def reconstruct(mae: MAE, images: torch.Tensor, mask_ratio: float | None = None, seed: int = 0) -> Reconstruction:
    """Reconstruct normalised images (B, 3, H, W) at the training size, hiding
    round(``mask_ratio`` x N) random patches per image (default: the trained ratio), drawn
    from a generator seeded with ``seed``. ``mae``: an SSLScope MAE or a ``FileMAE``."""
    ratio = mae.mask_ratio if mask_ratio is None else float(mask_ratio)
    if not 0 < ratio < 1:
        raise ValueError(f"mask_ratio={ratio} must lie in (0, 1)")
    size = mae.image_size
    if tuple(images.shape[-2:]) != (size, size):
        raise ValueError(f"MAE's decoder has fixed positions for {size} px images; got {tuple(images.shape[-2:])}")
    mae.eval()
    p, b = mae.patch_size, images.shape[0]
    n = mae.grid * mae.grid
    g = torch.Generator().manual_seed(seed)
    ids_keep, ids_restore, mask = random_masking(b, n, ratio, g, images.device)
    latent = forward_masked(mae.encoder(), images, ids_keep)  # (B, P + N_keep, D)
    pred = mae.decoder(latent, ids_restore)  # (B, N, p*p*3)
    pix = mae.pixels_from_pred(pred, images)  # normalised-image units, also under norm_pix_loss
    mask_px = unpatchify(mask.unsqueeze(-1).expand(-1, -1, p * p * 3), p)  # (B, 3, H, W), 1 = removed
    recon = unpatchify(pix, p)
    pasted = images * (1 - mask_px) + recon * mask_px
    per_image = [float(psnr_masked(pix[i:i + 1], images[i:i + 1], mask[i:i + 1], p)) for i in range(b)]
    return Reconstruction(
        original=to_uint8_image(images), masked=to_uint8_image(images * (1 - mask_px)),
        reconstruction=to_uint8_image(recon), pasted=to_uint8_image(pasted),
        prediction=recon.float().cpu().numpy(), mask=mask.reshape(b, mae.grid, mae.grid).bool().cpu().numpy(),
        psnr=np.asarray(per_image, np.float32), psnr_mean=float(psnr_masked(pix, images, mask, p)),
        mask_ratio=ratio, seed=seed)


def psnr_by_ratio(mae: MAE, images: torch.Tensor, ratios: list[float], seed: int = 0) -> np.ndarray:
    """Masked-patch PSNR (dB) of the batch at each mask ratio: how reconstruction degrades as
    more is hidden. (len(ratios),)"""
    return np.asarray([reconstruct(mae, images, r, seed).psnr_mean for r in ratios], np.float32)
