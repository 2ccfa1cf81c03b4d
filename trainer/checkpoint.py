"""Save and restore everything a run needs to continue exactly: the method's state dict
(student, teacher / target encoder, heads, DINO centre) in safetensors, the optimiser state via
``torch.save`` (loaded back with ``weights_only=True``), and the step in the JSON sidecar.
Schedules are pure arrays indexed by step, so they need no state of their own.

A checkpoint that cannot be restored (truncated file, a tensor of the wrong shape) raises
``StoreError`` naming it; :func:`restore_newest_good` then falls back to the one before."""

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
    try:
        missing, unexpected = method.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of the wrong shape
        detail = " ".join(str(e).split())[:240]
        raise StoreError(f"checkpoint '{ck.path}' does not fit this {method.name} model ({detail}); "
                         "was the config changed?") from None
    if missing or unexpected:
        raise StoreError(f"checkpoint '{ck.path}' does not match this {method.name} model "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]}); was the config changed?")
    optim_state = load_optim_state(ck)
    if optim_state is None:
        raise StoreError(f"checkpoint '{ck.path}' has no optimiser state (step_{ck.step}.optim.pt); "
                         "cannot resume exactly")
    try:
        opt.load_state_dict(optim_state)
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise StoreError(f"optimiser state of '{ck.path}' does not fit this model ({e})") from None
    for group in opt.param_groups:  # load_state_dict checks group sizes, not the moments' shapes
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                if torch.is_tensor(v) and v.dim() and v.shape != p.shape:
                    raise StoreError(f"optimiser state of '{ck.path}' holds {k} of shape {tuple(v.shape)} for a "
                                     f"parameter of shape {tuple(p.shape)}; was the config changed?")
    return ck.step


def restore_newest_good(candidates: list[CheckpointInfo], method: Method, opt: torch.optim.Optimizer
                        ) -> tuple[CheckpointInfo, list[str]]:
    """Restore the newest of ``candidates`` (in step order) that loads; returns it and one
    line per newer checkpoint that could not be restored. :class:`StoreError` if none can."""
    skipped: list[str] = []
    for ck in reversed(candidates):
        try:
            restore_training_state(ck, method, opt)
        except StoreError as e:
            skipped.append(f"step {ck.step}: {e}")
            continue
        return ck, skipped
    raise StoreError("no checkpoint can be restored: " + "; ".join(skipped))
