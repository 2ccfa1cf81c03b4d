"""Exponential moving average of weights, theta_t <- m theta_t + (1 - m) theta_s, and the base
that DINO (teacher) and I-JEPA (target encoder) share: the momentum schedule, the EMA pairs
and the logged ``ema/momentum``.

The foreach ops update every tensor in a few fused kernels instead of one Python-level op
per parameter.
"""

from __future__ import annotations

import abc

import torch
from torch import nn

from core import metrics as M
from trainer.methods.base import Method
from trainer.schedules import cosine_schedule, value_at


@torch.no_grad()
def ema_update_(target_params: list[torch.Tensor], online_params: list[torch.Tensor], momentum: float) -> None:
    """In place: ``target = momentum * target + (1 - momentum) * online`` for each pair."""
    assert len(target_params) == len(online_params), "target and online models differ"
    torch._foreach_mul_(target_params, momentum)
    torch._foreach_add_(target_params, online_params, alpha=1.0 - momentum)


class EMAMethod(Method):
    """A method with an EMA copy of an online network. The momentum follows a cosine from
    ``momentum`` at step 0 to 1 at the last step (DINO, I-JEPA); subclasses name the pair."""

    def __init__(self, momentum: float, steps: int):
        super().__init__()
        self.momentum_schedule = cosine_schedule(momentum, 1.0, steps)  # pure per-iteration array
        self._ema_pairs: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None

    @abc.abstractmethod
    def ema_modules(self) -> tuple[nn.Module, nn.Module] | None:
        """(EMA target, online network), or None when this run has no EMA copy."""

    def momentum(self, it: int) -> float:
        """lambda at step ``it``."""
        return value_at(self.momentum_schedule, it)

    @torch.no_grad()
    def after_step(self, it: int) -> None:
        if self._ema_pairs is None:
            modules = self.ema_modules()
            if modules is None:
                return
            self._ema_pairs = (list(modules[0].parameters()), list(modules[1].parameters()))
        ema_update_(*self._ema_pairs, momentum=self.momentum(it))

    def schedule_stats(self, it: int) -> dict[str, float]:
        return {} if self.ema_modules() is None else {M.EMA_MOMENTUM: self.momentum(it)}
