"""I-JEPA's latent regression and the spread of its features (Assran et al. 2023): the loss
between predicted and target-encoder features, and the ``ijepa/*_std`` statistics that fall to
0 when the targets collapse. ``trainer.methods.ijepa`` trains with these and
``sslscope.monitor.Monitor.jepa`` scores another trainer's tensors with the same functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core import metrics as M

JEPA_LOSSES = ("smooth_l1", "l2")


def jepa_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean over target patches and dims: smooth L1 (official code) or squared L2 (paper)."""
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target)
    return F.mse_loss(pred, target)


def feature_std(z: torch.Tensor) -> torch.Tensor:
    """Std over every token (rows of all leading dims) per feature dim, averaged over dims:
    about 1 for layer-normed features that vary, 0 when every token is the same."""
    return z.detach().float().reshape(-1, z.shape[-1]).std(dim=0).mean()


@torch.no_grad()
def jepa_stats(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """``ijepa/target_std`` and ``ijepa/pred_std`` of predictions and targets (..., D)."""
    return {M.IJEPA_TARGET_STD: feature_std(target), M.IJEPA_PRED_STD: feature_std(pred)}
