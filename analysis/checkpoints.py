"""Load the weights files users already hold into a timm ``VisionTransformer``.

Layouts understood (the backbone is found wherever ``patch_embed.proj.weight`` lives):

- official DINO backbone files (``dino_deitsmall16_pretrain.pth``: plain ViT keys) and full
  DINO training checkpoints (``teacher`` / ``student`` dicts, ``module.`` and ``backbone.``
  prefixes, a pickled ``argparse.Namespace`` of the run's arguments);
- DINOv2 release and training checkpoints (LayerScale ``ls1.gamma``, ``register_tokens``,
  ``mask_token``, chunked blocks ``blocks.<chunk>.<i>.``, ``teacher.backbone.``);
- DINOv3 release and training checkpoints in Meta's layout (``storage_tokens``,
  ``rope_embed.periods``, ``ls1.gamma``, ``attn.qkv.bias`` with its ``bias_mask``,
  ``mask_token``), built as timm's DINOv3 ViT (an ``Eva``: RoPE, storage tokens, layer scale)
  with the shape read from the weights, the head count from the RoPE periods;
- MAE (``model`` dict, encoder only or with the ``decoder_*`` weights of models_mae.py, which
  are kept aside in ``LoadedBackbone.decoder`` for ``analysis.mae_file``);
- I-JEPA (``encoder``, ``target_encoder``, ``predictor`` dicts with ``module.`` prefixes; no
  [CLS] token, so features are pooled patch tokens);
- SSLScope's own checkpoints (the JSON sidecar names the backbone's prefix);
- any timm ViT model name with a local weights file.

The head count, which no weight shows, comes from ``analysis.vit_sizes`` (the file's training
arguments, a timm model name, the table of official sizes; else a guess the page warns about).

The conversions timm already knows (DINOv2 registers to ``no_embed_class``, position
resampling, LayerScale ``gamma_`` names; DINOv3's storage tokens, LayerScale and split q / v
biases) are left to timm's ``checkpoint_filter_fn`` (``vision_transformer``'s or ``eva``'s);
this module only unwraps the containers, strips prefixes, un-chunks blocks, applies DINOv3's
bias mask and infers the shape.

Files are read with safetensors or ``torch.load(weights_only=True)``; a pickle that needs
anything more (it could run code when loaded) is refused with a message saying how to convert.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from timm.models.eva import Eva
from timm.models.eva import checkpoint_filter_fn as eva_filter
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from analysis.vit_sizes import HeadCount, file_model_names, head_count
from core.vit import ViT

PATCH_KEY = "patch_embed.proj.weight"
# Training checkpoints of DINO and MAE pickle their argparse arguments: a plain attribute bag,
# safe to allow in the weights-only unpickler.
_SAFE_GLOBALS = [argparse.Namespace]
# models_mae.py's decoder, kept for reconstructions (decoder_pos_embed: its fixed sin-cos positions)
DECODER_PREFIXES = ("decoder_embed.", "decoder_blocks.", "decoder_norm.", "decoder_pred.", "decoder_pos_embed")
# Preference when a file holds several backbones: what DESIGN.md analyses by default.
_PART_ORDER = ("teacher", "target_encoder", "model", "encoder", "", "student")


class CheckpointError(ValueError):
    """A weights file that cannot be loaded; the message names the problem and the fix."""


def _convert_hint(p: Path) -> str:
    return (f"if you trust the file, convert it once: python -c \"import torch; from safetensors.torch import "
            f"save_file; sd = torch.load('{p}', weights_only=False); sd = sd.get('model', sd); "
            f"save_file({{k: v.contiguous() for k, v in sd.items() if hasattr(v, 'contiguous')}}, "
            f"'{p.with_suffix('.safetensors')}')\" and pass the .safetensors file")


def read_weights(path: Path | str) -> dict[str, Any]:
    """The raw contents of a weights file (nested dicts allowed), read safely."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weights file '{p}' does not exist")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(p)))
        except Exception as e:  # noqa: BLE001 - safetensors raises several types on bad files
            raise CheckpointError(f"'{p}' is not a readable safetensors file ({str(e)[:120]}); "
                                  "re-download it") from None
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        what = re.search(r"GLOBAL ([\w.]+)", str(e))
        if what is None:  # junk bytes also raise UnpicklingError, without naming a global
            raise CheckpointError(f"'{p}' is not a readable PyTorch or safetensors checkpoint (corrupt pickle); "
                                  "check the download") from None
        needs = f"it references {what.group(1)}"
        raise CheckpointError(f"'{p}' was refused: {needs}, and unpickling it could run arbitrary code; "
                              + _convert_hint(p)) from None
    except Exception as e:  # noqa: BLE001 - zip/EOF/format errors all mean the same to the user
        raise CheckpointError(f"'{p}' is not a readable PyTorch or safetensors checkpoint "
                              f"({type(e).__name__}: {str(e)[:120]}); check the download") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"'{p}' holds a {type(obj).__name__}, not a state dict; save model.state_dict() instead")
    return obj


def flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, torch.Tensor]:
    """Nested dicts of tensors -> one dict with dotted keys; non-tensor entries dropped."""
    out: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            out[prefix + str(k)] = v
        elif isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
    return out


def backbone_prefixes(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Every prefix under which a ViT backbone lives, in preference order (teacher first)."""
    found = [k[: -len(PATCH_KEY)] for k in tensors if k.endswith(PATCH_KEY)]

    def rank(prefix: str) -> int:
        head = prefix.split(".")[0]
        return _PART_ORDER.index(head) if head in _PART_ORDER else len(_PART_ORDER) - 1

    return sorted(found, key=lambda s: (rank(s), len(s)))


def unchunk_blocks(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DINOv2's chunked blocks ``blocks.<chunk>.<i>.`` -> ``blocks.<i>.`` (i is global)."""
    return {re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k): v for k, v in sd.items()}


def _is_square(n: int) -> bool:
    return n > 0 and math.isqrt(n) ** 2 == n


def infer_vit_kwargs(sd: dict[str, torch.Tensor], num_heads: int | None = None) -> dict[str, Any]:
    """timm ``VisionTransformer`` arguments that fit a backbone state dict (before timm's
    filter). Head count cannot be read from weights: ``num_heads``, else
    ``analysis.vit_sizes.head_count`` of the width alone (the official size, else width / 64)."""
    w = sd[PATCH_KEY]
    dim = int(w.shape[0])
    patch = int(w.shape[-1]) if w.ndim == 4 else int(math.isqrt(w.shape[1] // 3))
    block_ids = [int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))]
    if not block_ids:
        raise CheckpointError("the backbone has no transformer blocks ('blocks.<i>.' keys)")
    depth = 1 + max(block_ids)
    class_token = "cls_token" in sd
    regs = sd.get("register_tokens", sd.get("reg_token"))
    reg_tokens = int(regs.shape[1]) if regs is not None else 0
    n_pos = int(sd["pos_embed"].shape[1]) if "pos_embed" in sd else 0
    prefix = int(class_token) + reg_tokens
    if "register_tokens" in sd or _is_square(n_pos):
        no_embed_class, n_patches = True, n_pos  # DINOv2 + registers: timm's filter folds [CLS] positions
        if "register_tokens" in sd:
            n_patches = n_pos - 1
    elif _is_square(n_pos - prefix):
        no_embed_class, n_patches = False, n_pos - prefix
    else:
        raise CheckpointError(f"pos_embed of length {n_pos} fits no square patch grid with {prefix} prefix tokens")
    heads = num_heads or head_count(dim).heads
    if dim % heads:
        raise CheckpointError(f"width {dim} is not divisible by {heads} heads; give a head count that divides it")
    fc1 = sd.get("blocks.0.mlp.fc1.weight")
    if fc1 is None:
        raise CheckpointError("blocks use an MLP other than fc1/fc2 (e.g. SwiGLU); load it with its timm model "
                              "name (model_name=...) instead")
    return dict(img_size=math.isqrt(n_patches) * patch, patch_size=patch, embed_dim=dim, depth=depth,
                num_heads=heads, mlp_ratio=fc1.shape[0] / dim, qkv_bias="blocks.0.attn.qkv.bias" in sd,
                class_token=class_token, reg_tokens=reg_tokens, no_embed_class=no_embed_class,
                global_pool="token" if class_token else "avg", fc_norm=False,  # keep the final norm (I-JEPA)
                init_values=1e-5 if any(".ls1." in k or ".gamma_1" in k for k in sd) else None,
                num_classes=0, dynamic_img_size=True)


