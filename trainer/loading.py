"""From a run folder's checkpoint back to live modules (read side; used by analysis and the
dashboard). Every checkpoint's JSON sidecar names ``encoder_prefix``: the state-dict prefix of
the backbone to analyse (DINO ``teacher.backbone.``, MAE ``encoder.``, I-JEPA
``target_encoder.``), so no caller needs to know which method wrote it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from core.vit import ViT
from trainer.config import Config, ConfigError
from trainer.methods import Method, build_method
from trainer.models.backbone import build_backbone
from trainer.store import CheckpointInfo, StoreError, list_checkpoints, load_checkpoint, read_run_info


def run_config(run_dir: Path | str) -> Config:
    """The validated config a run was trained with."""
    info = read_run_info(run_dir)
    if info["config"] and not set(info["config"]) & {f.name for f in dataclasses.fields(Config)}:
        raise StoreError(f"run '{run_dir}' was not trained by SSLScope's trainer (watched by sslscope.monitor or "
                         "imported from a log): it has curves and probes, but no model config to load or resume")
    try:
        return Config.from_dict(info["config"]).validate()
    except (ConfigError, KeyError) as e:
        raise StoreError(f"run.json of '{run_dir}' holds no usable config ({e})") from None


def pick_checkpoint(run_dir: Path | str, step: int | None = None) -> CheckpointInfo:
    """The checkpoint at ``step`` (default: the latest)."""
    cks = list_checkpoints(run_dir)
    if not cks:
        raise StoreError(f"run '{run_dir}' has no checkpoint yet; wait for the first one or train longer")
    if step is None:
        return cks[-1]
    for c in cks:
        if c.step == step:
            return c
    raise StoreError(f"run '{run_dir}' has no checkpoint at step {step}; it has {[c.step for c in cks]}")


def strip_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_method(run_dir: Path | str, step: int | None = None) -> tuple[Method, Config, CheckpointInfo]:
    """The whole method (heads, decoder, predictor included) in eval mode on CPU."""
    cfg = run_config(run_dir)
    ck = pick_checkpoint(run_dir, step)
    method = build_method(cfg)
    missing, unexpected = method.load_state_dict(load_checkpoint(ck.path), strict=False)
    if missing or unexpected:
        raise StoreError(f"checkpoint '{ck.path}' does not fit the run's {cfg.run.method} model "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return method.eval(), cfg, ck


def load_encoder(run_dir: Path | str, step: int | None = None) -> tuple[ViT, Config, CheckpointInfo]:
    """Just the backbone to analyse, without building the method's heads."""
    cfg = run_config(run_dir)
    ck = pick_checkpoint(run_dir, step)
    prefix = ck.meta.get("encoder_prefix", "")
    vit = build_backbone(cfg.model, cfg.data.image_size)
    sd = strip_prefix(load_checkpoint(ck.path), prefix)
    try:
        vit.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise StoreError(f"checkpoint '{ck.path}' does not hold a backbone under '{prefix}' ({str(e)[:200]})") from None
    return vit.eval(), cfg, ck
