"""What the data layer hands to a method: the ``ViewSpec`` a method asks for, and the
``Batch`` of views the loader builds from it. They live with the data, so the loader and
the multi-crop transform never import the methods (``tests/test_layers.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ViewSpec:
    """What the data loader must build for each image.

    multicrop: ``n_global`` crops of ``global_size`` px and ``n_local`` of ``local_size`` px,
    with the DINO augmentations (DINO). single: one lightly augmented view of ``global_size``
    px (MAE, I-JEPA: their masks are drawn by the method itself).
    """

    kind: str  # "multicrop" | "single"
    global_size: int
    n_global: int = 1
    local_size: int = 0
    n_local: int = 0
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8  # colour jitter probability per view (multicrop only)
    grayscale_p: float = 0.2  # grey view probability (multicrop only)
    rotation: float = 0.0  # random rotation of each view, uniform in [-rotation, rotation] degrees (multicrop only)


@dataclass
class Batch:
    """One training batch. ``views[i]``: (B, 3, H_i, W_i) float, normalised; globals first."""

    views: list[torch.Tensor]
    labels: torch.Tensor  # (B,) int64, -1 where unlabelled

    def to(self, device: torch.device) -> Batch:
        return Batch([v.to(device, non_blocking=True) for v in self.views], self.labels.to(device))
