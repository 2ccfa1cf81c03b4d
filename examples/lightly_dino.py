"""lightly's DINO example loop (``examples/pytorch/dino.py`` of lightly 1.6: ``DINOTransform``,
``DINOProjectionHead``, ``DINOLoss``, ``update_momentum``, ``cosine_schedule``) on a timm ViT,
watched by SSLScope. The lines marked ``# + sslscope`` are the whole patch: 8 lines.

    PYTHONPATH=. python examples/lightly_dino.py --runs-dir runs      # then: python -m dashboard

Defaults are tiny (32 px random images, a 2-block ViT) so that it runs in seconds on a CPU;
the test suite runs it so.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
import torchvision
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms.dino_transform import DINOTransform
from lightly.utils.scheduler import cosine_schedule
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from sslscope.monitor import Monitor  # + sslscope


class DINO(nn.Module):
    """lightly's example model: student and teacher backbone + DINO head."""

    def __init__(self, backbone: nn.Module, input_dim: int, out_dim: int):
        super().__init__()
        self.student_backbone = backbone
        self.student_head = DINOProjectionHead(input_dim, 128, 32, out_dim, freeze_last_layer=1)
        self.teacher_backbone = copy.deepcopy(backbone)
        self.teacher_head = DINOProjectionHead(input_dim, 128, 32, out_dim)
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student_head(self.student_backbone(x))

    def forward_teacher(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher_head(self.teacher_backbone(x))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--name", default="lightly-dino")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--images", type=int, default=32, help="random images per epoch")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--patch-size", type=int, default=8)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--out-dim", type=int, default=64)
    ap.add_argument("--n-local", type=int, default=2)
    ap.add_argument("--every", type=int, default=2, help="SSLScope statistics every N steps")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    """Train, watched; returns the run folder."""
    args = parse_args(argv)
    torch.manual_seed(0)
    backbone = VisionTransformer(img_size=args.image_size, patch_size=args.patch_size, embed_dim=args.width,
                                 depth=args.depth, num_heads=2, num_classes=0, dynamic_img_size=True)
    model = DINO(backbone, backbone.embed_dim, args.out_dim)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    transform = DINOTransform(global_crop_size=args.image_size, local_crop_size=args.image_size // 2,
                              n_local_views=args.n_local)
    dataset = torchvision.datasets.FakeData(size=args.images, image_size=(3, args.image_size, args.image_size),
                                            transform=transform)
    dataloader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True)
    criterion = DINOLoss(output_dim=args.out_dim, warmup_teacher_temp_epochs=1).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    mon = Monitor(args.runs_dir, name=args.name, method="dino", config=vars(args), every=args.every)  # + sslscope

    for epoch in range(args.epochs):
        momentum_val = cosine_schedule(epoch, args.epochs, 0.996, 1)
        for step, (views, _) in enumerate(dataloader, epoch * len(dataloader) + 1):  # + sslscope (step)
            update_momentum(model.student_backbone, model.teacher_backbone, m=momentum_val)
            update_momentum(model.student_head, model.teacher_head, m=momentum_val)
            views = [view.to(device) for view in views]
            global_views = views[:2]
            teacher_out = [model.forward_teacher(view) for view in global_views]
            student_out = [model.forward(view) for view in views]
            mon.dino(step, teacher_out, student_out, loss=criterion, epoch=epoch)  # + sslscope (before the loss)
            loss = criterion(teacher_out, student_out, epoch=epoch)
            mon.scalars(step, {"train/loss": loss, "opt/lr": 0.001, "ema/momentum": momentum_val})  # + sslscope
            if mon.due(step):  # + sslscope: the teacher's [CLS] and patch tokens, on logged steps only
                mon.vit_tokens(step, model.teacher_backbone.forward_features(global_views[0]))  # + sslscope
            loss.backward()
            model.student_head.cancel_last_layer_gradients(current_epoch=epoch)
            optimizer.step()
            optimizer.zero_grad()
    mon.close()  # + sslscope
    return Path(args.runs_dir) / args.name


if __name__ == "__main__":
    print(f"watched run: {main()}")
