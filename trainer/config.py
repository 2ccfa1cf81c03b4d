"""One frozen config per run: every knob, its default and why, validated before training starts.

The sections mirror the pipeline (data -> model -> method -> optimiser -> run). A config is
saved whole in `run.json`, so a run can always be reproduced and resumed from its own folder.
Overrides come as ``section.field=value`` strings (CLI ``--set``) or a YAML/JSON file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

METHODS = ("dino", "mae", "ijepa")
DATASETS = ("shapes", "fashion-mnist", "digits", "folder")
PRESETS = ("cpu-tiny", "cpu-small", "vit-tiny", "vit-small", "vit-base", "custom",
           "dinov3-cpu-tiny", "dinov3-cpu-small", "dinov3-small", "dinov3-base", "dinov3-custom")
DINOV3_STORAGE_TOKENS = 4  # storage tokens of timm's vit_*_patch16_dinov3 (DINOv3's registers)


class ConfigError(ValueError):
    """A bad config value. The message names the field, the value and what is allowed, on one
    line: control characters of a bad value (a newline in a ``--set``) are escaped."""

    def __init__(self, message: str):
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in message))


@dataclass(frozen=True)
class Data:
    name: str = "shapes"  # shapes | fashion-mnist | digits | folder
    path: str = ""  # dataset root; "" = the dataset's default (Debian's path for fashion-mnist)
    image_size: int = 32  # side of the (square) global view in pixels
    num_train: int = 4000  # images in the train split (shapes: generated; others: first N, 0 = all)
    num_val: int = 1000  # held-out images for online k-NN (shapes: generated; others: first N)
    batch_size: int = 32  # images per step (per GPU under DDP); DINO stays healthy at 32 on CPU
    num_workers: int = 1  # DataLoader worker processes (0 = in the main process)


@dataclass(frozen=True)
class Model:
    preset: str = "cpu-tiny"  # cpu-tiny | cpu-small | vit-tiny | vit-small | vit-base | custom: timm's
    #   VisionTransformer (learnt positions). dinov3-cpu-tiny | dinov3-cpu-small | dinov3-small | dinov3-base |
    #   dinov3-custom: timm's DINOv3 ViT (vit_*_patch16_dinov3: RoPE, storage tokens, layer scale 1e-5) at
    #   the same shapes as cpu-tiny, cpu-small, vit-small, vit-base and custom
    patch_size: int = 4  # pixels per patch side (custom preset; presets set their own)
    embed_dim: int = 64  # token width (custom preset)
    depth: int = 4  # transformer blocks (custom preset)
    num_heads: int = 4  # attention heads (custom preset)
    reg_tokens: int = 0  # DINOv2-style registers: learnable tokens without positional embedding. dinov3-*
    #   presets: storage tokens, 0 = DINOv3's 4
    drop_path_rate: float = 0.0  # stochastic depth; 0 on CPU-sized models


@dataclass(frozen=True)
class Optim:
    steps: int = 300  # optimiser steps in the whole run
    lr: float = 1e-3  # peak AdamW learning rate after warm-up
    min_lr: float = 1e-5  # learning rate at the end of the cosine decay
    warmup_steps: int = 30  # linear learning-rate warm-up from 0
    weight_decay: float = 0.04  # AdamW weight decay at the start (DINO: 0.04)
    weight_decay_end: float = 0.4  # ... cosine-increased to this at the end (DINO: 0.4)
    clip_grad: float = 3.0  # max global grad norm; 0 = no clipping (DINO: 3.0)
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.999  # AdamW beta2


@dataclass(frozen=True)
class Dino:
    out_dim: int = 64  # K, prototypes of the head's last layer; ln K is the uniform-collapse line
    hidden_dim: int = 256  # head MLP width (paper: 2048; CPU: the head must not outweigh a tiny ViT)
    bottleneck_dim: int = 128  # l2-normalised bottleneck before the last layer (paper: 256)
    n_local: int = 4  # local crops per image, student only (paper: 6-10; CPU: 4 halves the cost of 8)
    global_scale_min: float = 0.4  # global crops cover 40-100% of the image
    local_scale_min: float = 0.05  # local crops cover 5-40% of the image
    local_scale_max: float = 0.4
    local_size_ratio: float = 0.5  # local crop side / global side (paper: 96/224 ~ 0.43)
    student_temp: float = 0.1  # tau_s
    teacher_temp: float = 0.015  # tau_t after warm-up (paper: 0.04-0.07; short CPU runs drift to
    #   uniform at 0.04, and KoLeo plus strong colour jitter push up further: 0.015 holds 0.6-0.75 ln K,
    #   see docs/architecture.md)
    warmup_teacher_temp: float = 0.015  # tau_t at step 0 (paper: 0.04)
    teacher_temp_warmup_steps: int = 0  # linear tau_t warm-up (paper: 30 epochs)
    centering: str = "mean"  # mean (running mean c) | sinkhorn (DINOv2 SK) | none
    center_momentum: float = 0.9  # m in c <- m c + (1 - m) mean(g_t)
    sharpening: bool = True  # False: tau_t = tau_s, i.e. no sharpening (ablation)
    momentum_teacher: float = 0.99  # EMA lambda at step 0, cosine-increased to 1 (paper: 0.996 over
    #   ~100k steps; a 300-step run needs a teacher that follows within ~100 steps)
    freeze_last_layer_steps: int = 30  # last layer gets no update at first (paper: 1 epoch)
    norm_last_layer: bool = True  # weight-norm g fixed to 1 (paper default)
    koleo_weight: float = 0.2  # DINOv2 KoLeo on the student's [CLS] of global crops; 0 = off (DINOv2:
    #   0.1). It spreads the features while the head is still near uniform: without it a 300-step
    #   shapes run under strong colour jitter collapses to uniform (0.996 ln K)
    jitter_p: float = 1.0  # colour jitter probability per view (paper: 0.8)
    brightness_jitter: float = 0.4  # brightness factor in [1 - a, 1 + a] (paper: 0.4)
    contrast_jitter: float = 0.4  # contrast factor in [1 - a, 1 + a] (paper: 0.4)
    saturation_jitter: float = 0.8  # saturation factor in [1 - a, 1 + a] (paper: 0.2)
    hue_jitter: float = 0.5  # hue shift in [-a, a] turns (paper: 0.1). When shapes painted its objects in
    #   saturated random hues, two crops shared a hue at 0.1 and DINO learnt colour, not shape (0.5 = any hue)
    grayscale_p: float = 0.3  # probability of a grey view (paper: 0.2)
    rotation: float = 0.0  # random rotation of each view in [-a, a] degrees (paper: none; objects
    #   without a canonical orientation, e.g. shapes, satellite or microscopy images, can use 180)
    sinkhorn_iters: int = 3  # Sinkhorn-Knopp iterations (DINOv2: 3)
    # iBOT patch loss (Zhou et al. 2022, as DINOv2 uses it): the student sees some global crops with
    # masked patches and predicts, at those patches, the teacher's patch distribution on the unmasked crop
    ibot_weight: float = 0.0  # weight of the iBOT term in the loss; 0 = off, plain DINO (DINOv2: 1.0)
    ibot_separate_head: bool = False  # own head for the patch tokens (DINOv2's ViT-L/g configs) instead of
    #   the DINO head (DINOv2's default)
    ibot_out_dim: int = 0  # K of the separate iBOT head; 0 = dino.out_dim (the shared head has dino.out_dim)
    ibot_mask_probability: float = 0.5  # share of the global crops of a batch that are masked (DINOv2: 0.5)
    ibot_mask_ratio_min: float = 0.1  # masked crops' ratios are stratified in [min, max] (DINOv2: 0.1-0.5)
    ibot_mask_ratio_max: float = 0.5
    # Gram anchoring (DINOv3, Simeoni et al. 2025): keep the patch-similarity structure of the student's
    # global crops close to that of an earlier, frozen copy of the EMA teacher (the Gram teacher)
    gram_weight: float = 0.0  # weight of the Gram loss once ramped up; 0 = off (DINOv3: 2)
    gram_teacher_step: int = 100  # the Gram teacher is the EMA teacher as it was after this many steps
    #   (DINOv3: an early teacher is better; ~10-20% of a short run)
    gram_start: int = 150  # the Gram weight is 0 before this step (DINOv3: ~1M of ~1.2M iterations) ...
    gram_ramp_steps: int = 50  # ... then rises on a half cosine to dino.gram_weight over this many steps
    gram_refresh_every: int = 0  # copy the EMA teacher into the Gram teacher again every N steps after
    #   dino.gram_teacher_step; 0 = never (DINOv3: every 10k iterations)
    gram_max_refreshes: int = 0  # at most this many refreshes (DINOv3: 3)
    gram_teacher_scale: float = 1.0  # the Gram teacher sees the global crops resized by this factor (DINOv3:
    #   2, 512 px vs 256); its patch grid is resized bicubically to the student's


@dataclass(frozen=True)
class Mae:
    mask_ratio: float = 0.75  # fraction of patches hidden from the encoder
    decoder_dim: int = 64  # decoder width (paper: 512 for ViT-B/L/H), cpu-tiny's width. It runs on all N
    # tokens, so keep it narrow on CPU. Divisible by decoder_heads and by 4 (2-D sin-cos positions)
    decoder_depth: int = 2  # decoder blocks
    decoder_heads: int = 4  # decoder attention heads
    norm_pix_loss: bool = False  # per-patch normalised pixel targets (MAE paper's best)


@dataclass(frozen=True)
class Ijepa:
    pred_dim: int = 32  # predictor width: half of cpu-tiny's 64 (paper: 384 for ViT-B's 768); raise it
    # with the encoder. Divisible by the encoder's heads and by 4 (2-D sin-cos positions). The
    # predictor runs once per target block, so its width sets much of an I-JEPA step's cost
    pred_depth: int = 3  # predictor blocks
    num_targets: int = 4  # target blocks per image
    target_scale_min: float = 0.15  # target block area / image area
    target_scale_max: float = 0.2
    target_aspect_min: float = 0.75  # target block height / width
    target_aspect_max: float = 1.5
    context_scale_min: float = 0.85  # context block area before the targets are cut out
    context_scale_max: float = 1.0
    min_context: int = 10  # fewest context patches kept
    loss: str = "smooth_l1"  # smooth_l1 | l2
    ema: bool = True  # False: the target is the context encoder under stop-gradient
    momentum: float = 0.996  # target-encoder EMA at step 0, cosine-increased to 1
    reg: str = "koleo"  # none | koleo | variance: anti-collapse regulariser on pooled context features
    #   (the paper has none). On CPU budgets the EMA alone keeps the targets from collapsing but
    #   lets them shrink to a few directions (RankMe ~4 of 64): k-NN on shapes 0.17 -> 0.17-0.23
    #   after 750 steps; KoLeo keeps them spread: 0.17 -> 0.26-0.30 (docs/architecture.md)
    reg_weight: float = 0.3  # weight of that regulariser (on the earlier saturated shapes KoLeo 0.1 gained
    #   1 point of k-NN, 1.0 no more than 0.3)


@dataclass(frozen=True)
class Run:
    method: str = "dino"  # dino | mae | ijepa
    name: str = ""  # run id; "" = <method>-<data>-<timestamp>
    group: str = ""  # ablation group this run belongs to ("" = none)
    study: str = ""  # the study (trainer.studies) that planned this run ("" = none)
    arm: str = ""  # the study's arm this run trains ("" = none); its seed is run.seed
    runs_dir: str = "runs"  # run store root (env SSLSCOPE_RUNS overrides the default)
    seed: int = 0  # seeds data generation, init, crops and masks
    device: str = "auto"  # auto | cpu | cuda
    log_every: int = 10  # steps between scalar logs
    eval_every: int = 100  # steps between k-NN evaluations and probe snapshots
    ckpt_every: int = 100  # steps between checkpoints (the last step always gets one)
    keep_ckpts: int = 3  # checkpoints kept besides the last (0 = keep all)
    knn_k: int = 20  # neighbours in the online weighted k-NN
    knn_temp: float = 0.07  # temperature of the k-NN vote weights
    probe_size: int = 8  # images in the fixed probe batch


@dataclass(frozen=True)
class Config:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    optim: Optim = field(default_factory=Optim)
    dino: Dino = field(default_factory=Dino)
    mae: Mae = field(default_factory=Mae)
    ijepa: Ijepa = field(default_factory=Ijepa)
    run: Run = field(default_factory=Run)

    # --- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Build from nested dicts; unknown sections or fields are refused with a clear error."""
        cfg = cls()
        for section, values in d.items():
            if section not in _SECTIONS:
                raise ConfigError(f"unknown config section '{section}'; allowed: {', '.join(_SECTIONS)}")
            if not isinstance(values, dict):
                raise ConfigError(f"config section '{section}' must be a mapping, got {values!r}")
            for name, value in values.items():
                cfg = cfg.set(f"{section}.{name}", value)
        return cfg

    def set(self, key: str, value: Any) -> Config:
        """Return a copy with ``section.field`` set; strings are parsed to the field's type."""
        if key.count(".") != 1:
            raise ConfigError(f"config key '{key}' must look like section.field, e.g. optim.lr")
        section, name = key.split(".")
        if section not in _SECTIONS:
            raise ConfigError(f"unknown config section '{section}' in '{key}'; allowed: {', '.join(_SECTIONS)}")
        sub = getattr(self, section)
        types = {f.name: f.type for f in fields(sub)}
        if name not in types:
            raise ConfigError(f"unknown field '{key}'; {section} has: {', '.join(types)}")
        parsed = _parse(key, value, _field_type(type(sub), name))
        return replace(self, **{section: replace(sub, **{name: parsed})})

    def with_overrides(self, overrides: list[str]) -> Config:
        """Apply CLI ``--set section.field=value`` strings in order."""
        cfg = self
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"--set '{item}' needs the form section.field=value, e.g. optim.lr=5e-4")
            key, value = item.split("=", 1)
            cfg = cfg.set(key.strip(), value.strip())
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> Config:
        """Read a YAML or JSON file of nested sections (a whole run.json also works)."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file '{p}' does not exist; give a YAML or JSON file of sections")
        text = p.read_text()
        try:
            if p.suffix in (".yaml", ".yml"):
                import yaml

                d = yaml.safe_load(text) or {}
            else:
                d = json.loads(text)
        except Exception as e:  # noqa: BLE001 - any parse error becomes one clear line
            raise ConfigError(f"config file '{p}' could not be parsed: {e}") from None
        if isinstance(d, dict) and "config" in d and isinstance(d["config"], dict):
            d = d["config"]  # a run.json
        if not isinstance(d, dict):
            raise ConfigError(f"config file '{p}' must hold a mapping of sections (data, model, ...)")
        return cls.from_dict(d)

    # --- validation ------------------------------------------------------------------
    def validate(self) -> Config:
        """Refuse every bad value or combination before any training starts."""
        d, m, o, r = self.data, self.model, self.optim, self.run
        _choice("run.method", r.method, METHODS)
        _choice("data.name", d.name, DATASETS)
        _choice("model.preset", m.preset, PRESETS)
        _choice("run.device", r.device, ("auto", "cpu", "cuda"))
        _choice("dino.centering", self.dino.centering, ("mean", "sinkhorn", "none"))
        _choice("ijepa.loss", self.ijepa.loss, ("smooth_l1", "l2"))
        _choice("ijepa.reg", self.ijepa.reg, ("none", "koleo", "variance"))
        for key, v, lo in [
            ("data.image_size", d.image_size, 8), ("data.batch_size", d.batch_size, 2),
            ("data.num_val", d.num_val, 0), ("data.num_train", d.num_train, 0),
            ("data.num_workers", d.num_workers, 0), ("model.patch_size", m.patch_size, 1),
            ("model.embed_dim", m.embed_dim, 8), ("model.depth", m.depth, 1),
            ("model.num_heads", m.num_heads, 1), ("model.reg_tokens", m.reg_tokens, 0),
            ("optim.steps", o.steps, 1), ("optim.warmup_steps", o.warmup_steps, 0),
            ("dino.out_dim", self.dino.out_dim, 2), ("dino.hidden_dim", self.dino.hidden_dim, 8),
            ("dino.bottleneck_dim", self.dino.bottleneck_dim, 4), ("dino.n_local", self.dino.n_local, 0),
            ("dino.teacher_temp_warmup_steps", self.dino.teacher_temp_warmup_steps, 0),
            ("dino.freeze_last_layer_steps", self.dino.freeze_last_layer_steps, 0),
            ("dino.sinkhorn_iters", self.dino.sinkhorn_iters, 1), ("dino.ibot_out_dim", self.dino.ibot_out_dim, 0),
            ("dino.gram_teacher_step", self.dino.gram_teacher_step, 0), ("dino.gram_start", self.dino.gram_start, 0),
            ("dino.gram_ramp_steps", self.dino.gram_ramp_steps, 0),
            ("dino.gram_refresh_every", self.dino.gram_refresh_every, 0),
            ("dino.gram_max_refreshes", self.dino.gram_max_refreshes, 0),
            ("mae.decoder_dim", self.mae.decoder_dim, 8), ("mae.decoder_depth", self.mae.decoder_depth, 1),
            ("mae.decoder_heads", self.mae.decoder_heads, 1), ("ijepa.pred_dim", self.ijepa.pred_dim, 8),
            ("ijepa.pred_depth", self.ijepa.pred_depth, 1), ("ijepa.num_targets", self.ijepa.num_targets, 1),
            ("ijepa.min_context", self.ijepa.min_context, 1), ("run.log_every", r.log_every, 1),
            ("run.eval_every", r.eval_every, 1), ("run.ckpt_every", r.ckpt_every, 1),
            ("run.keep_ckpts", r.keep_ckpts, 0), ("run.knn_k", r.knn_k, 1), ("run.probe_size", r.probe_size, 1),
        ]:
            if v < lo:
                raise ConfigError(f"{key}={v} is too small; it must be >= {lo}")
            if v > _MAX.get(key, _MAX_INT):
                raise ConfigError(f"{key}={v} is too large; it must be <= {_MAX.get(key, _MAX_INT)}")
        if not 0 <= r.seed <= _MAX_INT:
            raise ConfigError(f"run.seed={r.seed} is out of range; it must lie in [0, {_MAX_INT}]")
        if d.name == "shapes" and (d.num_train + d.num_val) * d.image_size ** 2 * 3 > MAX_DATASET_BYTES:
            need = (d.num_train + d.num_val) * d.image_size ** 2 * 3 / 2**30
            raise ConfigError(f"data.num_train + data.num_val = {d.num_train + d.num_val} shapes of {d.image_size} px "
                              f"would need {need:.0f} GB of memory (at most {MAX_DATASET_BYTES >> 30} GB); "
                              "lower data.num_train or data.image_size")
        # (key, value, low, high, closed) -- closed: the high end is allowed
        for key, v, lo, hi, closed in [
            ("mae.mask_ratio", self.mae.mask_ratio, 0.0, 1.0, False),
            ("dino.momentum_teacher", self.dino.momentum_teacher, 0.0, 1.0, True),
            ("ijepa.momentum", self.ijepa.momentum, 0.0, 1.0, True),
            ("dino.global_scale_min", self.dino.global_scale_min, 0.0, 1.0, True),
            ("dino.local_scale_min", self.dino.local_scale_min, 0.0, 1.0, True),
            ("dino.local_scale_max", self.dino.local_scale_max, 0.0, 1.0, True),
            ("dino.local_size_ratio", self.dino.local_size_ratio, 0.0, 1.0, True),
            ("optim.beta1", o.beta1, 0.0, 1.0, False), ("optim.beta2", o.beta2, 0.0, 1.0, False),
        ]:
            if not (lo < v < hi or (closed and v == hi)):
                end = "]" if closed else ")"
                raise ConfigError(f"{key}={v} is out of range; it must lie in ({lo}, {hi}{end}")
        dn = self.dino
        for key, v, lo, hi in [
            ("dino.jitter_p", dn.jitter_p, 0.0, 1.0), ("dino.grayscale_p", dn.grayscale_p, 0.0, 1.0),
            # 0: the centre is each batch's mean (the centre-momentum study's first arm)
            ("dino.center_momentum", dn.center_momentum, 0.0, 1.0),
            ("dino.brightness_jitter", dn.brightness_jitter, 0.0, 1.0),
            ("dino.contrast_jitter", dn.contrast_jitter, 0.0, 1.0),
            ("dino.saturation_jitter", dn.saturation_jitter, 0.0, 1.0), ("dino.hue_jitter", dn.hue_jitter, 0.0, 0.5),
            ("dino.rotation", dn.rotation, 0.0, 180.0),
            ("dino.ibot_mask_probability", dn.ibot_mask_probability, 0.0, 1.0),
            ("dino.ibot_mask_ratio_min", dn.ibot_mask_ratio_min, 0.0, 1.0),
            ("dino.ibot_mask_ratio_max", dn.ibot_mask_ratio_max, 0.0, 1.0),
        ]:
            if not lo <= v <= hi:
                raise ConfigError(f"{key}={v} is out of range; it must lie in [{lo}, {hi}]")
        for key, v in [
            ("optim.lr", o.lr), ("dino.student_temp", self.dino.student_temp),
            ("dino.teacher_temp", self.dino.teacher_temp), ("dino.warmup_teacher_temp", self.dino.warmup_teacher_temp),
            ("run.knn_temp", r.knn_temp),
        ]:
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"{key}={v} must be a positive finite number")
        for key, v in [("optim.min_lr", o.min_lr), ("optim.weight_decay", o.weight_decay),
                       ("optim.weight_decay_end", o.weight_decay_end), ("optim.clip_grad", o.clip_grad),
                       ("model.drop_path_rate", m.drop_path_rate), ("dino.koleo_weight", self.dino.koleo_weight),
                       ("ijepa.reg_weight", self.ijepa.reg_weight), ("dino.ibot_weight", self.dino.ibot_weight),
                       ("dino.gram_weight", self.dino.gram_weight)]:
            if not (v >= 0 and math.isfinite(v)):
                raise ConfigError(f"{key}={v} must be zero or a positive finite number")
        if o.warmup_steps > o.steps:
            raise ConfigError(f"optim.warmup_steps={o.warmup_steps} exceeds optim.steps={o.steps}; lower it")
        if m.preset in ("custom", "dinov3-custom") and m.embed_dim % m.num_heads:
            raise ConfigError(f"model.embed_dim={m.embed_dim} must be divisible by model.num_heads={m.num_heads}")
        if is_dinov3(m) and (preset_shape(m)[1] // preset_shape(m)[3]) % 4:
            raise ConfigError(f"model.preset={m.preset} needs a head width (embed_dim / num_heads = "
                              f"{preset_shape(m)[1] // preset_shape(m)[3]}) divisible by 4: RoPE rotates pairs of "
                              "channels along both image axes")
        self._validate_dinov2_v3()
        patch = preset_patch_size(m)
        if d.image_size % patch:
            raise ConfigError(f"data.image_size={d.image_size} must be a multiple of the patch size {patch} "
                              f"(model.patch_size, or model.preset={m.preset}'s)")
        local = local_crop_size(self)
        if r.method == "dino" and self.dino.n_local and local < patch:
            raise ConfigError(f"local crops of {local} px are smaller than one {patch} px patch; "
                              "raise dino.local_size_ratio or data.image_size")
        for lo_key, hi_key in [("target_scale_min", "target_scale_max"), ("target_aspect_min", "target_aspect_max"),
                               ("context_scale_min", "context_scale_max")]:
            lo_v, hi_v = getattr(self.ijepa, lo_key), getattr(self.ijepa, hi_key)
            if not 0 < lo_v <= hi_v:
                raise ConfigError(f"ijepa.{lo_key}={lo_v} and ijepa.{hi_key}={hi_v} need 0 < min <= max")
        if self.ijepa.context_scale_max > 1 or self.ijepa.target_scale_max >= 1:
            raise ConfigError(f"ijepa.context_scale_max={self.ijepa.context_scale_max} and ijepa.target_scale_max="
                              f"{self.ijepa.target_scale_max} are fractions of the image: context <= 1, targets < 1")
        if self.mae.decoder_dim % self.mae.decoder_heads or self.mae.decoder_dim % 4:
            raise ConfigError(f"mae.decoder_dim={self.mae.decoder_dim} must be divisible by mae.decoder_heads="
                              f"{self.mae.decoder_heads} and by 4 (2-D sin-cos positions)")
        if self.ijepa.pred_dim % 4 or self.ijepa.pred_dim % preset_shape(m)[3]:
            raise ConfigError(f"ijepa.pred_dim={self.ijepa.pred_dim} must be divisible by 4 (2-D sin-cos positions) "
                              f"and by the encoder's {preset_shape(m)[3]} heads")
        if self.dino.local_scale_min > self.dino.local_scale_max:
            raise ConfigError(f"dino.local_scale_min={self.dino.local_scale_min} exceeds "
                              f"dino.local_scale_max={self.dino.local_scale_max}")
        if d.name == "folder" and not d.path:
            raise ConfigError("data.name=folder needs data.path, e.g. --data folder --data-path ~/pictures")
        for key, v in [(f"{sec.name}.{f.name}", getattr(getattr(self, sec.name), f.name))
                       for sec in fields(self) for f in fields(getattr(self, sec.name))]:
            if isinstance(v, str) and ("\0" in v or len(v) > MAX_TEXT):
                raise ConfigError(f"{key} is {len(v)} characters long or holds a NUL byte; "
                                  f"give at most {MAX_TEXT} characters of text")
        for key, v in [("run.name", r.name), ("run.group", r.group), ("run.study", r.study), ("run.arm", r.arm)]:
            if len(v) > MAX_NAME:
                raise ConfigError(f"{key} is {len(v)} characters long; at most {MAX_NAME} are allowed "
                                  "(it names a folder)")
        if r.name and not _safe_name(r.name):
            raise ConfigError(f"run.name='{r.name}' may use letters, digits, '-', '_' and '.' only")
        if r.group and not _safe_name(r.group):
            raise ConfigError(f"run.group='{r.group}' may use letters, digits, '-', '_' and '.' only")
        return self


    def _validate_dinov2_v3(self) -> None:
        """The iBOT and Gram-anchoring fields (only when they are switched on)."""
        dn, patch = self.dino, preset_patch_size(self.model)
        if dn.ibot_mask_ratio_min > dn.ibot_mask_ratio_max:
            raise ConfigError(f"dino.ibot_mask_ratio_min={dn.ibot_mask_ratio_min} exceeds "
                              f"dino.ibot_mask_ratio_max={dn.ibot_mask_ratio_max}")
        if self.run.method != "dino":
            return
        if dn.ibot_weight > 0 and not (dn.ibot_mask_probability > 0 and dn.ibot_mask_ratio_max > 0):
            raise ConfigError(f"dino.ibot_weight={dn.ibot_weight} needs masked patches: raise "
                              "dino.ibot_mask_probability and dino.ibot_mask_ratio_max above 0 (DINOv2: 0.5, 0.5)")
        if dn.gram_weight <= 0:
            return
        if not (dn.gram_teacher_scale > 0 and math.isfinite(dn.gram_teacher_scale)):
            raise ConfigError(f"dino.gram_teacher_scale={dn.gram_teacher_scale} must be a positive finite number")
        size = gram_teacher_size(self)
        if size < patch or size % patch or size > _MAX["data.image_size"]:
            px = self.data.image_size * dn.gram_teacher_scale
            raise ConfigError(f"dino.gram_teacher_scale={dn.gram_teacher_scale} gives {self.data.image_size} x "
                              f"{dn.gram_teacher_scale} = {px:g} px Gram-teacher crops; they must be a whole "
                              f"multiple of the {patch} px patch (e.g. 1 or 2)")
        if dn.gram_teacher_step > dn.gram_start:
            raise ConfigError(f"dino.gram_teacher_step={dn.gram_teacher_step} is after dino.gram_start="
                              f"{dn.gram_start}; the Gram teacher must exist when the Gram loss starts")
        if dn.gram_start >= self.optim.steps:
            raise ConfigError(f"dino.gram_start={dn.gram_start} is not before optim.steps={self.optim.steps}: the "
                              "Gram loss would never act; lower dino.gram_start or set dino.gram_weight=0")


_SECTIONS = tuple(f.name for f in fields(Config))

# Upper limits: far above any sensible value, low enough that nothing overflows or tries to
# allocate terabytes before the first step (a step count sizes the per-step schedule arrays).
_MAX_INT = 2**63 - 1
MAX_STEPS = 10_000_000  # 80 MB per float64 schedule array
MAX_DATASET_BYTES = 16 << 30  # generated images held in memory
MAX_NAME = 100  # run and group names are folder names (most file systems allow 255 bytes)
MAX_TEXT = 4096  # any other text field (paths)
_MAX = {
    "data.image_size": 4096, "data.batch_size": 1 << 16, "data.num_workers": 256, "data.num_train": 1 << 31,
    "data.num_val": 1 << 31, "model.patch_size": 4096, "model.embed_dim": 1 << 14, "model.depth": 1024,
    "model.num_heads": 1024, "model.reg_tokens": 1024, "optim.steps": MAX_STEPS, "optim.warmup_steps": MAX_STEPS,
    "dino.out_dim": 1 << 20, "dino.hidden_dim": 1 << 16, "dino.bottleneck_dim": 1 << 14, "dino.n_local": 64,
    "dino.teacher_temp_warmup_steps": MAX_STEPS, "dino.freeze_last_layer_steps": MAX_STEPS,
    "dino.sinkhorn_iters": 10_000, "dino.ibot_out_dim": 1 << 20, "dino.gram_teacher_step": MAX_STEPS,
    "dino.gram_start": MAX_STEPS, "dino.gram_ramp_steps": MAX_STEPS, "dino.gram_refresh_every": MAX_STEPS,
    "dino.gram_max_refreshes": MAX_STEPS, "mae.decoder_dim": 1 << 14, "mae.decoder_depth": 1024,
    "mae.decoder_heads": 1024, "ijepa.pred_dim": 1 << 14, "ijepa.pred_depth": 1024, "ijepa.num_targets": 256,
    "ijepa.min_context": 1 << 24, "run.knn_k": 1 << 20, "run.probe_size": 4096,
}

# (patch, width, depth, heads) per preset; "custom" and "dinov3-custom" read the Model fields.
_PRESET_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "cpu-tiny": (4, 64, 4, 4),  # ~1 GFLOP per image per DINO step: 300 steps in ~3 min on 2 cores
    "cpu-small": (4, 128, 6, 4),  # ~5x the cost; for a longer run on a laptop
    "vit-tiny": (16, 192, 12, 3),
    "vit-small": (16, 384, 12, 6),
    "vit-base": (16, 768, 12, 12),
    "dinov3-cpu-tiny": (4, 64, 4, 4),
    "dinov3-cpu-small": (4, 128, 6, 4),
    "dinov3-small": (16, 384, 12, 6),  # = timm's vit_small_patch16_dinov3
    "dinov3-base": (16, 768, 12, 12),  # = timm's vit_base_patch16_dinov3
}


def preset_shape(m: Model) -> tuple[int, int, int, int]:
    """(patch_size, embed_dim, depth, num_heads) of a model config."""
    return _PRESET_SHAPES.get(m.preset, (m.patch_size, m.embed_dim, m.depth, m.num_heads))


def is_dinov3(m: Model) -> bool:
    """True for the presets built from timm's DINOv3 ViT (RoPE, storage tokens, layer scale)."""
    return m.preset.startswith("dinov3-")


