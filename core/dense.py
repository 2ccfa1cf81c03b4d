"""Statistics of dense (patch-level) features, logged by every DINO run and read by the analysis:

- ``cls_patch_cosine``: the mean cosine between each image's [CLS] token and its patch tokens.
  DINOv3 (Simeoni et al. 2025, Sec. 4.1) reports that it rises over long training as the patch
  features lose their locality and drift towards the global [CLS] feature; Gram anchoring is
  their remedy.
- ``patch_rank``: RankMe (``core.collapse.rankme``) of all patch tokens of a batch stacked,
  (B * N, D): how many directions the patch features use. Low while the [CLS] features stay
  spread is dense collapse: patches of one image alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core import metrics as M
from core.collapse import rankme


@torch.no_grad()
def cls_patch_cosine(tokens: torch.Tensor, prefix: int) -> torch.Tensor:
    """0-dim tensor: mean over images and patches of cos([CLS], patch). ``tokens`` (B, prefix
    + N, D), [CLS] first, patch tokens after the ``prefix`` tokens ([CLS] + registers)."""
    t = F.normalize(tokens.float(), dim=-1)
    return (t[:, prefix:] * t[:, :1]).sum(-1).mean()


@torch.no_grad()
def patch_rank(patches: torch.Tensor) -> torch.Tensor:
    """0-dim tensor: RankMe of the patch tokens (B, N, D) stacked into (B * N, D)."""
    return rankme(patches.reshape(-1, patches.shape[-1]))


@torch.no_grad()
def dense_stats(tokens: torch.Tensor, prefix: int) -> dict[str, torch.Tensor]:
    """``dense/cls_patch_cosine`` and ``dense/patch_rankme`` of final-norm tokens (B, prefix + N, D)."""
    return {M.DENSE_CLS_PATCH_COSINE: cls_patch_cosine(tokens, prefix),
            M.DENSE_PATCH_RANKME: patch_rank(tokens[:, prefix:])}
