"""Where SSLScope's calls go in the official DINO training loop (facebookresearch/dino,
``main_dino.py``): the lines marked ``# + sslscope`` are what to add to ``train_dino`` and
``train_one_epoch``; everything else stands in for the official code with the same names and
shapes (concatenated crops, ``DINOLoss(student_output, teacher_output, epoch)`` that moves its
centre inside, per-iteration schedules, ``get_last_selfattention``), tiny enough to run on a CPU.

In ``main_dino.py``:

- ``train_dino``, after ``utils.init_distributed_mode(args)``: build the ``Monitor`` (only rank 0
  writes; it reads the rank itself); after the epoch loop: ``mon.close()``;
- ``train_one_epoch``, after ``student_output = student(images)`` and *before*
  ``loss = dino_loss(...)`` (which moves the centre): ``mon.dino``; after the EMA update:
  ``mon.scalars`` and, on logged steps, the teacher backbone's tokens;
- at the end of an epoch (optional): ``mon.probe`` with the teacher's last attention and
  ``mon.checkpoint`` (safetensors).

    PYTHONPATH=. python examples/official_dino.py --runs-dir runs
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from sslscope.monitor import Monitor  # + sslscope


# --- stand-ins for the official modules (vision_transformer.py, main_dino.py, utils.py) ----
class TinyViT(VisionTransformer):
    """A timm ViT answering like DINO's ``vision_transformer.VisionTransformer``: ``forward``
    gives the [CLS] token, ``get_last_selfattention`` the last block's attention (B, heads, L, L)."""

    def get_last_selfattention(self, x: torch.Tensor) -> torch.Tensor:
        attn, maps = self.blocks[-1].attn, []
        fused, attn.fused_attn = attn.fused_attn, False  # fused attention returns no weights
        hook = attn.attn_drop.register_forward_hook(lambda _m, _i, out: maps.append(out))
        try:
            self.forward_features(x)
        finally:
            hook.remove()
            attn.fused_attn = fused
        return maps[-1]


class MultiCropWrapper(nn.Module):
    """Backbone + head on a list of crops, one backbone pass per resolution; logits of all crops
    concatenated (V * B, K), as the official ``utils.MultiCropWrapper``."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, crops: list[torch.Tensor]) -> torch.Tensor:
        sizes = [c.shape[-1] for c in crops]
        outs, start = [], 0
        for end in [i + 1 for i in range(len(sizes)) if i + 1 == len(sizes) or sizes[i + 1] != sizes[i]]:
            outs.append(self.backbone(torch.cat(crops[start:end])))
            start = end
        return self.head(torch.cat(outs))


class DINOLoss(nn.Module):
    """DINO's loss with the official signature and state: teacher softmax of the centred logits at
    the epoch's temperature, cross-entropy over pairs of different crops, then the centre moves."""

    def __init__(self, out_dim: int, ncrops: int, teacher_temp_schedule: np.ndarray, student_temp: float = 0.1,
                 center_momentum: float = 0.9):
        super().__init__()
        self.ncrops, self.student_temp, self.center_momentum = ncrops, student_temp, center_momentum
        self.teacher_temp_schedule = teacher_temp_schedule
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student_output: torch.Tensor, teacher_output: torch.Tensor, epoch: int) -> torch.Tensor:
        student_logp = F.log_softmax(student_output / self.student_temp, dim=-1).chunk(self.ncrops)
        teacher_p = F.softmax((teacher_output - self.center) / self.teacher_temp_schedule[epoch], dim=-1)
        terms = [(-q * student_logp[v]).sum(-1).mean() for iq, q in enumerate(teacher_p.detach().chunk(2))
                 for v in range(self.ncrops) if v != iq]
        with torch.no_grad():
            self.center = self.center * self.center_momentum + teacher_output.mean(0, keepdim=True) * (
                1 - self.center_momentum)
        return sum(terms) / len(terms)


def cosine_scheduler(base: float, final: float, epochs: int, niter_per_ep: int) -> np.ndarray:
    """One value per iteration, cosine from ``base`` to ``final`` (the official utils' shape)."""
    it = np.arange(epochs * niter_per_ep)
    return final + 0.5 * (base - final) * (1 + np.cos(np.pi * it / len(it)))


