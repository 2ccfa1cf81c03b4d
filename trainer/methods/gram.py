"""Gram anchoring (DINOv3, Simeoni et al. 2025, Sec. 4.2, Eq. 2-3), written from the paper's
formula: keep the patch-similarity structure of the student close to that of a Gram teacher,
an earlier frozen copy of the EMA teacher, while leaving the features themselves free.

For one global crop with P patches, let X_S (P, d) be the student's patch features after the
final norm and X_G (P, d) the Gram teacher's, each row l2-normalised. Then

    L_Gram = mean over the P x P entries of (X_S X_S^T - X_G X_G^T)^2

averaged over the crops of the batch (the mean of squared differences, so the value does not
grow with P). Because each row is normalised, rescaling any token of either model changes
nothing, and a teacher equal to the student gives 0.

The Gram teacher may run at a higher resolution (DINOv3: 512 px teacher crops against 256):
its patch grid is then resized bicubically to the student's before the Gram matrix is formed.
Its source and refreshes (``gram_copy_steps``) and the weight schedule
(``trainer.schedules.delayed_cosine_ramp``) are functions of the step, so resume is exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gram_matrices(tokens: torch.Tensor) -> torch.Tensor:
    """(B, P, d) patch features -> (B, P, P) cosine similarities of every pair of patches."""
    x = F.normalize(tokens.float(), dim=-1)
    return x @ x.transpose(1, 2)


def gram_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Scalar mean over crops and entries of (X_S X_S^T - X_G X_G^T)^2, on l2-normalised rows.
    ``student`` (B, P, d_s) and ``teacher`` (B, P, d_g): the same crops on the same patch grid
    (the widths may differ: only the P x P similarities are compared)."""
    assert student.shape[:2] == teacher.shape[:2], f"patch grids differ: {student.shape} vs {teacher.shape}"
    return (gram_matrices(student) - gram_matrices(teacher.detach())).pow(2).mean()


def resize_patch_grid(tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h*w, d) patch tokens of a square grid -> (B, H*W, d) on the grid ``size`` = (H, W):
    bicubic interpolation of each channel over the grid (no antialiasing, corners not aligned).
    Identity when the grids match."""
    b, n, d = tokens.shape
    side = math.isqrt(n)
    assert side * side == n, f"{n} patch tokens do not form a square grid"
    if (side, side) == tuple(size):
        return tokens
    grid = tokens.transpose(1, 2).reshape(b, d, side, side)  # (B, d, h, w)
    out = F.interpolate(grid.float(), size=size, mode="bicubic", align_corners=False, antialias=False)
    return out.flatten(2).transpose(1, 2).to(tokens.dtype)  # (B, H*W, d)


def gram_copy_steps(teacher_step: int, refresh_every: int, max_refreshes: int) -> frozenset[int]:
    """Steps after which the EMA teacher is copied into the Gram teacher: ``teacher_step``
    (the source; 0 = the initial teacher) and, with refreshes, ``teacher_step + k *
    refresh_every`` for k = 1 .. ``max_refreshes`` (DINOv3: every 10k iterations, at most 3 times)."""
    steps = {teacher_step}
    if refresh_every > 0:
        steps |= {teacher_step + k * refresh_every for k in range(1, max_refreshes + 1)}
    return frozenset(steps)
