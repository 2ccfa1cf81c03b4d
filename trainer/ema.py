"""Exponential moving average of weights: theta_t <- m theta_t + (1 - m) theta_s.

Used for DINO's teacher and I-JEPA's target encoder. The foreach ops update every tensor in a
few fused kernels instead of one Python-level op per parameter.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def ema_update_(target_params: list[torch.Tensor], online_params: list[torch.Tensor], momentum: float) -> None:
    """In place: ``target = momentum * target + (1 - momentum) * online`` for each pair."""
    assert len(target_params) == len(online_params), "target and online models differ"
    torch._foreach_mul_(target_params, momentum)
    torch._foreach_add_(target_params, online_params, alpha=1.0 - momentum)
