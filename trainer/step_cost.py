"""What one run of a config costs on this machine, measured (``ablate --budget``): a few timed
optimiser steps, one timed evaluation (online k-NN and probe) and the set-up, on the thread count
the run will get. An estimate, not a promise: other load on the machine moves it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from trainer.config import Config
from trainer.data import build_dataset, build_loader, eval_tensor
from trainer.evaluate import knn_eval
from trainer.methods import build_method
from trainer.models.backbone import param_groups
from trainer.runtime import seed_everything

KNN_BANK = 2000  # the loop's bank (trainer.loop.KNN_BANK_MAX)
START_S = 4.0  # python, torch and timm imports of a fresh training process (measured: 3-5 s)


@dataclass(frozen=True)
class RunCost:
    """Seconds: ``start`` (imports, data, model) once, ``step`` per optimiser step, ``evaluate``
    per evaluation (the loop evaluates at step 0, every ``run.eval_every`` and at the end)."""

    start: float
    step: float
    evaluate: float

    def seconds(self, cfg: Config) -> float:
        """The estimated wall time of a whole run of ``cfg``."""
        steps, every = cfg.optim.steps, cfg.run.eval_every
        evaluations = 1 + steps // every + (steps % every != 0)
        return self.start + steps * self.step + evaluations * self.evaluate


def measure(cfg: Config, threads: int, steps: int = 3) -> RunCost:
    """Time ``steps`` optimiser steps of ``cfg`` (after one untimed warm-up step) and one
    evaluation, on ``threads`` intra-op threads, on the CPU (a budget is a CPU question)."""
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        t0 = time.perf_counter()
        seed_everything(cfg.run.seed)
        train = build_dataset(cfg.data, "train", cfg.run.seed)
        val = build_dataset(cfg.data, "val", cfg.run.seed)
        method = build_method(cfg)
        opt = torch.optim.AdamW(param_groups(method), lr=cfg.optim.lr)
        loader = build_loader(cfg.set("data.num_workers", 0), method.views(), "train", dataset=train)
        params = method.trainable_parameters()
        start = time.perf_counter() - t0

        def one(it: int) -> None:
            out = method(next(loader), it)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 3.0)
            method.on_optimizer_step(it)
            opt.step()
            method.after_step(it)

        one(0)
        t1 = time.perf_counter()
        for it in range(1, steps + 1):
            one(it)
        step = (time.perf_counter() - t1) / steps
        bank = eval_tensor(train)[:KNN_BANK]
        t2 = time.perf_counter()
        knn_eval(method.encoder(), bank, torch.as_tensor(train.labels[:KNN_BANK]), eval_tensor(val),
                 torch.as_tensor(val.labels), torch.device("cpu"), cfg.run.knn_k, cfg.run.knn_temp, method.feature)
        method.probe(eval_tensor(val if len(val) else train)[: cfg.run.probe_size])
        evaluate = time.perf_counter() - t2
        return RunCost(START_S + start, step, evaluate)
    finally:
        torch.set_num_threads(old)