DINOV3_MODEL = "vit_small_patch16_dinov3"  # timm's DINOv3 ViT: the parts; the weights give the shape


def is_dinov3(sd: dict[str, torch.Tensor]) -> bool:
    """A backbone in Meta's DINOv3 layout (storage tokens or RoPE periods)."""
    return "storage_tokens" in sd or "rope_embed.periods" in sd


def dinov3_qkv_biases(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """DINOv3's ``attn.qkv.bias`` times its ``bias_mask`` (the K third masked to 0), and whether
    any q / v bias is left: the released ViT-S/B/L carry all-zero effective biases, which timm
    builds without bias parameters. A K bias that is not 0 has no place in timm's model."""
    out = dict(sd)
    any_bias = False
    for k in [k for k in sd if k.endswith("attn.qkv.bias")]:
        bias = sd[k].float()
        mask = sd.get(k + "_mask")
        if mask is not None and torch.isfinite(mask).all():
            bias = bias * mask.float()
        else:  # an uninitialised mask (NaN): DINOv3 masks the K third
            bias = bias.clone()
            bias[bias.shape[0] // 3: 2 * bias.shape[0] // 3] = 0
        q, kb, v = bias.chunk(3)
        if kb.abs().max() > 0:
            raise CheckpointError(f"'{k}' has a non-zero key bias, which timm's DINOv3 model cannot hold")
        out[k] = bias.to(sd[k].dtype)
        out.pop(k + "_mask", None)
        any_bias |= bool(q.abs().max() > 0 or v.abs().max() > 0)
    if not any_bias:
        out = {k: v for k, v in out.items() if not k.endswith("attn.qkv.bias")}
    return out, any_bias


def dinov3_head_count(sd: dict[str, torch.Tensor], names: list[str] = (), num_heads: int | None = None) -> HeadCount:
    """The head count of a DINOv3 backbone: the caller's, else read from the RoPE periods (head
    width / 4 of them, so it is known, not guessed), else ``analysis.vit_sizes.head_count``."""
    periods = sd.get("rope_embed.periods")
    dim = int(sd[PATCH_KEY].shape[0])
    if not num_heads and periods is not None and periods.numel() and dim % (4 * int(periods.numel())) == 0:
        return HeadCount(dim // (4 * int(periods.numel())), f"the file's RoPE periods ({periods.numel()} per head)",
                         True)
    return head_count(dim, names, num_heads)


def infer_dinov3_kwargs(sd: dict[str, torch.Tensor], num_heads: int | None = None,
                        qkv_bias: bool = False) -> dict[str, Any]:
    """Arguments to timm's DINOv3 ViT that fit a state dict in Meta's layout. The head count
    is read from the RoPE periods (head width / 4 of them) when present."""
    w = sd[PATCH_KEY]
    dim, patch = int(w.shape[0]), int(w.shape[-1])
    block_ids = [int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))]
    if not block_ids:
        raise CheckpointError("the backbone has no transformer blocks ('blocks.<i>.' keys)")
    if "cls_norm.weight" in sd:
        raise CheckpointError("this DINOv3 backbone unties the [CLS] and patch norms (ViT-7B); load it with its "
                              "timm model name (model_name=vit_7b_patch16_dinov3)")
    periods = sd.get("rope_embed.periods")
    heads = num_heads or (dim // (4 * int(periods.numel())) if periods is not None else max(1, dim // 64))
    if dim % heads or (dim // heads) % 4:
        raise CheckpointError(f"width {dim} does not split into {heads} heads of a width divisible by 4; "
                              "pass num_heads")
    storage = sd.get("storage_tokens")
    swiglu = "blocks.0.mlp.w1.weight" in sd
    hidden = sd["blocks.0.mlp.w1.weight" if swiglu else "blocks.0.mlp.fc1.weight"].shape[0]
    kwargs: dict[str, Any] = dict(
        img_size=14 * patch, patch_size=patch, embed_dim=dim, depth=1 + max(block_ids), num_heads=heads,
        num_reg_tokens=int(storage.shape[1]) if storage is not None else 0, qkv_bias=qkv_bias,
        mlp_ratio=hidden / dim, init_values=1e-5 if "blocks.0.ls1.gamma" in sd else None, num_classes=0,
        global_pool="token", dynamic_img_size=True)
    if swiglu:  # ViT-S+/H+: SwiGLU with hidden widths aligned to 8, as timm builds them
        kwargs.update(swiglu_mlp=True, swiglu_align_to=8)
    return kwargs


@dataclass
class LoadedBackbone:
    """A backbone loaded from a file and where it came from."""

    vit: ViT  # eval mode, CPU: a timm VisionTransformer, or timm's DINOv3 ViT (Eva)
    source: str  # the file
    layout: str  # dino | dino-train | dinov2 | dinov3 | mae | ijepa | sslscope | timm | plain
    prefix: str  # where in the file the backbone was found ("" = top level)
    parts: list[str] = field(default_factory=list)  # every backbone prefix in the file (for ``part=``)
    ignored: list[str] = field(default_factory=list)  # weights not loaded (heads, decoders, predictors)
    heads: HeadCount | None = None  # the head count built and where it came from
    decoder: dict[str, torch.Tensor] = field(default_factory=dict)  # MAE decoder + mask_token, prefix stripped
    args: dict[str, Any] = field(default_factory=dict)  # the file's pickled training arguments, if any


def _layout(flat: dict[str, torch.Tensor], prefix: str, model_name: str | None) -> str:
    keys = flat.keys()
    if model_name:
        return "timm"
    if any(k.startswith(prefix) and ("storage_tokens" in k or "rope_embed.periods" in k) for k in keys):
        return "dinov3"
    if any(k.startswith(prefix) and (".ls1." in k or "register_tokens" in k) for k in keys):
        return "dinov2"
    if any("decoder_embed" in k for k in keys):
        return "mae"
    if any(k.startswith(("target_encoder.", "predictor.")) for k in keys):
        return "ijepa"
    if any(k.startswith(("teacher.", "student.")) for k in keys):
        return "dino-train"
    return "plain"


def _own_checkpoint(p: Path) -> LoadedBackbone | None:
    """SSLScope's checkpoints/step_N.safetensors: the run's config gives the exact backbone."""
    side = p.with_suffix(".json")
    run_dir = p.parent.parent
    if p.suffix != ".safetensors" or not side.is_file() or not (run_dir / "run.json").is_file():
        return None
    from trainer.loading import load_encoder

    try:
        step = int(json.loads(side.read_text())["step"])
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    vit, _, ck = load_encoder(run_dir, step)
    heads = HeadCount(int(vit.blocks[0].attn.num_heads), "the run's config", True)
    return LoadedBackbone(vit, str(p), "sslscope", ck.meta.get("encoder_prefix", ""), heads=heads)


def load_backbone(path: Path | str, part: str | None = None, model_name: str | None = None,
                  num_heads: int | None = None) -> LoadedBackbone:
    """A timm ViT (eval, CPU) with the backbone weights of ``path``.

    ``part``: which backbone of a multi-model file (``teacher``, ``student``, ``encoder``,
    ``target_encoder``...; default: teacher, then target encoder, then the only one).
    ``model_name``: a timm model name to build instead of inferring the shape from the weights.
    ``num_heads``: attention heads when inferring (default: ``analysis.vit_sizes.head_count``).
    """
    p = Path(path)
    if part is None and model_name is None and (own := _own_checkpoint(p)) is not None:
        return own
    raw = read_weights(p)
    args = raw.get("args")
    args = dict(vars(args)) if isinstance(args, argparse.Namespace) else args if isinstance(args, dict) else {}
    flat = flatten(raw)
    parts = backbone_prefixes(flat)
    if not parts:
        raise CheckpointError(f"'{p}' holds no ViT backbone (no '{PATCH_KEY}' among its {len(flat)} tensors)")
    if part is None:
        prefix = parts[0]
    else:
        matches = [s for s in parts if s.split(".")[0] == part or s.rstrip(".") == part.rstrip(".")]
        if not matches:
            raise CheckpointError(f"part '{part}' is not in '{p}'; it has backbones under: "
                                  + ", ".join(repr(s.split(".")[0] or "(top level)") for s in parts))
        prefix = matches[0]
    sd = unchunk_blocks({k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)})
    ignored = [k for k in flat if not k.startswith(prefix)]
    # MAE's decoder (and its mask token), classifier heads: not part of the backbone
    drop = [k for k in sd if k.startswith(("decoder_", "head.", "fc_norm.", "predictor"))]
    if any(k.startswith("decoder_") for k in drop) and "mask_token" in sd:
        drop.append("mask_token")
    ignored += [prefix + k for k in drop]
    decoder = {k: v for k, v in sd.items() if k in drop and (k.startswith(DECODER_PREFIXES) or k == "mask_token")}
    sd = {k: v for k, v in sd.items() if k not in drop}
    dinov3 = is_dinov3(sd)
    qkv_bias = False
    if dinov3:
        sd, qkv_bias = dinov3_qkv_biases(sd)
    if model_name:
        import timm

        extra = {"global_pool": "token"} if "dinov3" in model_name else {}  # upstream pools [CLS]
        try:
            vit = timm.create_model(model_name, pretrained=False, num_classes=0, dynamic_img_size=True, **extra)
        except RuntimeError as e:
            raise CheckpointError(f"timm has no model '{model_name}' ({e}); see timm.list_models('vit*')") from None
        if not isinstance(vit, (VisionTransformer, Eva)):
            raise CheckpointError(f"'{model_name}' builds a {type(vit).__name__}; analysis needs a timm "
                                  "VisionTransformer or a DINOv3 ViT")
        heads = HeadCount(int(vit.blocks[0].attn.num_heads), f"the timm model {model_name}", True)
    elif dinov3:
        import timm

        heads = dinov3_head_count(sd, file_model_names(p, args), num_heads)
        vit = timm.create_model(DINOV3_MODEL, pretrained=False, **infer_dinov3_kwargs(sd, heads.heads, qkv_bias))
    else:
        heads = head_count(int(sd[PATCH_KEY].shape[0]), file_model_names(p, args), num_heads)
        vit = VisionTransformer(**infer_vit_kwargs(sd, heads.heads))
    if isinstance(vit, Eva):
        sd = eva_filter(sd, vit)
    else:
        sd = checkpoint_filter_fn(sd, vit, adapt_layer_scale=True)
    missing, unexpected = vit.load_state_dict(sd, strict=False)
    if missing or unexpected:
        built = f"timm model {model_name}" if model_name else "inferred ViT"
        raise CheckpointError(f"'{p}' (backbone under '{prefix}') does not fit the {built}: "
                              f"missing {missing[:3]}, unexpected {unexpected[:3]}; try model_name= or num_heads=")
    return LoadedBackbone(vit.eval(), str(p), _layout(flat, prefix, model_name), prefix, parts, ignored, heads,
                          decoder, args)
