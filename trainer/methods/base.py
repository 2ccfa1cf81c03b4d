"""The one interface every method implements, so the loop, the store and the dashboard never
ask which method runs (see docs/architecture.md)."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from core.collapse import collapse_stats
from core.features import image_feature
from core.probes import Layout
from trainer.data.views import Batch, ViewSpec


@dataclass
class StepOutput:
    """The loss to back-propagate and scalar stats for the run store (names in ``core.metrics``)."""

    loss: torch.Tensor
    stats: dict[str, torch.Tensor | float] = field(default_factory=dict)


class Method(nn.Module, abc.ABC):
    """Base class. Subclasses set ``name``, ``feature``, ``encoder_prefix`` and
    ``probe_layout`` and implement the hooks below.

    The loop calls, per step: ``out = method(batch, it, with_stats)``, backward on
    ``out.loss``, the optimiser step, then ``method.after_step(it)`` (EMA updates); on the steps
    it logs (``with_stats`` true) it logs ``out.stats`` with ``method.schedule_stats(it)``. On
    the other steps ``out.stats`` is empty: statistics cost compute and, on a GPU, their reads
    stall the queue, so they are computed only where they are written. At evaluations it reads ``method.feature`` of
    ``method.encoder()`` for the k-NN and calls ``method.probe(images)`` for the probe batch.
    """

    name: str = "base"
    # The image-level feature of encoder() that the collapse/* statistics, the online k-NN and
    # the probe embeddings all read: "cls" or "pooled" (core.features), so the three agree.
    feature: str = "cls"
    encoder_prefix: str = ""  # state-dict prefix of encoder(), written into every checkpoint's sidecar
    probe_layout: Layout = ()  # what probe() returns: name, kind, shape of every array (core.probes)

    @abc.abstractmethod
    def views(self) -> ViewSpec:
        """What the data loader must build."""

    @abc.abstractmethod
    def forward(self, batch: Batch, it: int, with_stats: bool = True) -> StepOutput:  # type: ignore[override]
        """Loss for one batch at iteration ``it``, and its stats when ``with_stats`` (else none).
        The loss and every update of state (the DINO centre) never depend on ``with_stats``."""

    @torch.no_grad()
    def after_step(self, it: int) -> None:
        """EMA of teacher / target encoder; no-op by default."""

    def schedule_stats(self, it: int) -> dict[str, float]:
        """Values of the method's own schedules at step ``it`` to log (``ema/momentum``); none by default."""
        return {}

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
        """Arrays to save under ``probes/step_<N>.npz``, exactly the entries of
        ``probe_layout``, and stats that need extra passes (``tokens/*``). ``images``:
        (P, 3, H, W) normalised probe batch."""
        return {}, {}

    @torch.no_grad()
    def feature_stats(self, vit: nn.Module, pre: torch.Tensor) -> dict[str, torch.Tensor]:
        """``collapse/*`` of this method's ``feature`` from block outputs before the final norm
        (B, prefix + N, D) of ``vit``."""
        return collapse_stats(image_feature(vit, pre, self.feature))

