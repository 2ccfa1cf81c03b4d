"""Where does the model look? Last-layer [CLS] attention, mass-threshold masks and their
Jaccard against object masks (DINO, Caron et al. 2021, Sec. 4.2.1 and Fig. 3), attention to
and from registers and the high-norm outlier tokens (Darcet et al. 2024), and attention
rollout (Abnar & Zuidema 2020).

Maps come from ``trainer.models.backbone.capture_attention``, which turns timm's fused
attention off for the pass (fused attention computes no weights). Images may have any size
that is a multiple of the patch size: the backbone resamples its positions
(``dynamic_img_size``); maps are returned on the patch grid (h, w) = (H / p, W / p).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.collapse import high_norm_mask
from core.eval_mode import eval_mode
from core.vit import ViT, block_tokens, num_prefix
from trainer.models.backbone import capture_attention

DEFAULT_KEEP = 0.6  # DINO's masks keep 60% of the attention mass


def _grid(vit: ViT, images: torch.Tensor) -> tuple[int, int]:
    p = vit.patch_embed.patch_size
    h, w = images.shape[-2] // p[0], images.shape[-1] // p[1]
    if h * p[0] != images.shape[-2] or w * p[1] != images.shape[-1]:
        raise ValueError(f"image size {tuple(images.shape[-2:])} is not a multiple of the patch size {tuple(p)}; "
                         "resize or crop the images")
    return h, w


@torch.inference_mode()
def attention_maps(vit: ViT, images: torch.Tensor, blocks: list[int] | None = None) -> list[torch.Tensor]:
    """Softmaxed attention of the chosen blocks (default all), each (B, heads, L, L) with
    L = prefix + h*w, for normalised images (B, 3, H, W). The model is put in eval mode."""
    vit.eval()
    with capture_attention(vit, blocks) as maps:
        vit.forward_features(images)
    if not maps:
        raise RuntimeError("no attention maps were captured; is this a timm ViT?")
    return [m.float() for m in maps]


@dataclass
class AttentionResult:
    """Last-layer attention of a batch, on the patch grid (h, w)."""

    cls_attn: np.ndarray  # (B, heads, h, w) [CLS] -> patch attention (softmax weights, not renormalised)
    mean_attn: np.ndarray  # (B, h, w) the same averaged over heads
    register_from_cls: np.ndarray  # (B, heads, R) [CLS] -> register attention (R may be 0)
    register_maps: np.ndarray  # (B, heads, R, h, w) register -> patch attention
    register_share: np.ndarray  # (B, h, w) share of each patch query's attention that goes to registers
    num_prefix: int  # [CLS] + registers


def last_layer_attention(vit: ViT, images: torch.Tensor) -> AttentionResult:
    """The last block's attention for images (B, 3, H, W), split by token kind."""
    if vit.cls_token is None:
        raise ValueError("this backbone has no [CLS] token (e.g. I-JEPA); use attention_rollout or token_norms")
    h, w = _grid(vit, images)
    attn = attention_maps(vit, images, [len(vit.blocks) - 1])[-1]  # (B, heads, L, L)
    b, heads = attn.shape[:2]
    p = num_prefix(vit)
    cls_attn = attn[:, :, 0, p:].reshape(b, heads, h, w)
    reg = attn[:, :, 1:p]  # (B, heads, R, L): rows of the register queries
    return AttentionResult(
        cls_attn=cls_attn.numpy(),
        mean_attn=cls_attn.mean(1).numpy(),
        register_from_cls=attn[:, :, 0, 1:p].numpy(),
        register_maps=reg[..., p:].reshape(b, heads, p - 1, h, w).numpy(),
        register_share=attn[:, :, p:, 1:p].sum(-1).mean(1).reshape(b, h, w).numpy(),
        num_prefix=p,
    )


def mass_mask(maps: np.ndarray, keep: float = DEFAULT_KEEP) -> np.ndarray:
    """Boolean masks (..., h, w) keeping the largest attention values whose total reaches at
    least ``keep`` of each map's mass (DINO's visualize_attention thresholding)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep={keep} must lie in (0, 1]: the fraction of attention mass to keep")
    m = np.asarray(maps, dtype=np.float64)
    flat = m.reshape(-1, m.shape[-2] * m.shape[-1])  # (maps, h*w)
    order = np.argsort(flat, axis=1, kind="stable")  # ascending
    val = np.take_along_axis(flat, order, axis=1)
    cum = np.cumsum(val / val.sum(axis=1, keepdims=True), axis=1)
    kept_sorted = cum > 1 - keep  # the top values; what they hold is >= keep
    kept = np.empty_like(kept_sorted)
    np.put_along_axis(kept, order, kept_sorted, axis=1)  # back to raster order
    return kept.reshape(m.shape)


def upsample(maps: np.ndarray, patch_size: int) -> np.ndarray:
    """Patch-grid maps (..., h, w) -> pixel maps (..., h*p, w*p) by repetition (nearest)."""
    return np.repeat(np.repeat(np.asarray(maps), patch_size, axis=-2), patch_size, axis=-1)


def jaccard(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Intersection over union of boolean masks (..., H, W), per leading index; 1 where both
    are empty."""
    a, b = np.asarray(pred, bool), np.asarray(target, bool)
    inter = (a & b).sum(axis=(-2, -1))
    union = (a | b).sum(axis=(-2, -1))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