def crops_of(images: torch.Tensor, n_local: int, g: torch.Generator) -> list[torch.Tensor]:
    """Two global and ``n_local`` half-size crops of a batch (a stand-in for DataAugmentationDINO)."""
    s = images.shape[-1]
    out = []
    for size, n in ((s, 2), (s // 2, n_local)):
        for _ in range(n):
            c = int(torch.randint(s // 2, s + 1, (1,), generator=g))
            y, x = (int(v) for v in torch.randint(0, s - c + 1, (2,), generator=g))
            out.append(F.interpolate(images[:, :, y:y + c, x:x + c], size=(size, size), mode="bilinear"))
    return out


# --- train_one_epoch and train_dino, as in main_dino.py, with the monitor's calls ---------
def train_one_epoch(student, teacher, teacher_without_ddp, dino_loss, data_loader, optimizer, lr_schedule,
                    wd_schedule, momentum_schedule, epoch, args, mon: Monitor) -> None:
    for it, images in enumerate(data_loader):
        it = len(data_loader) * epoch + it  # global training iteration
        for i, param_group in enumerate(optimizer.param_groups):
            param_group["lr"] = lr_schedule[it]
            if i == 0:
                param_group["weight_decay"] = wd_schedule[it]
        teacher_output = teacher(images[:2])  # only the 2 global views pass through the teacher
        student_output = student(images)
        mon.dino(it + 1, teacher_output, student_output, loss=dino_loss, epoch=epoch)  # + sslscope (before the loss)
        loss = dino_loss(student_output, teacher_output, epoch)
        if not math.isfinite(loss.item()):
            raise SystemExit(f"Loss is {loss.item()}, stopping training")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # EMA update for the teacher
            m = momentum_schedule[it]
            for param_q, param_k in zip(student.parameters(), teacher_without_ddp.parameters()):
                param_k.data.mul_(m).add_((1 - m) * param_q.detach().data)
        mon.scalars(it + 1, {"train/loss": loss, "opt/lr": lr_schedule[it], "opt/wd": wd_schedule[it],  # + sslscope
                             "ema/momentum": m})  # + sslscope
        if mon.due(it + 1):  # + sslscope: the teacher's [CLS] and patch tokens
            with torch.no_grad():  # + sslscope
                mon.vit_tokens(it + 1, teacher_without_ddp.backbone.forward_features(images[0]))  # + sslscope


def train_dino(args: argparse.Namespace) -> Path:
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    images = torch.randn(args.batch_size * args.iters, 3, args.image_size, args.image_size, generator=g)
    data_loader = [crops_of(b, args.local_crops_number, g) for b in images.split(args.batch_size)]
    student = MultiCropWrapper(
        TinyViT(img_size=args.image_size, patch_size=args.patch_size, embed_dim=args.width, depth=args.depth,
                num_heads=2, num_classes=0, dynamic_img_size=True),
        nn.Sequential(nn.Linear(args.width, args.width), nn.GELU(), nn.Linear(args.width, args.out_dim)))
    teacher = MultiCropWrapper(
        TinyViT(img_size=args.image_size, patch_size=args.patch_size, embed_dim=args.width, depth=args.depth,
                num_heads=2, num_classes=0, dynamic_img_size=True),
        nn.Sequential(nn.Linear(args.width, args.width), nn.GELU(), nn.Linear(args.width, args.out_dim)))
    teacher_without_ddp = teacher
    teacher_without_ddp.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    temps = np.concatenate((np.linspace(args.warmup_teacher_temp, args.teacher_temp, args.warmup_teacher_temp_epochs),
                            np.ones(args.epochs - args.warmup_teacher_temp_epochs) * args.teacher_temp))
    dino_loss = DINOLoss(args.out_dim, args.local_crops_number + 2, temps)
    optimizer = torch.optim.AdamW(student.parameters())
    lr_schedule = cosine_scheduler(args.lr, 1e-6, args.epochs, len(data_loader))
    wd_schedule = cosine_scheduler(0.04, 0.4, args.epochs, len(data_loader))
    momentum_schedule = cosine_scheduler(0.996, 1, args.epochs, len(data_loader))
    mon = Monitor(args.runs_dir, name=args.name, method="dino", config=vars(args), every=args.every,  # + sslscope
                  steps_per_epoch=len(data_loader))  # + sslscope
    probe = images[:4]
    for epoch in range(args.epochs):
        train_one_epoch(student, teacher, teacher_without_ddp, dino_loss, data_loader, optimizer, lr_schedule,
                        wd_schedule, momentum_schedule, epoch, args, mon)
        step = (epoch + 1) * len(data_loader)  # + sslscope: the teacher's [CLS] attention maps on fixed images
        attn = teacher_without_ddp.backbone.get_last_selfattention(probe)  # + sslscope
        h = args.image_size // args.patch_size  # + sslscope
        mon.probe(step, probe, attention=attn[:, :, 0, 1:].reshape(len(probe), -1, h, h))  # + sslscope
        mon.checkpoint(step, teacher_without_ddp.state_dict(), prefix="backbone.")  # + sslscope
    mon.close()  # + sslscope
    return Path(args.runs_dir) / args.name


def get_args_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--name", default="official-dino")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--iters", type=int, default=4, help="iterations per epoch")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--patch-size", type=int, default=8)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--out-dim", type=int, default=64)
    ap.add_argument("--local-crops-number", type=int, default=2)
    ap.add_argument("--warmup-teacher-temp", type=float, default=0.04)
    ap.add_argument("--teacher-temp", type=float, default=0.07)
    ap.add_argument("--warmup-teacher-temp-epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=2, help="SSLScope statistics every N iterations")
    return ap


def main(argv: list[str] | None = None) -> Path:
    return train_dino(get_args_parser().parse_args(argv))


if __name__ == "__main__":
    print(f"watched run: {main()}")
