"""Data speed: shapes generation, multi-crop views and the loader, against per-image
torchvision.transforms.v2 (the usual DINO recipe) in the same run.

    python3 benchmarks/data_loader.py [--batches 20]

Prints seconds per batch of 64 images x (2 global 32 px + 6 local 16 px) crops and the ratio
of the batched views to the per-image v2 pipeline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.config import Config  # noqa: E402
from trainer.data import build_dataset, build_loader, build_view_transform  # noqa: E402
from trainer.data.datasets import MEAN, STD  # noqa: E402
from trainer.data.multicrop import blur_sigma_range  # noqa: E402
from trainer.data.shapes import make_shapes  # noqa: E402
from trainer.data.views import ViewSpec  # noqa: E402

SPEC = ViewSpec("multicrop", global_size=32, n_global=2, local_size=16, n_local=6)


def v2_dino_views(spec: ViewSpec):
    """The DINO augmentation as per-image v2 transforms (the reference pipeline)."""
    sigma = blur_sigma_range(spec.global_size)
    tail = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]
    jitter = [v2.RandomHorizontalFlip(), v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
              v2.RandomGrayscale(0.2)]
    g1 = v2.Compose([v2.RandomResizedCrop(spec.global_size, scale=spec.global_scale), *jitter,
                     v2.GaussianBlur(3, sigma), *tail])
    g2 = v2.Compose([v2.RandomResizedCrop(spec.global_size, scale=spec.global_scale), *jitter,
                     v2.RandomApply([v2.GaussianBlur(3, sigma)], p=0.1), v2.RandomSolarize(128, p=0.2), *tail])
    loc = v2.Compose([v2.RandomResizedCrop(spec.local_size, scale=spec.local_scale), *jitter,
                      v2.RandomApply([v2.GaussianBlur(3, sigma)], p=0.5), *tail])

    def views(images: torch.Tensor) -> list[torch.Tensor]:
        per_image = [[g1(x), g2(x)] + [loc(x) for _ in range(spec.n_local)] for x in images]
        return [torch.stack(v) for v in zip(*per_image)]

    return views


def seconds_per_call(fn, n: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=20, help="batches timed per measurement")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    out: dict[str, float] = {}
    torch.set_num_threads(1)

    t = time.perf_counter()
    make_shapes(5000, 32, seed=0)
    print(f"shapes: 5000 images of 32 px in {time.perf_counter() - t:.2f} s")

    cfg = Config()
    ds = build_dataset(cfg.data, "train", cfg.run.seed)
    images = torch.from_numpy(ds.images[:64]).permute(0, 3, 1, 2).contiguous()
    ours = build_view_transform(SPEC)
    g = torch.Generator().manual_seed(0)
    t_ours = seconds_per_call(lambda: ours.batch(images, g), args.batches)
    t_ref = seconds_per_call(lambda: v2_dino_views(SPEC)(images), max(3, args.batches // 4))
    out.update(views_batched_s=t_ours, views_v2_s=t_ref, views_ratio=t_ref / t_ours)
    print(f"views, 64 x (2x32 + 6x16 px), 1 thread: batched {t_ours:.3f} s/batch, per-image v2 {t_ref:.3f} "
          f"s/batch, ratio v2/batched {t_ref / t_ours:.1f}x")

    for workers in (0, 1):
        c = cfg.set("data.num_workers", workers)
        t = time.perf_counter()
        it = build_loader(c, SPEC, dataset=ds)
        next(it)
        first = time.perf_counter() - t
        per = seconds_per_call(it.__next__, args.batches)
        print(f"loader num_workers={workers}: first batch after {first:.2f} s, then {per:.3f} s/batch")
        out[f"loader_workers{workers}_s"] = per
        it.close()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
