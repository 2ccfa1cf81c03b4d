"""Runs written through ``trainer.store.RunWriter`` with hand-made curves whose values are
known: for tests that need a given shape of curve (a collapse) or a failed run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from trainer.config import Config
from trainer.store import RunWriter

K = 32
LOG_K = math.log(K)


def dino_values(step: int, steps: int, arm: str) -> dict[str, float]:
    """DINO stats of one arm at ``step``: 'both' settles at 0.6 ln K with KL 0.2, 'centering-only'
    goes to ln K with KL 0 (uniform collapse), 'sharpening-only' to 0 (one-hot)."""
    t = step / steps
    target = {"both": 0.6, "centering-only": 1.0, "sharpening-only": 0.02, "neither": 0.5}[arm]
    ent = LOG_K * (0.95 + (target - 0.95) * t)
    kl = {"both": 0.2, "centering-only": 0.0005, "sharpening-only": 0.001, "neither": 0.001}[arm] + 0.3 * (1 - t) ** 3
    batch = LOG_K * (0.05 if arm == "sharpening-only" else 0.95)
    return {"train/loss": 4.0 - 2.0 * t, "opt/lr": 1e-3 * (1 - t), "opt/wd": 0.04 + 0.36 * t,
            "ema/momentum": 0.996 + 0.004 * t, "dino/teacher_temp": 0.04, "dino/teacher_entropy": ent,
            "dino/teacher_batch_entropy": batch, "dino/kl_teacher_student": kl, "dino/log_k": LOG_K,
            "dino/center_norm": 0.5 + t, "collapse/std_l2": 0.8, "collapse/rankme": 12.0,
            "perf/images_per_s": 500.0, "grad/norm": 1.0}


def write_run(root: Path, run_id: str, method: str, steps: int = 40, group: str = "", arm: str = "both",
              status: str = "finished", reason: str = "", log_every: int = 2) -> Path:
    """A whole run: run.json, scalars every ``log_every`` steps, probes at steps 20 and 40."""
    # short warm-ups and a fast teacher (0.9: mostly trained after ~7 steps) so the alarms judge these short runs
    overrides = [f"run.method={method}", f"dino.out_dim={K}", f"optim.steps={steps}", "optim.warmup_steps=2",
                 "dino.freeze_last_layer_steps=2", "dino.momentum_teacher=0.9"]
    if arm in ("sharpening-only", "neither"):
        overrides.append("dino.centering=none")
    if arm in ("centering-only", "neither"):
        overrides.append("dino.sharpening=false")
    cfg = Config().with_overrides(overrides).validate()
    w = RunWriter.create(root, run_id, cfg.to_dict(), method, group)
    rng = np.random.default_rng(0)
    for step in range(0, steps + 1, log_every):
        if method == "dino":
            values = dino_values(step, steps, arm)
        elif method == "mae":
            values = {"train/loss": 0.1 - 0.05 * step / steps, "mae/loss": 0.1 - 0.05 * step / steps,
                      "mae/psnr_masked": 12 + 6 * step / steps, "collapse/std_l2": 0.9, "collapse/rankme": 20.0}
        else:
            values = {"train/loss": 0.5 - 0.3 * step / steps, "ijepa/loss": 0.5 - 0.3 * step / steps,
                      "ijepa/target_std": 0.9, "ijepa/pred_std": 0.8, "collapse/rankme": 15.0,
                      "collapse/std_l2": 0.7}
        w.log_scalars(step, step / 10, values)
        if step and step % 20 == 0:
            w.log_scalars(step, step / 10, {"eval/knn_top1": 0.3 + 0.2 * step / steps})
            images = rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
            arrays = {"images": images, "embeddings": rng.normal(size=(4, 16)).astype(np.float32)}
            if method == "dino":
                arrays["attn"] = rng.random((4, 2, 8, 8)).astype(np.float32)
            elif method == "mae":
                arrays["reconstruction"] = images[:, ::-1]
            w.save_probe(step, arrays)
        w.set_progress(step)
    w.set_status(status, reason)
    w.close()
    return root / run_id
