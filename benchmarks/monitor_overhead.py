"""The monitor's overhead as a share of a DINO training step, logging every 10 steps.

The watched loop is a user's: lightly's DINO (``DINOProjectionHead``, ``DINOLoss``,
``update_momentum``) on the shared timm ViT, monitored as ``examples/lightly_dino.py`` does it
(``Monitor.dino`` before the loss, ``scalars`` after it, the teacher's tokens on logged steps,
which costs one extra teacher pass of a global view there). Both arms see the same pre-made
crops (the model step alone: data loading would only dilute the overhead) and alternate in
blocks, so shared-machine load falls on both. Printed per preset:

- end to end: mean step time with the monitor / without it - 1;
- inside the monitor: the time spent in its calls (the extra pass included) per step, as a share
  of the plain step (on a CPU this is the whole cost; on a GPU the calls also wait for the
  queue to drain on logged steps, which the end-to-end figure counts only where it costs).

    python benchmarks/monitor_overhead.py                  # CPU preset (cpu-tiny, 32 px, batch 32)
    python benchmarks/monitor_overhead.py --vit-s          # and ViT-S/16 (224 px, K = 65536)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere (make bench)

from sslscope.monitor import Monitor  # noqa: E402
from trainer.config import Config, local_crop_size  # noqa: E402
from trainer.models.backbone import build_backbone  # noqa: E402

PRESETS = {
    "cpu": [],
    # DINO's ViT-S/16 head (K = 65536, 2048 hidden, 256 bottleneck), 96 px local crops; the mae / ijepa
    # fields only keep the whole config valid for a 384-wide, 6-head encoder (unused here)
    "vit-s16": ["model.preset=vit-small", "data.image_size=224", "dino.out_dim=65536", "dino.hidden_dim=2048",
                "dino.bottleneck_dim=256", "dino.local_size_ratio=0.43",
                "ijepa.pred_dim=384", "mae.decoder_heads=8", "mae.decoder_dim=256"],
}


class _Model(torch.nn.Module):
    """lightly's DINO example model on our timm backbone."""

    def __init__(self, cfg: Config):
        import copy

        from lightly.models.modules import DINOProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        super().__init__()
        d = cfg.dino
        self.student_backbone = build_backbone(cfg.model, cfg.data.image_size)
        dim = self.student_backbone.num_features
        self.student_head = DINOProjectionHead(dim, d.hidden_dim, d.bottleneck_dim, d.out_dim)
        self.teacher_backbone = copy.deepcopy(self.student_backbone)
        self.teacher_head = DINOProjectionHead(dim, d.hidden_dim, d.bottleneck_dim, d.out_dim)
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)


def _step(model, criterion, opt, views, step: int, mon: Monitor | None, spent: list[float]) -> None:
    """One lightly DINO step; with ``mon`` the example's calls: their time is added to
    ``spent[0]``, that of the extra teacher pass among them to ``spent[1]``."""
    from lightly.models.utils import update_momentum

    update_momentum(model.student_backbone, model.teacher_backbone, m=0.996)
    update_momentum(model.student_head, model.teacher_head, m=0.996)
    teacher_out = [model.teacher_head(model.teacher_backbone(v)) for v in views[:2]]
    student_out = [model.student_head(model.student_backbone(v)) for v in views]
    if mon is not None:
        t = time.perf_counter()
        mon.dino(step, teacher_out, student_out, loss=criterion, epoch=0)
        spent[0] += time.perf_counter() - t
    loss = criterion(teacher_out, student_out, epoch=0)
    if mon is not None:
        t = time.perf_counter()
        mon.scalars(step, {"train/loss": loss, "opt/lr": opt.param_groups[0]["lr"]})
        if mon.due(step):
            with torch.no_grad():
                t1 = time.perf_counter()
                tokens = model.teacher_backbone.forward_features(views[0])  # the example's extra pass
                spent[1] += time.perf_counter() - t1
                mon.vit_tokens(step, tokens)
        spent[0] += time.perf_counter() - t
    opt.zero_grad()
    loss.backward()
    opt.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(preset: str, steps: int, rounds: int, every: int, sets: list[str], device: torch.device) -> None:
    from lightly.loss import DINOLoss

    cfg = Config().with_overrides(PRESETS[preset] + sets).validate()
    d, size = cfg.dino, cfg.data.image_size
    torch.manual_seed(0)
    model = _Model(cfg).to(device)
    criterion = DINOLoss(output_dim=d.out_dim, warmup_teacher_temp_epochs=0, teacher_temp=d.teacher_temp).to(device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.optim.lr)
    b, local = cfg.data.batch_size, local_crop_size(cfg)
    views = [torch.randn(b, 3, size, size, device=device) for _ in range(2)]
    views += [torch.randn(b, 3, local, local, device=device) for _ in range(d.n_local)]
    autocast = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu",
                                                                                                   enabled=False)
    with tempfile.TemporaryDirectory() as tmp:
        mon = Monitor(tmp, "overhead", every=every)
        times = {"plain": 0.0, "monitored": 0.0}
        spent = [0.0, 0.0]
        with autocast:
            for warm in range(2):  # warm-up both arms (allocator, kernels, first SQLite writes)
                _step(model, criterion, opt, views, warm * every, mon, [0.0, 0.0])
                _step(model, criterion, opt, views, 0, None, [0.0, 0.0])
            step = every  # the timed steps follow: blocks of ``steps`` hold steps / every logged steps
            for _ in range(rounds):
                for arm in ("plain", "monitored"):
                    _sync(device)
                    t = time.perf_counter()
                    for _ in range(steps):
                        step += 1
                        _step(model, criterion, opt, views, step, mon if arm == "monitored" else None, spent)
                    _sync(device)
                    times[arm] += time.perf_counter() - t
        mon.close()
    n = rounds * steps
    plain, monitored = times["plain"] / n, times["monitored"] / n
    print(f"{preset}: {cfg.model.preset} {size} px, batch {b}, 2 global + {d.n_local} local ({local} px), "
          f"K = {d.out_dim}, {device.type}, {torch.get_num_threads()} threads, {n} steps per arm, every {every}")
    print(f"  step {plain * 1e3:8.1f} ms plain, {monitored * 1e3:8.1f} ms monitored: end to end "
          f"{monitored / plain - 1:+.2%} of a step")
    print(f"  inside the monitor's calls: {spent[0] / n * 1e3:.2f} ms per step = {spent[0] / n / plain:.2%} of a "
          f"plain step, of which the extra teacher pass {spent[1] / n / plain:.2%} and the statistics and "
          f"writes {(spent[0] - spent[1]) / n / plain:.2%}")


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)  # lightly's head: torch's weight_norm deprecation
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vit-s", action="store_true", help="also ViT-S/16 at 224 px (minutes on a CPU)")
    ap.add_argument("--only-vit-s", action="store_true", help="ViT-S/16 only")
    ap.add_argument("--steps", type=int, default=20, help="steps per block (a multiple of --every)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating blocks per arm")
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--set", action="append", default=[], help="config override for both presets")
    ap.add_argument("--vit-s-set", action="append", default=[], help="config override for ViT-S/16 only")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not args.only_vit_s:
        measure("cpu", args.steps, args.rounds, args.every, args.set, device)
    if args.vit_s or args.only_vit_s:
        measure("vit-s16", args.steps, args.rounds, args.every, args.set + args.vit_s_set, device)


if __name__ == "__main__":
    main()
