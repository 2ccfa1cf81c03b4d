"""One GPU, one call: DINO, MAE and I-JEPA on ViT-S/16 at 224 px for a fixed number of steps,
then the analysis of one checkpoint; prints images per second and model FLOP utilisation.

Per method: the model step (forward under the trainer's bf16 autocast, backward, clip, AdamW,
EMA) on one batch from the trainer's own loader, timed with CUDA syncs; its FLOPs counted by
``torch.utils.flop_counter`` (forward and backward); utilisation = FLOP/s over the bf16
matmul peak measured in the same run. Then the whole loop (``python -m trainer train``: data,
probes, k-NN, checkpoints on the device) for a few steps, and ``python -m analysis`` on the
DINO checkpoint. ``benchmarks/gpu_check.sh`` runs this and refuses a machine without CUDA.

    python benchmarks/gpu_check.py [--steps 20] [--batch 64] [--out /tmp/gpu_check]
    python benchmarks/gpu_check.py --device cpu --preset cpu-tiny --size 32 --steps 2  # the logic, on a CPU
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from trainer.config import Config  # noqa: E402
from trainer.data import build_dataset, build_loader  # noqa: E402
from trainer.methods import build_method  # noqa: E402
from trainer.models.backbone import param_groups  # noqa: E402
from trainer.runtime import Runtime  # noqa: E402

METHODS = ("dino", "mae", "ijepa")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, reps: int = 10) -> float:
    """FLOP/s of an n x n x n matmul in ``dtype``: the peak the utilisation is measured against."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(2):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def model_step(cfg: Config, rt: Runtime, steps: int) -> dict[str, float]:
    """Images/s and FLOPs of the trainer's step on one real batch (the loop's order of work)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(cfg.run.seed)
    method = build_method(cfg).to(rt.device)
    opt = torch.optim.AdamW(param_groups(method), lr=1e-4)
    params = method.trainable_parameters()
    ds = build_dataset(cfg.data, "train", cfg.run.seed)
    batch = next(build_loader(cfg, method.views(), dataset=ds)).to(rt.device)

    def step(it: int) -> None:
        with rt.autocast():
            out = method(batch, it, with_stats=(it + 1) % cfg.run.log_every == 0)  # as the loop: stats on log steps
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        method.on_optimizer_step(it)
        opt.step()
        method.after_step(it)

    with FlopCounterMode(display=False) as fc:
        step(0)
    for it in range(1, 3):  # warm-up: kernels chosen, allocator settled
        step(it)
    sync(rt.device)
    t = time.perf_counter()
    for it in range(3, 3 + steps):
        step(it)
    sync(rt.device)
    dt = (time.perf_counter() - t) / steps
    return {"images_per_s": cfg.data.batch_size / dt, "step_s": dt, "flop_per_step": float(fc.get_total_flops())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=20, help="timed model steps per method")
    p.add_argument("--run-steps", type=int, default=30, help="steps of each whole-loop run")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--preset", default="vit-small")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--out", default="/tmp/sslscope-gpu-check")
    a = p.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU is visible (torch.cuda.is_available() is False); run it on a GPU "
              "machine, or pass --device cpu to check the logic only", file=sys.stderr)
        return 2
    device = torch.device(a.device)
    rt = Runtime(device)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_peak(device, dtype, 8192 if device.type == "cuda" else 512)
    print(f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}; "
          f"{dtype} matmul peak {peak / 1e12:.2f} TFLOP/s", flush=True)
    sets = [f"model.preset={a.preset}", f"data.image_size={a.size}", f"data.batch_size={a.batch}",
            f"data.num_train={max(4 * a.batch, 256)}", "data.num_val=128",
            f"data.num_workers={min(4, os.cpu_count() or 1)}",
            f"run.device={a.device}", "optim.warmup_steps=1", "dino.freeze_last_layer_steps=1"]
    results = {"device": a.device, "peak_flops": peak, "methods": {}}
    for m in METHODS:
        cfg = Config().with_overrides(sets + [f"run.method={m}", f"optim.steps={a.steps + 3}"]).validate()
        r = model_step(cfg, rt, a.steps)
        r["mfu"] = r["flop_per_step"] / r["step_s"] / peak
        results["methods"][m] = r
        print(f"{m:6s} model step: {r['images_per_s']:8.1f} img/s, {r['flop_per_step'] / 1e9:8.1f} GFLOP/step, "
              f"{r['mfu']:6.1%} of peak", flush=True)
        torch.cuda.empty_cache() if device.type == "cuda" else None
    runs = out / "runs"
    for m in METHODS:  # the whole loop: data, probes, k-NN and checkpoints on the device
        name = f"gpu-check-{m}"
        cmd = [sys.executable, "-m", "trainer", "train", "--method", m, "--steps", str(a.run_steps),
               "--runs-dir", str(runs), "--name", name, "--device", a.device]
        cmd += [x for s in sets + [f"run.eval_every={a.run_steps}", f"run.ckpt_every={a.run_steps}",
                                   "run.log_every=5"] for x in ("--set", s)]
        t = time.perf_counter()
        subprocess.run(["rm", "-rf", str(runs / name)], check=True)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"gpu_check: the {m} run failed:\n{r.stderr[-3000:]}", file=sys.stderr)
            return 1
        from trainer.metrics_db import read_metric

        _, ips = read_metric(runs / name, "perf/images_per_s")
        full = float(ips[-1]) if len(ips) else math.nan
        results["methods"][m]["loop_images_per_s"] = full
        print(f"{m:6s} whole loop: {full:8.1f} img/s (last logged), run of {a.run_steps} steps in "
              f"{time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "analysis", str(runs / "gpu-check-dino"), "--out", str(out / "analysis"),
                        "--what", "knn,attention,diagnose"], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"gpu_check: the analysis failed:\n{r.stderr[-3000:]}", file=sys.stderr)
        return 1
    print(f"analysis of the DINO checkpoint in {time.perf_counter() - t:.0f} s -> {out / 'analysis'}")
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2))
    print(f"figures in {out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