def prefix_tokens(m: Model) -> int:
    """Registers (storage tokens) the backbone gets: ``model.reg_tokens``; 0 on a DINOv3 preset
    means DINOv3's 4."""
    return m.reg_tokens or (DINOV3_STORAGE_TOKENS if is_dinov3(m) else 0)


def preset_patch_size(m: Model) -> int:
    return preset_shape(m)[0]


def local_crop_size(cfg: Config) -> int:
    """Local crop side in pixels: a multiple of the patch size, at least one patch."""
    patch = preset_patch_size(cfg.model)
    raw = cfg.data.image_size * cfg.dino.local_size_ratio
    return max(patch, int(round(raw / patch)) * patch)


def gram_teacher_size(cfg: Config) -> int:
    """Side in pixels of the global crops the Gram teacher sees (``dino.gram_teacher_scale``)."""
    return int(round(cfg.data.image_size * cfg.dino.gram_teacher_scale))


def _safe_name(s: str) -> bool:
    return all(c.isalnum() or c in "-_." for c in s) and not s.startswith(".")


def _choice(key: str, v: str, allowed: tuple[str, ...]) -> None:
    if v not in allowed:
        raise ConfigError(f"{key}='{v}' is not allowed; choose one of: {', '.join(allowed)}")


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _parse(key: str, value: Any, typ: Any) -> Any:
    """Coerce a CLI string or a JSON/YAML value to the field's declared type."""
    if typing.get_origin(typ) is Literal:
        typ = type(typing.get_args(typ)[0])
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if typ is str:
            if not isinstance(value, (str, int, float)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int("1e400") = int(inf)
        pass
    else:
        return value
    kind = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(typ, str(typ))
    raise ConfigError(f"{key}={value!r} is not valid; it must be {kind}")
