"""Named recipes of method settings: ``python -m trainer train --preset dinov2``.

A preset is a function of the config it is applied to (so the Gram steps of ``dinov3`` scale
with ``optim.steps``) that returns the config with some fields set. The CLI applies it after
the config file and the named flags (``--steps``, ``--data`` ...) and before ``--set``, so
``--set`` still overrides any field a preset chose. The run's ``run.json`` holds the resulting
values field by field, like any other run: a preset is never stored as a name, and a run is
reproduced from its own folder without knowing that a preset existed.

- ``dinov2``: DINO plus the iBOT patch loss as DINOv2 trains it (``dino.ibot_weight=1``, half
  of the global crops masked at ratios stratified in [0.1, 0.5], the DINO head shared).
- ``dinov3``: ``dinov2`` on the matching DINOv3 backbone (RoPE, 4 storage tokens, layer scale:
  ``model.preset=dinov3-*``) with Gram anchoring: weight 2 (DINOv3's), the Gram teacher taken
  after 10% of the run, the loss on from half way, ramped over 5% of the run.

Everything else keeps the CPU defaults of ``trainer.config`` (KoLeo 0.2, tau_t 0.015, ...),
which were tuned for DINO on these budgets (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable

from trainer.config import Config, ConfigError

# the DINOv3 backbone of each model preset's shape
_DINOV3_OF = {"cpu-tiny": "dinov3-cpu-tiny", "cpu-small": "dinov3-cpu-small", "vit-small": "dinov3-small",
              "vit-base": "dinov3-base", "custom": "dinov3-custom"}


def dinov2(cfg: Config) -> Config:
    """DINO + iBOT as DINOv2 (module docstring)."""
    return cfg.with_overrides(["run.method=dino", "dino.ibot_weight=1.0", "dino.ibot_separate_head=false",
                               "dino.ibot_mask_probability=0.5", "dino.ibot_mask_ratio_min=0.1",
                               "dino.ibot_mask_ratio_max=0.5"])


def dinov3(cfg: Config) -> Config:
    """``dinov2`` on a DINOv3 backbone with Gram anchoring (module docstring)."""
    cfg = dinov2(cfg)
    preset = cfg.model.preset
    if not preset.startswith("dinov3-"):
        if preset not in _DINOV3_OF:
            raise ConfigError(f"--preset dinov3 has no DINOv3 backbone for model.preset={preset}; use one of "
                              f"{', '.join(_DINOV3_OF)} or a dinov3-* preset")
        cfg = cfg.set("model.preset", _DINOV3_OF[preset])
    steps = cfg.optim.steps
    start = steps // 2
    return cfg.with_overrides(["dino.gram_weight=2.0", f"dino.gram_teacher_step={min(start, round(0.1 * steps))}",
                               f"dino.gram_start={start}", f"dino.gram_ramp_steps={max(1, round(0.05 * steps))}"])


METHOD_PRESETS: dict[str, Callable[[Config], Config]] = {"dinov2": dinov2, "dinov3": dinov3}


def apply_preset(cfg: Config, name: str) -> Config:
    """``cfg`` with the preset ``name``'s fields set; an unknown name is a ``ConfigError``."""
    if name not in METHOD_PRESETS:
        raise ConfigError(f"--preset '{name}' is not known; choose one of: {', '.join(METHOD_PRESETS)}")
    return METHOD_PRESETS[name](cfg)
