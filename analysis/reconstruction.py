"""What does MAE reconstruct? For a chosen mask ratio and seed: the original, the masked
input, the reconstruction, the reconstruction with the visible patches pasted back (the MAE
paper's figures), and the PSNR over the removed patches.

Built from the MAE method's own ``reconstruct`` (the pictures its probe saves) and
``psnr_masked``, so the pictures show exactly what training optimises, at any mask ratio
rather than only the trained one. An official MAE file with its decoder
(``analysis.mae_file.FileMAE``) reconstructs through the same ``mae_pictures`` path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.images import to_uint8_image
from trainer.methods.mae import MAE, psnr_masked


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
    b = images.shape[0]
    pics = mae.reconstruct(images, torch.Generator().manual_seed(seed), ratio)
    p = mae.patch_size
    per_image = [float(psnr_masked(pics.pixels[i:i + 1], images[i:i + 1], pics.mask[i:i + 1], p)) for i in range(b)]
    return Reconstruction(
        original=to_uint8_image(images), masked=to_uint8_image(pics.masked),
        reconstruction=to_uint8_image(pics.reconstruction), pasted=to_uint8_image(pics.pasted),
        prediction=pics.reconstruction.float().cpu().numpy(),
        mask=pics.mask.reshape(b, mae.grid, mae.grid).bool().cpu().numpy(),
        psnr=np.asarray(per_image, np.float32), psnr_mean=float(psnr_masked(pics.pixels, images, pics.mask, p)),
        mask_ratio=ratio, seed=seed)


def psnr_by_ratio(mae: MAE, images: torch.Tensor, ratios: list[float], seed: int = 0) -> np.ndarray:
    """Masked-patch PSNR (dB) of the batch at each mask ratio: how reconstruction degrades as
    more is hidden. (len(ratios),)"""
    return np.asarray([reconstruct(mae, images, r, seed).psnr_mean for r in ratios], np.float32)
