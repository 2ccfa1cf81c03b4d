"""Save and restore everything a run needs to continue exactly: the method's state dict
(student, teacher / target encoder, heads, DINO centre) in safetensors, the optimiser state via
``torch.save`` (loaded back with ``weights_only=True``), and the step in the JSON sidecar.
Schedules are pure arrays indexed by step, so they need no state of their own."""

from __future__ import annotations

import torch

from trainer.methods import Method
from trainer.store import CheckpointInfo, RunWriter, StoreError, load_checkpoint, load_optim_state


def save_training_state(writer: RunWriter, step: int, method: Method, opt: torch.optim.Optimizer, keep: int) -> None:
    meta = {"method": method.name, "encoder_prefix": getattr(method, "encoder_prefix", "")}
    writer.save_checkpoint(step, dict(method.state_dict()), meta, optim_state=opt.state_dict(), keep=keep)


def restore_training_state(ck: CheckpointInfo, method: Method, opt: torch.optim.Optimizer) -> int:
    """Load ``ck`` into ``method`` and ``opt``; returns the step to continue from."""
    device = next(method.parameters()).device
    state = {k: v.to(device) for k, v in load_checkpoint(ck.path).items()}
    missing, unexpected = method.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise StoreError(f"checkpoint '{ck.path}' does not match this {method.name} model "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]}); was the config changed?")
    optim_state = load_optim_state(ck)
    if optim_state is None:
        raise StoreError(f"checkpoint '{ck.path}' has no optimiser state (step_{ck.step}.optim.pt); "
                         "cannot resume exactly")
    opt.load_state_dict(optim_state)
    return ck.step
