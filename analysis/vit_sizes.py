"""How many attention heads the ViT in a weights file has, when its weights cannot say.

A block's ``qkv`` weight is (3 D, D) whatever the split into heads, yet the split changes every
output: I-JEPA's ViT-g/16 (width 1408, 16 heads) built with width / 64 = 22 heads loads without
a complaint and answers wrongly. So the count is taken, in this order, from

1. the caller (``--num-heads``, the Inspect page's number box);
2. a model the file names: DINO's and MAE's pickled training arguments (``arch`` with
   ``patch_size``, ``model``), a timm model name in the file name (``vit_base_patch16_224.augreg
   _in21k.safetensors``) or in a ``config.json`` beside it (Hugging Face's timm layout); timm
   builds that model on the meta device (no memory, no weights) and its head count is used if
   its width is the file's;
3. the official sizes below, by width;
4. otherwise width / 64 (DeiT's and MAE's rule), flagged as a guess for the page to warn about.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# width -> (heads, the released models of that width); every official ViT/DeiT/DINO/DINOv2/MAE/
# I-JEPA size at patch 8, 14 or 16
OFFICIAL = {
    192: (3, "ViT-Ti/16 (DeiT-Ti, DINO vit_tiny)"),
    384: (6, "ViT-S/8, S/14, S/16 (DINO, DINOv2, DeiT-S)"),
    768: (12, "ViT-B/8, B/14, B/16 (DINO, DINOv2, MAE)"),
    1024: (16, "ViT-L/14, L/16 (DINOv2, MAE)"),
    1280: (16, "ViT-H/14, H/16 (MAE, I-JEPA)"),
    1408: (16, "ViT-g/16 (I-JEPA), ViT-g/14 (timm vit_giant_patch14)"),
    1536: (24, "ViT-g/14 (DINOv2)"),
    1664: (16, "ViT-G/14 (timm vit_gigantic_patch14)"),
}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class HeadCount:
    """Attention heads of a backbone and where the number came from."""

    heads: int
    source: str  # for the page and the CLI, e.g. "the official ViT-L/14, L/16 size (width 1024)"
    known: bool  # False: width / 64, a guess that the page warns about


def file_model_names(path: Path, args: dict[str, Any]) -> list[str]:
    """Model names a weights file carries: training arguments, its name, a config.json beside it."""
    names = []
    arch, patch = args.get("arch"), args.get("patch_size")
    if isinstance(arch, str):  # DINO: arch='vit_small', patch_size=16
        names.append(f"{arch}_patch{patch}" if isinstance(patch, int) and "patch" not in arch else arch)
    model = args.get("model")
    if isinstance(model, str):  # MAE: model='mae_vit_large_patch16'
        names.append(model.removeprefix("mae_"))
    names += [part for part in path.name.split(".") if "_" in part]  # timm: <model>.<tag>.safetensors
    config = path.parent / "config.json"
    if config.is_file():
        try:
            arch = json.loads(config.read_text()).get("architecture")
        except (OSError, ValueError, AttributeError):
            arch = None
        if isinstance(arch, str):
            names.append(arch)
    return [n.lower() for n in names if _NAME.match(n.lower())]


def _timm_heads(name: str, dim: int) -> tuple[str, int] | None:
    """(timm model, heads) for ``name`` or the first timm model that starts with it, if it is a
    VisionTransformer of width ``dim``."""
    import timm
    from timm.models.vision_transformer import VisionTransformer

    for candidate in [name] if timm.is_model(name) else sorted(timm.list_models(f"{name}_*"))[:1]:
        try:
            with torch.device("meta"):
                vit = timm.create_model(candidate, pretrained=False, num_classes=0)
        except Exception:  # noqa: BLE001 - a name timm knows but cannot build here: not evidence
            continue
        if isinstance(vit, VisionTransformer) and vit.embed_dim == dim:
            return candidate, int(vit.blocks[0].attn.num_heads)
    return None


def head_count(dim: int, names: list[str] = (), num_heads: int | None = None) -> HeadCount:
    """The head count of a ViT of width ``dim`` (see the module docstring for the order)."""
    if num_heads:
        return HeadCount(int(num_heads), "your setting", True)
    for name in names:
        found = _timm_heads(name, dim)
        if found is not None:
            return HeadCount(found[1], f"the timm model {found[0]} named by the file ('{name}')", True)
    if dim in OFFICIAL:
        heads, models = OFFICIAL[dim]
        return HeadCount(heads, f"the official size of width {dim}: {models}", True)
    heads = max(1, dim // 64)
    return HeadCount(heads, f"a guess: width {dim} is no official ViT size and the file names no model, so "
                            f"{heads} heads (width / 64); if the model has another count, set it", False)
