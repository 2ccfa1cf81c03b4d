"""The training loop: one function, read top to bottom.

    for it in range(start, steps):
        schedules[it] -> optimiser;  loss, stats = method(batch, it);  backward;  clip;
        optimiser step;  method.after_step(it) (EMA);  log / evaluate / checkpoint

Non-finite losses stop the run (status ``failed`` with the step and reason; the last good
checkpoint stays). SIGTERM / Ctrl-C checkpoint and mark the run ``stopped``; ``resume()``
continues the same run, curves included.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from trainer.checkpoint import restore_training_state, save_training_state
from trainer.config import Config
from trainer.data import ImageDataset, build_dataset, build_loader, eval_tensor
from trainer.evaluate import knn_eval
from trainer.methods import Method, build_method
from trainer.models.backbone import param_groups
from trainer.progress import Progress
from trainer.runtime import Runtime, seed_everything, setup_runtime, teardown_runtime
from trainer.schedules import cosine_schedule
from trainer.stopping import StopFlag, stop_signals
from trainer.store import RunWriter, default_runs_dir

KNN_BANK_MAX = 2000  # train images in the online k-NN memory bank (keeps evaluation ~seconds on CPU)


def new_run_id(cfg: Config) -> str:
    return cfg.run.name or f"{cfg.run.method}-{cfg.data.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(cfg: Config, progress: bool = False, stop: StopFlag | None = None) -> Path:
    """Train a new run from ``cfg`` (validated here); returns the run folder. ``stop``: a flag
    shared with a launcher (a signal already caught stops this run after its first step)."""
    cfg = cfg.validate()
    rt = setup_runtime(cfg.run.device)
    # from here on a signal is never lost: a run folder, once created, always ends marked
    with stop_signals(stop or StopFlag(), rt.is_main) as flag:
        data = _datasets(cfg)  # bad data fails here, before a run folder exists
        root = Path(cfg.run.runs_dir) if cfg.run.runs_dir else default_runs_dir()
        run_id = new_run_id(cfg)
        writer = RunWriter.create(root, run_id, cfg.to_dict(), cfg.run.method, cfg.run.group) if rt.is_main else None
        return _run(cfg, rt, writer, root / run_id, data, None, progress, flag)


def resume(run_dir: Path | str, progress: bool = False) -> Path:
    """Continue a run from its latest checkpoint: same config, step, optimiser, schedules,
    EMA teacher / target encoder and DINO centre."""
    from trainer.models.loading import pick_checkpoint, run_config

    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    ck = pick_checkpoint(run_dir)
    rt = setup_runtime(cfg.run.device)
    with stop_signals(StopFlag(), rt.is_main) as flag:
        data = _datasets(cfg)
        writer = RunWriter.reopen(run_dir) if rt.is_main else None
        if writer is not None:
            writer.truncate_after(ck.step)
            writer.log_event(ck.step, "info", f"resumed from step {ck.step}")
        return _run(cfg, rt, writer, run_dir, data, ck, progress, flag)


def _datasets(cfg: Config) -> tuple[ImageDataset, ImageDataset]:
    return build_dataset(cfg.data, "train", cfg.run.seed), build_dataset(cfg.data, "val", cfg.run.seed)


def _run(cfg: Config, rt: Runtime, writer: RunWriter | None, run_dir: Path,
         data: tuple[ImageDataset, ImageDataset], resume_from, progress: bool, stop: StopFlag) -> Path:
    o, r = cfg.optim, cfg.run
    seed_everything(r.seed)  # same init on every rank; data and masks are seeded per rank
    method: Method = build_method(cfg).to(rt.device)
    opt = torch.optim.AdamW(param_groups(method), lr=o.lr, betas=(o.beta1, o.beta2))
    start = restore_training_state(resume_from, method, opt) if resume_from is not None else 0
    model = DistributedDataParallel(method) if rt.distributed else method
    lr_schedule = cosine_schedule(o.lr, o.min_lr, o.steps, o.warmup_steps)
    wd_schedule = cosine_schedule(o.weight_decay, o.weight_decay_end, o.steps)

    train_ds, val_ds = data
    loader = build_loader(cfg, method.views(), "train", start_step=start, rank=rt.rank, world_size=rt.world_size,
                          dataset=train_ds)
    bank_idx = np.random.default_rng(r.seed).permutation(len(train_ds))[:KNN_BANK_MAX]
    bank_images, bank_labels = eval_tensor(train_ds)[bank_idx], torch.as_tensor(train_ds.labels[bank_idx])
    val_images, val_labels = eval_tensor(val_ds), torch.as_tensor(val_ds.labels)
    probe_ds = val_ds if len(val_ds) else train_ds  # a user folder may have no validation images
    probe_images = eval_tensor(probe_ds)[: r.probe_size].to(rt.device)
    images_per_step = cfg.data.batch_size * rt.world_size

    def epoch(step: int) -> float:
        return step * images_per_step / max(len(train_ds), 1)

    def evaluate(step: int) -> None:
        if writer is None:
            return
        knn = knn_eval(method.encoder(), bank_images, bank_labels, val_images, val_labels, rt.device,
                       r.knn_k, r.knn_temp, method.knn_feature)
        arrays, pstats = method.probe(probe_images)
        arrays["images"] = probe_ds.images[: r.probe_size]
        writer.save_probe(step, arrays)
        writer.log_scalars(step, epoch(step), {"eval/knn_top1": knn, **pstats})

    def checkpoint(step: int) -> None:
        if writer is not None:
            save_training_state(writer, step, method, opt, keep=r.keep_ckpts)
            writer.set_progress(step)

    bar = Progress(o.steps, start, enabled=progress and rt.is_main)
    if start == 0:
        evaluate(0)  # the random-initialisation reference for every curve
    params = method.trainable_parameters()
    step, t_last, n_last = start, time.perf_counter(), start
    try:
        for it in range(start, o.steps):
            batch = next(loader).to(rt.device)
            for group in opt.param_groups:
                group["lr"] = float(lr_schedule[it])
                if group.get("decay", True):
                    group["weight_decay"] = float(wd_schedule[it])
            with rt.autocast():
                out = model(batch, it)
            loss = out.loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss ({loss.item()}) at step {it + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, o.clip_grad if o.clip_grad > 0 else math.inf)
            if not torch.isfinite(grad_norm):
                raise FloatingPointError(f"non-finite gradient norm at step {it + 1}")
            method.on_optimizer_step(it)
            opt.step()
            method.after_step(it)
            step = it + 1

            if writer is not None and (step % r.log_every == 0 or step == o.steps):
                now = time.perf_counter()
                stats = {k: float(v) for k, v in out.stats.items()}
                stats.update({
                    "train/loss": loss.item(), "opt/lr": float(lr_schedule[it]), "opt/wd": float(wd_schedule[it]),
                    "grad/norm": float(grad_norm),
                    "perf/images_per_s": (step - n_last) * images_per_step / (now - t_last),
                })
                if hasattr(method, "ema_momentum"):
                    stats["ema/momentum"] = method.ema_momentum(it)
                writer.log_scalars(step, epoch(step), stats)
                bar.update(step, stats)
                t_last, n_last = time.perf_counter(), step
            if step % r.eval_every == 0 or step == o.steps:
                evaluate(step)
            if step % r.ckpt_every == 0 or step == o.steps:
                checkpoint(step)
            if stop.reason:
                checkpoint(step)
                if writer is not None:
                    writer.log_event(step, "warning", stop.reason)
                    writer.set_status("stopped", stop.reason)
                return run_dir
        if writer is not None:
            writer.set_status("finished")
    except FloatingPointError as e:
        if writer is not None:  # keep the last good checkpoint; say where and why it broke
            writer.log_event(step, "error", str(e))
            writer.set_status("failed", f"{e}; the last good checkpoint is kept")
        raise
    except BaseException as e:
        if writer is not None:
            writer.log_event(step, "error", f"{type(e).__name__}: {e}")
            writer.set_status("failed", f"{type(e).__name__}: {e}")
        raise
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        teardown_runtime()
    return run_dir
