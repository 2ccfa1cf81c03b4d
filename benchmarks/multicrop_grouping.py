"""DINO's multi-crop grouping: one backbone pass per crop resolution (``MultiCropWrapper``: the
2 global crops in one batch, the local crops in another) against one pass per crop, student
forward + backward on the same crops, same run; the ratio is per-crop time / grouped time.

    python benchmarks/multicrop_grouping.py [--reps 5] [--set a.b=c ...] [--json out]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere (make bench)

from trainer.config import Config  # noqa: E402
from trainer.data import build_dataset, build_loader  # noqa: E402
from trainer.methods import build_method  # noqa: E402


def per_crop(student, crops: list[torch.Tensor]) -> list[torch.Tensor]:
    """The ungrouped reference: backbone and head once per crop. V x (B, K) logits."""
    return [student.head(student.backbone.forward_features(c)[:, 0]) for c in crops]


def grouped(student, crops: list[torch.Tensor]) -> list[torch.Tensor]:
    return student(crops)[0]


def compare(sets: list[str], reps: int) -> dict:
    cfg = Config().with_overrides(["run.method=dino", "data.num_train=256", "data.num_val=8", *sets]).validate()
    torch.manual_seed(0)
    method = build_method(cfg)
    crops = next(build_loader(cfg, method.views(), dataset=build_dataset(cfg.data, "train", 0))).views
    student = method.student
    # the same logits both ways (the grouping changes the batching only)
    torch.testing.assert_close(torch.stack(grouped(student, crops)), torch.stack(per_crop(student, crops)),
                               atol=1e-4, rtol=1e-4)
    times: dict[str, list[float]] = {"grouped": [], "per_crop": []}
    for i in range(reps + 1):  # alternating, the first of each untimed
        for name, fn in (("grouped", grouped), ("per_crop", per_crop)):
            t = time.perf_counter()
            sum(x.float().pow(2).mean() for x in fn(student, crops)).backward()
            dt = time.perf_counter() - t
            student.zero_grad(set_to_none=True)
            if i:
                times[name].append(dt)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"grouped_s": med["grouped"], "per_crop_s": med["per_crop"], "ratio": med["per_crop"] / med["grouped"],
            "setup": f"{cfg.model.preset}, batch {cfg.data.batch_size}, 2 x {cfg.data.image_size} px + "
                     f"{cfg.dino.n_local} x {crops[-1].shape[-1]} px crops, {torch.get_num_threads()} threads"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    r = compare(args.set, args.reps)
    print(f"multi-crop, {r['setup']}: grouped {r['grouped_s'] * 1e3:.1f} ms, one pass per crop "
          f"{r['per_crop_s'] * 1e3:.1f} ms, ratio {r['ratio']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
