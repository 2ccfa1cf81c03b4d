"""The settings of a DINO loss object as ``Monitor.dino`` takes them, read from the loss of
lightly (``lightly.loss.DINOLoss``), of the official DINO (``main_dino.DINOLoss``) or of
SSLScope (``trainer.methods.dino_loss.DINOLoss``), so an adapter is one line:

    mon.dino(step, teacher_out, student_out, loss=criterion, epoch=epoch)   # before the loss

All three move their centre inside ``forward``, so the call comes before the loss; the centre
is copied here, so ``loss_params`` taken before the loss may also be used after it.
"""

from __future__ import annotations

from typing import Any

import torch


def loss_params(loss: Any, epoch: int | None = None, step: int | None = None) -> dict[str, Any]:
    """``center`` (a copy), ``teacher_temp``, ``student_temp``, ``center_momentum`` and
    ``centering`` of ``loss``. tau_t: SSLScope's schedule at ``step``; lightly's and the official
    schedule (one entry per warm-up epoch, or per epoch) at ``epoch``, past its end lightly's
    ``teacher_temp``."""
    out: dict[str, Any] = {"student_temp": float(loss.student_temp)}
    center = getattr(loss, "center", None)
    if isinstance(center, torch.Tensor):
        out["center"] = center.detach().clone()
    if getattr(loss, "center_momentum", None) is not None:
        out["center_momentum"] = float(loss.center_momentum)
    if getattr(loss, "centering", None) is not None:  # SSLScope: mean | sinkhorn | none
        out["centering"] = loss.centering
    temp = getattr(loss, "teacher_temp", None)
    if callable(temp):  # SSLScope: a schedule per step
        if step is None:
            raise ValueError("SSLScope's DINOLoss has a tau_t per step: pass step=")
        out["teacher_temp"] = float(temp(step))
        return out
    schedule = getattr(loss, "teacher_temp_schedule", None)
    if schedule is not None and epoch is not None and epoch < len(schedule):
        out["teacher_temp"] = float(schedule[epoch])
    elif isinstance(temp, float | int):
        out["teacher_temp"] = float(temp)  # lightly after its warm-up
    elif schedule is not None and epoch is not None:
        out["teacher_temp"] = float(schedule[-1])
    else:
        raise ValueError(f"cannot read tau_t from {type(loss).__name__}: pass epoch=, or teacher_temp= to "
                         "Monitor.dino yourself")
    return out
