"""Where a training step's time goes, per method, in the trainer's own order of work
(``trainer.loop``): data and augmentation (the wait for the loader's next batch), forward,
backward (with gradient clipping), optimiser, EMA, statistics, logging, probes and evaluation.

Statistics, logging and evaluation run on some steps only; each is timed where it runs and
spread over the steps it serves: statistics = (forward with them - forward without) /
``run.log_every``, logging = (the host copy of the stats + the SQLite write) / ``run.log_every``,
evaluation = (online k-NN + probe + its npz) / ``run.eval_every``. Forward alternates with and
without statistics, so both see the same load; medians over the steps.

    python benchmarks/step_phases.py [--method dino,mae,ijepa] [--steps 20] [--set a.b=c ...] [--json out]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere (make bench)

from core import metrics as M  # noqa: E402
from core.probes import LAYOUT_KEY, layout_array  # noqa: E402
from trainer.config import Config  # noqa: E402
from trainer.data import build_dataset, build_loader, eval_tensor  # noqa: E402
from trainer.evaluate import knn_eval  # noqa: E402
from trainer.loop import KNN_BANK_MAX, _mean_over_ranks  # noqa: E402
from trainer.methods import build_method  # noqa: E402
from trainer.models.backbone import param_groups  # noqa: E402
from trainer.runtime import Runtime  # noqa: E402
from trainer.store import RunWriter  # noqa: E402

PHASES = ("data", "forward", "backward", "optimiser", "ema", "statistics", "logging", "evaluation")


def phases(method_name: str, sets: list[str], steps: int) -> dict:
    """Seconds per step of each phase (``seconds``), their shares of the whole (``share``)."""
    cfg = Config().with_overrides([f"run.method={method_name}", *sets]).validate()
    r = cfg.run
    torch.manual_seed(0)
    train_ds, val_ds = build_dataset(cfg.data, "train", r.seed), build_dataset(cfg.data, "val", r.seed)
    method = build_method(cfg)
    opt = torch.optim.AdamW(param_groups(method), lr=cfg.optim.lr)
    params = method.trainable_parameters()
    loader = build_loader(cfg, method.views(), dataset=train_ds)
    next(loader)  # workers started, as the loop does before its first step
    bank_idx = np.random.default_rng(r.seed).permutation(len(train_ds))[:KNN_BANK_MAX]
    bank, bank_labels = eval_tensor(train_ds)[bank_idx], torch.as_tensor(train_ds.labels[bank_idx])
    val, val_labels = eval_tensor(val_ds), torch.as_tensor(val_ds.labels)
    probe_images = eval_tensor(val_ds)[: r.probe_size]
    rt, cpu = Runtime(torch.device("cpu")), torch.device("cpu")
    t: dict[str, list[float]] = {k: [] for k in ("data", "forward", "forward_stats", "backward", "optimiser", "ema",
                                                 "logging")}
    with tempfile.TemporaryDirectory() as tmp:
        writer = RunWriter.create(tmp, "phases", cfg.to_dict(), method_name, "")
        for it in range(steps + 2):  # the first two steps warm up
            with_stats = it % 2 == 0
            clock = [time.perf_counter()]
            tick = lambda clock=clock: clock.append(time.perf_counter())  # noqa: E731 - marks a phase's end
            batch = next(loader).to(cpu)
            tick()  # data
            out = method(batch, it, with_stats=with_stats)
            tick()  # forward
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.clip_grad)
            tick()  # backward
            method.on_optimizer_step(it)
            opt.step()
            tick()  # optimiser
            method.after_step(it)
            tick()  # EMA
            if with_stats:
                stats = _mean_over_ranks({M.TRAIN_LOSS: out.loss.detach(), M.GRAD_NORM: grad_norm, **out.stats}, rt)
                writer.log_scalars(it + 1, 0.0, {**stats, **method.schedule_stats(it)})
                tick()  # logging
            if it < 2:
                continue
            dts = [b - a for a, b in zip(clock, clock[1:])]
            names = ["data", "forward_stats" if with_stats else "forward", "backward", "optimiser", "ema", "logging"]
            for k, v in zip(names, dts):
                t[k].append(v)

        def evaluate():
            knn_eval(method.encoder(), bank, bank_labels, val, val_labels, cpu, r.knn_k, r.knn_temp, method.feature)
            arrays, _ = method.probe(probe_images)
            writer.save_probe(0, {**arrays, LAYOUT_KEY: layout_array(method.probe_layout)})

        t0 = time.perf_counter()
        evaluate()
        dt_eval = time.perf_counter() - t0
        writer.close()
    med = {k: statistics.median(v) for k, v in t.items()}
    sec = {"data": med["data"], "forward": med["forward"], "backward": med["backward"],
           "optimiser": med["optimiser"], "ema": med["ema"],
           "statistics": max(med["forward_stats"] - med["forward"], 0.0) / r.log_every,
           "logging": med["logging"] / r.log_every, "evaluation": dt_eval / r.eval_every}
    total = sum(sec.values())
    return {"seconds": sec, "share": {k: v / total for k, v in sec.items()}, "step_s": total,
            "setup": f"{cfg.model.preset} {cfg.data.image_size} px, batch {cfg.data.batch_size}, "
                     f"{cfg.data.num_workers} loader worker(s), log every {r.log_every}, evaluate every "
                     f"{r.eval_every} (k-NN bank {len(bank)}, {len(val)} queries), {steps} steps, "
                     f"{torch.get_num_threads()} threads"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="dino,mae,ijepa")
    ap.add_argument("--steps", type=int, default=20, help="timed steps (half with statistics)")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = {}
    for m in args.method.split(","):
        res = results[m] = phases(m, args.set, args.steps)
        print(f"{m}: {res['setup']}; step {res['step_s'] * 1e3:.1f} ms")
        print("  " + "  ".join(f"{k} {res['seconds'][k] * 1e3:.1f} ms ({res['share'][k]:.0%})" for k in PHASES),
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
