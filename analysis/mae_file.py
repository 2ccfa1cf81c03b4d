"""An official MAE file with its decoder, rebuilt for reconstructions (the MAE authors' demo).

facebookresearch/mae's ``models_mae.py`` stores, beside the encoder, ``decoder_embed``,
``mask_token``, ``decoder_pos_embed`` (fixed sin-cos, with a zero row for [CLS]),
``decoder_blocks.<i>`` (timm Blocks, qkv bias, LayerNorm eps 1e-6), ``decoder_norm`` and
``decoder_pred``. Its forward: the visible tokens plus [CLS] go through the encoder and are
projected to the decoder width, mask tokens fill the removed places, the sequence is unshuffled,
positions are added to every token, [CLS] included, and the prediction drops [CLS]. That is
``trainer.models.mae_decoder.MAEDecoder`` with the file's positions and eps, so the encoder's
masked forward, the masking and the pictures are the trained method's own.

What no weight says is read from the file's training arguments when present (``mask_ratio``,
``norm_pix_loss``) or taken as in the released visualisation files (0.75, pixels as targets);
the decoder's head count is models_mae's ``decoder_num_heads=16``, used by every released model.
"""

from __future__ import annotations

import math
import re

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from analysis.checkpoints import LoadedBackbone
from trainer.methods.mae import Pictures, mae_pictures, pixels_from_pred
from trainer.models.backbone import num_prefix
from trainer.models.mae_decoder import MAEDecoder

DECODER_HEADS = 16  # models_mae.py's decoder_num_heads in every released model (decoder width 512)
REQUIRED = ("decoder_embed.weight", "mask_token", "decoder_pos_embed", "decoder_norm.weight", "decoder_pred.weight")


class FileMAE(nn.Module):
    """An MAE encoder and decoder from a weights file, offering what ``analysis.reconstruction``
    reads from a trained MAE: ``patch_size``, ``grid``, ``image_size``, ``mask_ratio``,
    ``encoder()``, ``decoder``, ``pixels_from_pred`` and ``reconstruct``."""

    def __init__(self, vit: VisionTransformer, decoder: MAEDecoder, grid: int, mask_ratio: float,
                 norm_pix_loss: bool):
        super().__init__()
        self._modules["encoder"] = vit  # as in trainer.methods.mae: the module and encoder() coexist
        self.decoder = decoder
        self.patch_size = int(vit.patch_embed.patch_size[0])
        self.grid = grid
        self.image_size = grid * self.patch_size
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss

    def encoder(self) -> VisionTransformer:
        return self._modules["encoder"]

    def pixels_from_pred(self, pred: torch.Tensor, imgs: torch.Tensor) -> torch.Tensor:
        return pixels_from_pred(pred, imgs, self.patch_size, self.norm_pix_loss)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, g: torch.Generator, mask_ratio: float | None = None) -> Pictures:
        """As ``trainer.methods.mae.MAE.reconstruct``: the same masking, forward and pictures."""
        return mae_pictures(self.encoder(), self.decoder, images, g, self.mask_ratio if mask_ratio is None
                            else mask_ratio, self.patch_size, self.norm_pix_loss)


def file_mae(loaded: LoadedBackbone) -> tuple[FileMAE | None, str]:
    """The file's MAE (encoder + decoder) and a one-line note; (None, why) when the file has no
    usable decoder (an encoder-only release, or a decoder that does not fit models_mae.py)."""
    sd = loaded.decoder
    if not sd:
        return None, ""
    missing = [k for k in REQUIRED if k not in sd]
    if missing:
        return None, f"the file has part of an MAE decoder (no {', '.join(missing)}), so no reconstructions"
    vit = loaded.vit
    dd, width = (int(n) for n in sd["decoder_embed.weight"].shape)
    if width != vit.embed_dim:
        return None, f"the decoder reads width {width} but the encoder gives {vit.embed_dim}, so no reconstructions"
    pos = sd["decoder_pos_embed"]
    prefix = num_prefix(vit)
    n = int(pos.shape[1]) - prefix
    grid, p = math.isqrt(max(n, 0)), int(vit.patch_embed.patch_size[0])
    if grid * grid != n or int(sd["decoder_pred.weight"].shape[0]) != p * p * 3:
        return None, (f"the decoder's {int(pos.shape[1])} positions or its {int(sd['decoder_pred.weight'].shape[0])} "
                      f"outputs per patch do not fit patch {p} with {prefix} prefix token(s), so no reconstructions")
    depth = 1 + max([int(m.group(1)) for k in sd if (m := re.match(r"decoder_blocks\.(\d+)\.", k))], default=-1)
    fc1 = sd.get("decoder_blocks.0.mlp.fc1.weight")
    heads = DECODER_HEADS if dd % DECODER_HEADS == 0 else max(1, dd // 32)
    decoder = MAEDecoder(width, dd, depth, heads, grid, p, prefix,
                         mlp_ratio=fc1.shape[0] / dd if fc1 is not None else 4.0, norm_eps=1e-6)
    try:
        decoder.load_state_dict({k: v for k, v in sd.items() if k != "decoder_pos_embed"}, strict=True)
        decoder.set_positions(pos.float())
    except (RuntimeError, ValueError) as e:
        return None, f"the MAE decoder does not load ({str(e).splitlines()[0][:160]}), so no reconstructions"
    args = loaded.args
    ratio = float(args.get("mask_ratio", 0.75))
    norm_pix = bool(args.get("norm_pix_loss", False))
    src = "its training arguments" if "mask_ratio" in args else "the released visualisation files' settings"
    note = (f"MAE decoder: width {dd}, {depth} blocks, {heads} heads (models_mae.py); mask ratio {ratio}, "
            f"{'per-patch normalised' if norm_pix else 'plain'} pixel targets ({src}); images at {grid * p} px")
    return FileMAE(vit, decoder.eval(), grid, ratio, norm_pix).eval(), note
