"""lightly's DINO, MAE and I-JEPA, as its examples train them, on our timm backbone: the peers
that ``train_throughput.py`` times ours against in the same run.

Each peer brings its own data pipeline (lightly's transform on PIL images in a DataLoader; for
I-JEPA its ``IJEPAMaskCollator``, which draws the masks per image in Python) and its own step
(forward, loss, backward, AdamW, EMA where the method has one). ``Peer.from_ours`` turns one of
our pre-made batches into the peer's input, so the model step alone is timed on identical images.

Same set-up as ours: the timm ViT of ``build_backbone`` (cpu presets: [CLS], no registers; its
own positions kept: they carry no [CLS] slot, which lightly's sin-cos init assumes),
batch, image and crop sizes, head / decoder / predictor sizes and the method's scales. lightly
has no regulariser in its I-JEPA, so ``train_throughput`` compares ours with ``ijepa.reg=none``.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from trainer.config import Config, local_crop_size
from trainer.data.views import Batch
from trainer.models.backbone import build_backbone, param_groups

warnings.filterwarnings("ignore", category=FutureWarning)  # lightly's heads: torch's weight_norm deprecation
warnings.filterwarnings("ignore", message=".*MAEDecoderTIMM.*")


@dataclass
class Peer:
    """``next_batch()`` -> the peer's own next batch (its data pipeline); ``step(batch)`` one
    training step on it; ``from_ours(batch)`` our :class:`Batch` in the peer's input format."""

    next_batch: Callable[[], object]
    step: Callable[[object], None]
    from_ours: Callable[[Batch], object]


class _PILSet(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), 0


def _cycle(loader: torch.utils.data.DataLoader) -> Callable[[], object]:
    it = iter(loader)

    def next_batch():
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(loader)
            return next(it)

    return next_batch


def _loader(cfg: Config, images: np.ndarray, transform, collate_fn=None) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(_PILSet(images, transform), batch_size=cfg.data.batch_size, shuffle=True,
                                       drop_last=True, num_workers=cfg.data.num_workers, collate_fn=collate_fn,
                                       persistent_workers=cfg.data.num_workers > 0)


# --- DINO (lightly's examples/pytorch/dino.py) -------------------------------------------
class _LightlyDINO(torch.nn.Module):
    def __init__(self, cfg: Config):
        from lightly.models.modules import DINOProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        super().__init__()
        d = cfg.dino
        self.student_backbone = build_backbone(cfg.model, cfg.data.image_size)
        dim = self.student_backbone.num_features
        self.student_head = DINOProjectionHead(dim, d.hidden_dim, d.bottleneck_dim, d.out_dim, freeze_last_layer=1)
        self.teacher_backbone = copy.deepcopy(self.student_backbone)
        self.teacher_head = DINOProjectionHead(dim, d.hidden_dim, d.bottleneck_dim, d.out_dim)
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)


def dino(cfg: Config, images: np.ndarray, momentum: float = 0.996) -> Peer:
    from lightly.loss import DINOLoss
    from lightly.models.utils import update_momentum
    from lightly.transforms import DINOTransform

    d = cfg.dino
    model = _LightlyDINO(cfg)
    transform = DINOTransform(global_crop_size=cfg.data.image_size, local_crop_size=local_crop_size(cfg),
                              n_local_views=d.n_local, global_crop_scale=(d.global_scale_min, 1.0),
                              local_crop_scale=(d.local_scale_min, d.local_scale_max))
    criterion = DINOLoss(output_dim=d.out_dim, warmup_teacher_temp_epochs=0, teacher_temp=d.teacher_temp)
    opt = torch.optim.AdamW(param_groups(model), lr=cfg.optim.lr)
    data = _cycle(_loader(cfg, images, transform))

    def step(views: list[torch.Tensor]) -> None:
        update_momentum(model.student_backbone, model.teacher_backbone, m=momentum)
        update_momentum(model.student_head, model.teacher_head, m=momentum)
        teacher_out = [model.teacher_head(model.teacher_backbone(v)) for v in views[:2]]
        student_out = [model.student_head(model.student_backbone(v)) for v in views]
        loss = criterion(teacher_out, student_out, epoch=0)
        opt.zero_grad()
        loss.backward()
        model.student_head.cancel_last_layer_gradients(current_epoch=0)
        opt.step()

    return Peer(lambda: data()[0], step, lambda b: b.views)


