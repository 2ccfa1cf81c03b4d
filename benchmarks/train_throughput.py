"""Training throughput, ours vs lightly's implementation of the same method, in one run, on the
same timm backbone, batch, views and head sizes (``benchmarks/lightly_peers.py``), with the model
FLOP utilisation of our step against the fp32 matmul peak measured in the same process.

Per method: images per second of the full step (data + model) and of the model step alone on
identical pre-made inputs, ours / lightly (> 1: we are faster). Ours runs as the trainer does
(statistics on one step in ``run.log_every``, gradient clipping, AdamW, EMA); lightly's as its
examples do. The arms alternate in blocks, so load on a shared machine falls on both. Then our
model step's FLOPs (``torch.utils.flop_counter``, forward and backward) over its time, against
the 1024^3 matmul peak and against the peak at the step's own matmul shapes (``mfu.py``).

    python benchmarks/train_throughput.py [--method dino,mae,ijepa] [--steps 8] [--rounds 3]
        [--set section.field=value ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere (make bench)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import lightly_peers  # noqa: E402
import mfu  # noqa: E402

from trainer.config import Config  # noqa: E402
from trainer.data import build_dataset, build_loader  # noqa: E402
from trainer.methods import build_method  # noqa: E402
from trainer.models.backbone import param_groups  # noqa: E402

# like for like: lightly's I-JEPA has no regulariser; DINO's last layer is trained from step 0 in both
METHOD_SETS = {"dino": ["dino.freeze_last_layer_steps=0"], "mae": [], "ijepa": ["ijepa.reg=none"]}


def our_step(method, opt, params, batch, it: int, log_every: int, clip: float) -> None:
    """The trainer's step (``trainer.loop``), without the store: statistics on logged steps only."""
    out = method(batch, it, with_stats=(it + 1) % log_every == 0)
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    method.on_optimizer_step(it)
    opt.step()
    method.after_step(it)


def measure(method_name: str, sets: list[str], steps: int, rounds: int, shape_min_s: float = 0.05) -> dict:
    """img/s of the four arms, their ratios, and our model step's FLOPs and utilisation."""
    cfg = Config().with_overrides(["data.num_train=1024", "data.num_val=8", f"run.method={method_name}",
                                   *METHOD_SETS[method_name], *sets]).validate()
    torch.manual_seed(0)
    ds = build_dataset(cfg.data, "train", cfg.run.seed)
    method = build_method(cfg)
    opt = torch.optim.AdamW(param_groups(method), lr=cfg.optim.lr)
    params = method.trainable_parameters()
    loader = build_loader(cfg, method.views(), dataset=ds)
    peer = lightly_peers.PEERS[method_name](cfg, ds.images)
    fixed = next(loader)  # identical inputs for the model-only comparison
    fixed_peer = peer.from_ours(fixed)
    every, clip = cfg.run.log_every, cfg.optim.clip_grad or math.inf
    it = [0]

    def ours(batch) -> None:
        our_step(method, opt, params, batch, it[0], every, clip)
        it[0] += 1

    arms = {"ours_full": lambda: ours(next(loader)), "lightly_full": lambda: peer.step(peer.next_batch()),
            "ours_model": lambda: ours(fixed), "lightly_model": lambda: peer.step(fixed_peer)}
    for fn in arms.values():  # warm-up every arm (allocator, DataLoader workers, kernels)
        fn()
    times = dict.fromkeys(arms, 0.0)
    for _ in range(rounds):
        for name, fn in arms.items():
            t = time.perf_counter()
            for _ in range(steps):
                fn()
            times[name] += time.perf_counter() - t
    b = cfg.data.batch_size
    n = rounds * steps
    out: dict = {k.replace("_full", "_full_images_per_s").replace("_model", "_model_images_per_s"): n * b / v
                 for k, v in times.items()}
    out["full_ratio"] = out["ours_full_images_per_s"] / out["lightly_full_images_per_s"]
    out["model_ratio"] = out["ours_model_images_per_s"] / out["lightly_model_images_per_s"]
    # FLOPs of our model step (no statistics: the step most steps are), its time, the peaks
    no_stats = lambda: our_step(method, opt, params, fixed, 0, 10**9, clip)  # noqa: E731
    out["flop_per_step"] = mfu.counted_flops(no_stats)
    matmuls = mfu.recorded_matmuls(no_stats)
    out["model_step_s"] = times["ours_model"] / n
    out["full_step_s"] = times["ours_full"] / n
    out["peak_1024_flop_per_s"] = mfu.matmul_peak()
    sp = mfu.shape_peak(matmuls, shape_min_s)
    out["peak_shapes_flop_per_s"] = sp["flop_per_s"]
    out["matmul_flop_share"] = sp["flop"] / out["flop_per_step"]
    for arm in ("model", "full"):
        rate = out["flop_per_step"] / out[f"{arm}_step_s"]
        out[f"mfu_{arm}_vs_1024"] = rate / out["peak_1024_flop_per_s"]
        out[f"mfu_{arm}_vs_shapes"] = rate / out["peak_shapes_flop_per_s"]
    out["setup"] = (f"{cfg.model.preset} {cfg.data.image_size} px, batch {b}, {torch.get_num_threads()} threads, "
                    f"{n} steps per arm" + (f", 2 global + {cfg.dino.n_local} local crops, K={cfg.dino.out_dim}"
                                            if method_name == "dino" else ""))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="dino,mae,ijepa", help="comma-separated methods")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per block")
    ap.add_argument("--rounds", type=int, default=3, help="alternating blocks (fair under shared-CPU load)")
    ap.add_argument("--shape-min-s", type=float, default=0.05, help="seconds timing each distinct matmul shape")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    results = {}
    for m in args.method.split(","):
        r = results[m] = measure(m, args.set, args.steps, args.rounds, args.shape_min_s)
        print(f"{m}: {r['setup']}")
        print(f"  full step (data + model): ours {r['ours_full_images_per_s']:7.1f} img/s   lightly "
              f"{r['lightly_full_images_per_s']:7.1f} img/s   ratio {r['full_ratio']:.2f}x")
        print(f"  model step only:          ours {r['ours_model_images_per_s']:7.1f} img/s   lightly "
              f"{r['lightly_model_images_per_s']:7.1f} img/s   ratio {r['model_ratio']:.2f}x")
        print(f"  {r['flop_per_step'] / 1e9:.2f} GFLOP/step ({r['matmul_flop_share']:.0%} in matmuls); model step "
              f"{r['mfu_model_vs_1024']:.0%} of the 1024^3 peak ({r['peak_1024_flop_per_s'] / 1e9:.0f} GFLOP/s), "
              f"{r['mfu_model_vs_shapes']:.0%} of the peak at its own shapes "
              f"({r['peak_shapes_flop_per_s'] / 1e9:.0f} GFLOP/s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
