"""The one interface every method implements, so the loop, the store and the dashboard never
ask which method runs (see docs/architecture.md)."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


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


@dataclass
class Batch:
    """One training batch. ``views[i]``: (B, 3, H_i, W_i) float, normalised; globals first."""

    views: list[torch.Tensor]
    labels: torch.Tensor  # (B,) int64, -1 where unlabelled

    def to(self, device: torch.device) -> Batch:
        return Batch([v.to(device, non_blocking=True) for v in self.views], self.labels.to(device))


@dataclass
class StepOutput:
    """The loss to back-propagate and scalar stats for the run store (names in DESIGN.md)."""

    loss: torch.Tensor
    stats: dict[str, torch.Tensor | float] = field(default_factory=dict)


class Method(nn.Module, abc.ABC):
    """Base class. Subclasses set ``name`` and implement the hooks below.

    The loop calls, per step: ``out = method(batch, it)``, backward on ``out.loss``, the
    optimiser step, then ``method.after_step(it)`` (EMA updates). At evaluations it calls
    ``method.encoder()`` for k-NN features and ``method.probe(images)`` for the probe batch.
    """

    name: str = "base"
    knn_feature: str = "cls"  # what online k-NN reads from encoder(): "cls" or "pooled" patch tokens

    @abc.abstractmethod
    def views(self) -> ViewSpec:
        """What the data loader must build."""

    @abc.abstractmethod
    def forward(self, batch: Batch, it: int) -> StepOutput:  # type: ignore[override]
        """Loss and stats for one batch at iteration ``it``."""

    @torch.no_grad()
    def after_step(self, it: int) -> None:
        """EMA of teacher / target encoder; no-op by default."""

    @abc.abstractmethod
    def encoder(self) -> nn.Module:
        """The backbone to analyse (DINO: teacher, I-JEPA: target encoder, MAE: encoder)."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser owns (EMA copies excluded)."""
        return [p for p in self.parameters() if p.requires_grad]

    def on_optimizer_step(self, it: int) -> None:
        """Called after backward, before the optimiser step (e.g. zero the frozen last layer's grads)."""

    @torch.no_grad()
    def probe(self, images: torch.Tensor) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Arrays to save under ``probes/step_<N>.npz`` and stats that need extra passes
        (``tokens/*``). ``images``: (P, 3, H, W) normalised probe batch."""
        return {}, {}

    def state_extra(self) -> dict[str, torch.Tensor]:
        """Non-parameter state to checkpoint beyond buffers (none by default)."""
        return {}