# --- MAE (lightly's examples/pytorch/mae.py, timm variant) ----------------------------------
def mae(cfg: Config, images: np.ndarray) -> Peer:
    from lightly.models import utils
    from lightly.models.modules import MAEDecoderTIMM, MaskedVisionTransformerTIMM
    from lightly.transforms import MAETransform

    m = cfg.mae
    vit = build_backbone(cfg.model, cfg.data.image_size)
    backbone = MaskedVisionTransformerTIMM(vit=vit, pos_embed_initialization="skip")
    patch = vit.patch_embed.patch_size[0]
    num_patches = (cfg.data.image_size // patch) ** 2
    decoder = MAEDecoderTIMM(num_patches=num_patches, patch_size=patch, embed_dim=vit.embed_dim,
                             decoder_embed_dim=m.decoder_dim, decoder_depth=m.decoder_depth,
                             decoder_num_heads=m.decoder_heads, num_prefix_tokens=vit.num_prefix_tokens)
    model = torch.nn.ModuleDict({"backbone": backbone, "decoder": decoder})
    seq_len = backbone.sequence_length
    opt = torch.optim.AdamW(param_groups(model), lr=cfg.optim.lr)
    data = _cycle(_loader(cfg, images, MAETransform(input_size=cfg.data.image_size)))

    def step(imgs: torch.Tensor) -> None:
        b = imgs.shape[0]
        idx_keep, idx_mask = utils.random_token_mask(size=(b, seq_len), mask_ratio=m.mask_ratio, device=imgs.device)
        x_encoded = backbone.encode(images=imgs, idx_keep=idx_keep)
        x_decode = decoder.embed(x_encoded)
        x_masked = utils.repeat_token(decoder.mask_token, (b, seq_len))
        x_masked = utils.set_at_index(x_masked, idx_keep, x_decode.type_as(x_masked))
        x_pred = decoder.predict(utils.get_at_index(decoder.decode(x_masked), idx_mask))
        target = utils.get_at_index(utils.patchify(imgs, patch), idx_mask - vit.num_prefix_tokens)
        loss = F.mse_loss(x_pred, target)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return Peer(lambda: data()[0][0], step, lambda b: b.views[0])


# --- I-JEPA (lightly's examples/pytorch/ijepa.py, on the timm predictor) -------------------
def ijepa(cfg: Config, images: np.ndarray, momentum: float = 0.996) -> Peer:
    from lightly.data import IJEPAMaskCollator
    from lightly.models import utils
    from lightly.models.modules import MaskedVisionTransformerTIMM
    from lightly.models.modules.ijepa_timm import IJEPAPredictorTIMM
    from lightly.models.utils import update_momentum
    from lightly.transforms.ijepa_transform import IJEPATransform

    j = cfg.ijepa
    vit = build_backbone(cfg.model, cfg.data.image_size)
    prefix = vit.num_prefix_tokens
    patch = vit.patch_embed.patch_size[0]
    num_patches = (cfg.data.image_size // patch) ** 2
    encoder = MaskedVisionTransformerTIMM(vit=vit, pos_embed_initialization="skip")
    target_encoder = copy.deepcopy(encoder).requires_grad_(False)
    predictor = IJEPAPredictorTIMM(num_patches=num_patches, depth=j.pred_depth, mlp_dim=vit.embed_dim,
                                   predictor_embed_dim=j.pred_dim, num_heads=vit.blocks[0].attn.num_heads)
    model = torch.nn.ModuleDict({"encoder": encoder, "predictor": predictor})
    opt = torch.optim.AdamW(param_groups(model), lr=cfg.optim.lr)
    collator = IJEPAMaskCollator(input_size=cfg.data.image_size, patch_size=patch,
                                 enc_mask_scale=(j.context_scale_min, j.context_scale_max),
                                 pred_mask_scale=(j.target_scale_min, j.target_scale_max),
                                 aspect_ratio=(j.target_aspect_min, j.target_aspect_max), npred=j.num_targets,
                                 min_keep=4)
    # min_keep 4 (lightly's default), not our min_context 10: the collator applies it to the target
    # blocks too and redraws forever while a block has <= min_keep patches; at cpu-tiny's 8 x 8
    # grid a 0.15-0.2 target holds 8-12, so min_keep 10 hangs its DataLoader worker
    transform = IJEPATransform(input_size=cfg.data.image_size)
    data = _cycle(_loader(cfg, images, transform, collate_fn=collator))
    keep_prefix = torch.arange(prefix)

    def step(batch) -> None:
        (imgs, _), masks_enc, masks_pred = batch
        b = imgs.shape[0]
        with torch.no_grad():  # targets: the EMA encoder on the full image, layer-normed patch tokens
            h = target_encoder.encode(imgs)[:, prefix:]
            h = F.layer_norm(h, (h.size(-1),))
            h = utils.repeat_interleave_batch(utils.apply_masks(h, masks_pred), b, repeat=len(masks_enc))
        # context: the prefix tokens and the context patches, as our forward_masked keeps them
        ctx = [torch.cat([keep_prefix.expand(b, prefix), m + prefix], dim=1) for m in masks_enc]
        z = torch.cat([encoder.encode(imgs, idx_keep=c)[:, prefix:] for c in ctx])
        pred = predictor(z, masks_enc, masks_pred)
        loss = F.smooth_l1_loss(pred, h)
        opt.zero_grad()
        loss.backward()
        opt.step()
        update_momentum(encoder, target_encoder, m=momentum)

    def from_ours(ours: Batch):  # our images under one draw of lightly's masks
        imgs = ours.views[0]
        _, enc, pred = collator([(imgs[i], 0) for i in range(imgs.shape[0])])
        return (imgs, None), enc, pred

    return Peer(data, step, from_ours)


PEERS = {"dino": dino, "mae": mae, "ijepa": ijepa}