@dataclass
class JaccardResult:
    per_image: np.ndarray  # (B,) Jaccard of the head-averaged map's mask
    per_head: np.ndarray  # (heads,) mean over images of each head's mask Jaccard
    mean: float  # mean of per_image
    best_head: int  # the head with the highest mean Jaccard


def attention_jaccard(vit: ViT, images: torch.Tensor, object_masks: np.ndarray,
                      keep: float = DEFAULT_KEEP) -> JaccardResult:
    """Jaccard of [CLS] attention masks (keeping ``keep`` of the mass) against pixel object
    masks (B, H, W) bool, as DINO scores its self-attention as segmentation."""
    res = last_layer_attention(vit, images)
    p = vit.patch_embed.patch_size[0]
    gt = np.asarray(object_masks, bool)
    per_image = jaccard(upsample(mass_mask(res.mean_attn, keep), p), gt)
    per_head = jaccard(upsample(mass_mask(res.cls_attn, keep), p), gt[:, None]).mean(0)
    return JaccardResult(per_image, per_head, float(per_image.mean()), int(per_head.argmax()))


def attention_rollout(maps: list[torch.Tensor], num_prefix_tokens: int, grid: tuple[int, int]) -> np.ndarray:
    """Attention rollout: the product over blocks of 0.5 A + 0.5 I (heads averaged, rows
    renormalised), read from [CLS] to the patches. maps: per-block (B, heads, L, L) ->
    (B, h, w). The identity term stands for the residual connections."""
    b, _, n, _ = maps[0].shape
    eye = torch.eye(n)
    joint = eye.expand(b, n, n)
    for a in maps:
        a = 0.5 * a.float().mean(1) + 0.5 * eye  # (B, L, L)
        a = a / a.sum(-1, keepdim=True)
        joint = a @ joint
    return joint[:, 0, num_prefix_tokens:].reshape(b, *grid).numpy()


@torch.inference_mode()
def token_norms(vit: ViT, images: torch.Tensor) -> np.ndarray:
    """L2 norm of every output token of the last block, before the final norm, (B, L): the
    high-norm outliers Darcet et al. found show up here (the final LayerNorm hides them)."""
    with eval_mode(vit):
        return block_tokens(vit, images).float().norm(dim=-1).numpy()


def high_norm_tokens(norms: np.ndarray, num_prefix_tokens: int, ratio: float = 2.0) -> np.ndarray:
    """Patch tokens whose norm exceeds ``ratio`` x the image's median patch norm, (B, N) bool:
    ``core.collapse.high_norm_mask``, the rule of the trainer's ``tokens/high_norm_frac``."""
    return high_norm_mask(torch.as_tensor(np.asarray(norms))[:, num_prefix_tokens:], ratio).numpy()


def mean_cls_attention(vit: ViT, images: torch.Tensor) -> np.ndarray | None:
    """Last-layer [CLS] attention averaged over heads (B, h, w), None for a backbone without a
    [CLS] token (I-JEPA's)."""
    return None if vit.cls_token is None else last_layer_attention(vit, images).mean_attn


@dataclass
class AttentionView:
    """Where one image's model looks, on the patch grid (h, w): what the Inspect page draws."""

    token_norm: np.ndarray  # (h, w) norm of each patch token after the last block, before the final norm
    high_norm: np.ndarray  # (h, w) bool, the patches ``high_norm_tokens`` flags
    cls_attn: np.ndarray | None = None  # (heads, h, w) last-layer [CLS] attention; None without [CLS]
    mean_attn: np.ndarray | None = None  # (h, w) the same averaged over heads
    mask: np.ndarray | None = None  # (h, w) bool, ``mass_mask`` of the mean map
    rollout: np.ndarray | None = None  # (h, w) attention rollout over all blocks
    register_share: np.ndarray | None = None  # (h, w) share of each patch's attention on registers; None without
    jaccard: JaccardResult | None = None  # of the attention masks with the object mask, when one is given


def inspect_attention(vit: ViT, image: torch.Tensor, object_mask: np.ndarray | None = None,
                      keep: float = DEFAULT_KEEP) -> AttentionView:
    """Everything about one normalised image (1, 3, H, W): token norms and high-norm tokens,
    and with a [CLS] token its per-head and mean attention, the mass mask keeping ``keep``,
    rollout, register share and, given an object mask (H, W) bool, the masks' Jaccard."""
    h, w = _grid(vit, image)
    p = num_prefix(vit)
    norms = token_norms(vit, image)  # (1, L)
    view = AttentionView(norms[0, p:].reshape(h, w), high_norm_tokens(norms, p)[0].reshape(h, w))
    if vit.cls_token is None:
        return view
    res = last_layer_attention(vit, image)
    view.cls_attn, view.mean_attn = res.cls_attn[0], res.mean_attn[0]
    view.mask = mass_mask(res.mean_attn, keep)[0]
    view.rollout = attention_rollout(attention_maps(vit, image), p, (h, w))[0]
    if res.register_maps.shape[2]:
        view.register_share = res.register_share[0]
    if object_mask is not None:
        view.jaccard = attention_jaccard(vit, image, np.asarray(object_mask, bool)[None], keep)
    return view
