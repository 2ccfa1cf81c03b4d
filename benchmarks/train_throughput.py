"""DINO training throughput, ours vs lightly's DINO, in one run, on the same timm backbone,
batch, crops and head sizes (CPU preset by default).

lightly is run as its DINO example does it: ``DINOTransform`` on PIL images in a DataLoader,
one backbone pass per view, ``DINOProjectionHead``, ``DINOLoss``, ``update_momentum``.
Ours: batched multi-crop views, one pass per crop resolution, foreach EMA.

Prints images per second for the full step (data + model) and for the model step alone on
identical pre-made crops, and the ratios ours / lightly (> 1: we are faster).

    python benchmarks/train_throughput.py [--steps 8] [--set section.field=value ...]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere (make bench)

from trainer.config import Config, local_crop_size  # noqa: E402
from trainer.data import build_dataset, build_loader  # noqa: E402
from trainer.methods import build_method  # noqa: E402
from trainer.models.backbone import build_backbone, param_groups  # noqa: E402


class _LightlyDINO(torch.nn.Module):
    """lightly's DINO example model, on our timm backbone."""

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student_head(self.student_backbone(x))

    def forward_teacher(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher_head(self.teacher_backbone(x))


class _PILSet(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), 0


def _lightly_parts(cfg: Config, images: np.ndarray):
    from lightly.loss import DINOLoss
    from lightly.transforms import DINOTransform

    d = cfg.dino
    model = _LightlyDINO(cfg)
    transform = DINOTransform(global_crop_size=cfg.data.image_size, local_crop_size=local_crop_size(cfg),
                              n_local_views=d.n_local, global_crop_scale=(d.global_scale_min, 1.0),
                              local_crop_scale=(d.local_scale_min, d.local_scale_max))
    loader = torch.utils.data.DataLoader(_PILSet(images, transform), batch_size=cfg.data.batch_size, shuffle=True,
                                         drop_last=True, num_workers=cfg.data.num_workers,
                                         persistent_workers=cfg.data.num_workers > 0)
    criterion = DINOLoss(output_dim=d.out_dim, warmup_teacher_temp_epochs=0, teacher_temp=d.teacher_temp)
    opt = torch.optim.AdamW(param_groups(model), lr=cfg.optim.lr)
    return model, loader, criterion, opt


def _lightly_step(model, criterion, opt, views: list[torch.Tensor], momentum: float) -> None:
    from lightly.models.utils import update_momentum

    update_momentum(model.student_backbone, model.teacher_backbone, m=momentum)
    update_momentum(model.student_head, model.teacher_head, m=momentum)
    teacher_out = [model.forward_teacher(v) for v in views[:2]]
    student_out = [model.forward(v) for v in views]
    loss = criterion(teacher_out, student_out, epoch=0)
    opt.zero_grad()
    loss.backward()
    model.student_head.cancel_last_layer_gradients(current_epoch=0)
    opt.step()


def _our_step(method, opt, batch, it: int) -> None:
    out = method(batch, it)
    opt.zero_grad()
    out.loss.backward()
    method.on_optimizer_step(it)
    opt.step()
    method.after_step(it)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="timed steps per block")
    ap.add_argument("--rounds", type=int, default=3, help="alternating blocks (fair under shared-CPU load)")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    cfg = Config().with_overrides(["data.num_train=1024", "data.num_val=8", "dino.freeze_last_layer_steps=0"]
                                  + args.set).validate()
    torch.manual_seed(0)
    ds = build_dataset(cfg.data, "train", cfg.run.seed)
    method = build_method(cfg)
    ours_opt = torch.optim.AdamW(param_groups(method), lr=cfg.optim.lr)
    ours_loader = build_loader(cfg, method.views(), dataset=ds)
    lt_model, lt_loader, lt_crit, lt_opt = _lightly_parts(cfg, ds.images)
    lt_iter = iter(lt_loader)

    def lightly_batch():
        nonlocal lt_iter
        try:
            return next(lt_iter)[0]
        except StopIteration:
            lt_iter = iter(lt_loader)
            return next(lt_iter)[0]

    fixed = next(ours_loader)  # identical crops for the model-only comparison
    b = cfg.data.batch_size
    times = {"ours_full": 0.0, "lightly_full": 0.0, "ours_model": 0.0, "lightly_model": 0.0}
    _our_step(method, ours_opt, fixed, 0)  # warm-up both
    _lightly_step(lt_model, lt_crit, lt_opt, fixed.views, 0.996)
    for _ in range(args.rounds):
        t = time.perf_counter()
        for i in range(args.steps):
            _our_step(method, ours_opt, next(ours_loader), i)
        times["ours_full"] += time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(args.steps):
            _lightly_step(lt_model, lt_crit, lt_opt, lightly_batch(), 0.996)
        times["lightly_full"] += time.perf_counter() - t
        t = time.perf_counter()
        for i in range(args.steps):
            _our_step(method, ours_opt, fixed, i)
        times["ours_model"] += time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(args.steps):
            _lightly_step(lt_model, lt_crit, lt_opt, fixed.views, 0.996)
        times["lightly_model"] += time.perf_counter() - t
    n = args.rounds * args.steps * b
    ips = {k: n / v for k, v in times.items()}
    print(f"DINO training throughput, preset {cfg.model.preset}, {cfg.data.image_size} px, batch {b}, "
          f"2 global + {cfg.dino.n_local} local crops, K={cfg.dino.out_dim}, {torch.get_num_threads()} threads")
    print(f"  full step (data + model): ours {ips['ours_full']:7.1f} img/s   lightly {ips['lightly_full']:7.1f} img/s"
          f"   ratio {ips['ours_full'] / ips['lightly_full']:.2f}x")
    print(f"  model step only:          ours {ips['ours_model']:7.1f} img/s   lightly {ips['lightly_model']:7.1f} img/s"
          f"   ratio {ips['ours_model'] / ips['lightly_model']:.2f}x")


if __name__ == "__main__":
    main()
