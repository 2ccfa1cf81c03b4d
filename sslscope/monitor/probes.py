"""A probe file from the pictures another trainer has: its layout (``core.probes``) built from
the arrays given, so the Live page draws them by kind."""

from __future__ import annotations

import numpy as np
import torch

from core.images import to_uint8_image
from core.probes import ORIGINAL, Layout, ProbeEntry, check_probe


def probe_arrays(images: torch.Tensor | np.ndarray, attention: torch.Tensor | None = None,
                 reconstruction: torch.Tensor | np.ndarray | None = None, mask: torch.Tensor | None = None,
                 embeddings: torch.Tensor | None = None) -> tuple[Layout, dict[str, np.ndarray]]:
    """(layout, arrays) of a probe: ``images`` (P, 3, H, W) normalised or (P, H, W, 3) uint8;
    ``attention`` [CLS] maps (P, heads, h, w) or (P, h, w); ``reconstruction`` as the images;
    ``mask`` (P, h, w) 1 = removed; ``embeddings`` (P, D). ``ProbeLayoutError`` (one line) when
    their sizes disagree."""
    arrays: dict[str, np.ndarray] = {"original": _uint8(images)}
    layout = [ORIGINAL]
    if attention is not None:
        a = attention.detach().float().cpu().numpy()
        layout.append(ProbeEntry("attn", "heatmap", ("heads", "h", "w") if a.ndim == 4 else ("h", "w"),
                                 "[CLS] attention, mean of heads" if a.ndim == 4 else "[CLS] attention"))
        arrays["attn"] = a
    if reconstruction is not None:
        layout.append(ProbeEntry("reconstruction", "image", ("H", "W", "3"), "reconstruction"))
        arrays["reconstruction"] = _uint8(reconstruction)
    if mask is not None:
        layout.append(ProbeEntry("mask", "mask", ("h", "w"), "removed patches"))
        arrays["mask"] = mask.detach().to(torch.uint8).cpu().numpy()
    if embeddings is not None:
        layout.append(ProbeEntry("embeddings", "embedding", ("D",), "embeddings"))
        arrays["embeddings"] = embeddings.detach().float().cpu().numpy()
    check_probe(tuple(layout), arrays)
    return tuple(layout), arrays


def _uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Probe pictures as (P, H, W, 3) uint8: given so, or normalised tensors (P, 3, H, W)."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"probe images as an array must be (P, H, W, 3) uint8, got {images.dtype} "
                             f"{images.shape}")
        return images
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"probe images as a tensor must be (P, 3, H, W) normalised, got shape {tuple(images.shape)}")
    return to_uint8_image(images)
