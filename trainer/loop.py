"""The training loop: one function, read top to bottom.

    for it in range(start, steps):
        schedules[it] -> optimiser;  loss, stats = method(batch, it);  backward;  clip;
        optimiser step;  method.after_step(it) (EMA);  log / evaluate / checkpoint

Everything that can fail on a bad config (model, schedules, loader) is set up before the run
folder is created, so a failed start leaves nothing behind. Non-finite losses stop the run
(status ``failed`` with the step and reason; the last good checkpoint stays); so does a store
that can no longer be written (a full disk). SIGTERM / Ctrl-C checkpoint, mark the run
``stopped`` and raise :class:`RunStopped`; ``resume()`` continues the same run, curves included.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from core import metrics as M
from core.distributed import all_reduce_mean
from core.probes import LAYOUT_KEY, check_probe, layout_array
from trainer.checkpoint import restore_newest_good, save_training_state
from trainer.config import Config
from trainer.data import ImageDataset, build_dataset, build_loader, eval_tensor
from trainer.evaluate import knn_eval, knn_eval_pixels
from trainer.lock import RunLock
from trainer.methods import Method, build_method
from trainer.models.backbone import param_groups
from trainer.progress import Progress
from trainer.runtime import Runtime, seed_everything, setup_runtime, teardown_runtime
from trainer.schedules import cosine_schedule
from trainer.stopping import StopFlag, stop_signals
from trainer.store import (
    CheckpointInfo,
    RunWriter,
    StoreError,
    check_new_run,
    default_runs_dir,
    list_checkpoints,
    lock_run,
)

KNN_BANK_MAX = 2000  # train images in the online k-NN memory bank (keeps evaluation ~seconds on CPU)


class RunStopped(Exception):
    """The run was stopped by a signal after saving a checkpoint and marking itself
    ``stopped``; ``exit_code`` is the shell's 128 + signal (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, run_dir: Path, signum: int, step: int):
        self.run_dir, self.signum, self.step = run_dir, signum, step
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}, checkpoint saved; "
                         f"continue with: python -m trainer resume {run_dir}")


def new_run_id(cfg: Config) -> str:
    return cfg.run.name or f"{cfg.run.method}-{cfg.data.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(cfg: Config, progress: bool = False, stop: StopFlag | None = None) -> Path:
    """Train a new run from ``cfg`` (validated here); returns the run folder. Raises
    :class:`RunStopped` when a signal stopped it. ``stop``: a flag shared with a launcher (a
    signal already caught stops this run after its first step)."""
    cfg = cfg.validate()
    rt = setup_runtime(cfg.run.device)
    root = Path(cfg.run.runs_dir) if cfg.run.runs_dir else default_runs_dir()
    run_id = new_run_id(cfg)
    # from here on a signal is never lost: a run folder, once created, always ends marked
    with stop_signals(stop or StopFlag(), rt.is_main) as flag:
        if rt.is_main:  # an unwritable store or a taken name is refused before the data loads
            check_new_run(root, run_id)
        data = _datasets(cfg)  # bad data fails here, before a run folder exists
        return _run(cfg, rt, root / run_id, data, None, progress, flag)


def resume(run_dir: Path | str, progress: bool = False, step: int | None = None,
           stop: StopFlag | None = None) -> Path:
    """Continue a run from its latest checkpoint (or the one at ``step``): same config, step,
    optimiser, schedules, EMA teacher / target encoder and DINO centre. A newest checkpoint
    that cannot be restored is skipped for the one before (said on stderr and in the events);
    a run killed before its first checkpoint starts again from step 0. Refused while another
    process writes the run. ``stop``: a flag shared with a launcher, as for :func:`train`."""
    from trainer.loading import pick_checkpoint, run_config

    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    rt = setup_runtime(cfg.run.device)
    with stop_signals(stop or StopFlag(), rt.is_main) as flag:
        lock = lock_run(run_dir) if rt.is_main else None  # a live run is refused before data loads
        try:
            # no checkpoint yet (killed before the first one was whole): start it again from step 0
            candidates = [pick_checkpoint(run_dir, step)] if step is not None else list_checkpoints(run_dir)
            data = _datasets(cfg)
            return _run(cfg, rt, run_dir, data, candidates, progress, flag, lock)
        finally:
            if lock is not None:
                lock.release()  # a no-op once the writer has closed it


def _datasets(cfg: Config) -> tuple[ImageDataset, ImageDataset]:
    data = build_dataset(cfg.data, "train", cfg.run.seed), build_dataset(cfg.data, "val", cfg.run.seed)
    for split, ds in zip(("train", "val"), data):
        if ds.skipped:  # junk or refused images in a user's folder: say which and why
            why = "; ".join(ds.skipped_reasons or ds.skipped_examples)
            print(f"warning: {ds.skipped} files of the {split} split were skipped, e.g. {why}", file=sys.stderr)
    return data


def _open_writer(cfg: Config, run_dir: Path, resume_from: list[CheckpointInfo] | None, start: int,
                 skipped: list[str], lock: RunLock | None) -> RunWriter:
    """Create the run folder, or reopen it for a resume: say which checkpoints were passed over,
    and cut what the abandoned timeline wrote after ``start`` (from scratch: step 0's rows too)."""
    if resume_from is None:
        return RunWriter.create(run_dir.parent, run_dir.name, cfg.to_dict(), cfg.run.method, cfg.run.group)
    writer = RunWriter.reopen(run_dir, lock=lock)
    for line in skipped:
        print(f"warning: checkpoint {line}; resuming from step {start} instead", file=sys.stderr)
        writer.log_event(start, "warning", f"checkpoint {line}; resumed from step {start} instead")
    if not resume_from:
        print(f"warning: run '{run_dir}' has no checkpoint yet; starting it again from step 0", file=sys.stderr)
    writer.truncate_after(start if resume_from else -1)
    writer.log_event(start, "info", f"resumed from step {start}" if resume_from else
                     "no checkpoint yet: started again from step 0")
    return writer


def _mean_over_ranks(values: dict[str, torch.Tensor | float], rt: Runtime) -> dict[str, float]:
    """Python floats of one step's loss and statistics, averaged over the ranks under DDP (one
    collective); the tensors cross to the host in one copy. The loss is then the global batch's,
    as one process logs it; statistics that are not batch means (std, entropy of the batch mean,
    ...) are the mean of the ranks' values."""
    if not values:
        return {}
    x = torch.stack([torch.as_tensor(v, dtype=torch.float64).to(rt.device).reshape(()) for v in values.values()])
    if rt.distributed:
        x = all_reduce_mean(x)
    return dict(zip(values, x.cpu().tolist()))


class _Finite:
    """Whether every step so far had a finite loss and gradient norm, kept on the device: a check
    per step would be a host sync per step (on a GPU the queue drains and the host stops running
    ahead). ``first_bad`` reads it, one copy, before anything reads or writes the weights (log,
    evaluation, checkpoint, stop, end), so no bad step's weights are ever saved, and names the
    first bad step and its cause as a per-step check would."""

    def __init__(self, device: torch.device):
        # first bad step (1-based; 0 = none), whether its loss was non-finite, that loss
        self.state = torch.zeros(3, dtype=torch.float64, device=device)

    def record(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        loss = loss.detach().to(torch.float64)
        bad_loss = ~torch.isfinite(loss)
        bad = bad_loss | ~torch.isfinite(grad_norm)
        new = torch.stack([torch.full_like(loss, step), bad_loss.to(torch.float64), loss])
        self.state = torch.where(bad & (self.state[0] == 0), new, self.state)

    def first_bad(self) -> tuple[int, str] | None:
        """(first bad step, why) or None: one host copy."""
        step, bad_loss, loss = self.state.cpu().tolist()
        if not step:
            return None
        why = f"non-finite loss ({loss})" if bad_loss else "non-finite gradient norm"
        return int(step), f"{why} at step {int(step)}"


def _run(cfg: Config, rt: Runtime, run_dir: Path, data: tuple[ImageDataset, ImageDataset],
         resume_from: list[CheckpointInfo] | None, progress: bool, stop: StopFlag,
         lock: RunLock | None = None) -> Path:
    o, r = cfg.optim, cfg.run
    # --- set-up: everything that can fail on a bad config runs before the run is written ---
    seed_everything(r.seed)  # same init on every rank; data and masks are seeded per rank
    method: Method = build_method(cfg).to(rt.device)
    opt = torch.optim.AdamW(param_groups(method), lr=o.lr, betas=(o.beta1, o.beta2))
    start, skipped = 0, []
    if resume_from:
        ck, skipped = restore_newest_good(resume_from, method, opt)
        start = ck.step
    model = DistributedDataParallel(method) if rt.distributed else method
    lr_schedule = cosine_schedule(o.lr, o.min_lr, o.steps, o.warmup_steps)
    wd_schedule = cosine_schedule(o.weight_decay, o.weight_decay_end, o.steps)

    train_ds, val_ds = data
    loader = build_loader(cfg, method.views(), "train", start_step=start, rank=rt.rank, world_size=rt.world_size,
                          dataset=train_ds)
    # the first batch now: a broken data pipeline fails before the run folder exists, and worker
    # processes fork before the writer's heartbeat thread starts
    loader = itertools.chain([next(loader)], loader)
    bank_idx = np.random.default_rng(r.seed).permutation(len(train_ds))[:KNN_BANK_MAX]
    bank_images, bank_labels = eval_tensor(train_ds)[bank_idx], torch.as_tensor(train_ds.labels[bank_idx])
    val_images, val_labels = eval_tensor(val_ds), torch.as_tensor(val_ds.labels)
    probe_ds = val_ds if len(val_ds) else train_ds  # a user folder may have no validation images
    probe_images = eval_tensor(probe_ds)[: r.probe_size].to(rt.device)
    images_per_step = cfg.data.batch_size * rt.world_size

    writer: RunWriter | None = None

    def epoch(step: int) -> float:
        return step * images_per_step / max(len(train_ds), 1)

    def evaluate(step: int) -> None:
        # every rank extracts its share of the k-NN features (a collective); rank 0 probes and writes
        knn = knn_eval(method.encoder(), bank_images, bank_labels, val_images, val_labels, rt.device,
                       r.knn_k, r.knn_temp, method.feature)
        if writer is None:
            return
        arrays, pstats = method.probe(probe_images)
        check_probe(method.probe_layout, arrays)  # exactly the arrays the method declares
        writer.save_probe(step, {**arrays, LAYOUT_KEY: layout_array(method.probe_layout)})
        refs = {}
        if step == 0:  # the raw-pixel reference, once: step 0's k-NN is the random-init one
            refs[M.EVAL_KNN_TOP1_PIXELS] = knn_eval_pixels(bank_images, bank_labels, val_images, val_labels,
                                                           r.knn_k, r.knn_temp)
        writer.log_scalars(step, epoch(step), {M.EVAL_KNN_TOP1: knn, **refs, **pstats})

    saved = [start if resume_from else -1]

    def checkpoint(step: int) -> None:
        if writer is not None and saved[0] != step:  # a stop right after a periodic save saves once
            save_training_state(writer, step, method, opt, keep=r.keep_ckpts)
            writer.set_progress(step)
            saved[0] = step

    bar = Progress(o.steps, start, enabled=progress and rt.is_main)
    params = method.trainable_parameters()
    step, t_last, n_last = start, time.perf_counter(), start
    try:
        if rt.is_main:  # the run folder appears only now, after every set-up step has worked
            writer = _open_writer(cfg, run_dir, resume_from, start, skipped, lock)
        if start == 0:
            evaluate(0)  # the random-initialisation reference for every curve
        finite = _Finite(rt.device)
        for it in range(start, o.steps):
            step_no = it + 1
            logs = step_no % r.log_every == 0 or step_no == o.steps
            batch = next(loader).to(rt.device)
            for group in opt.param_groups:
                group["lr"] = float(lr_schedule[it])
                if group.get("decay", True):
                    group["weight_decay"] = float(wd_schedule[it])
            with rt.autocast():
                out = model(batch, it, with_stats=logs)  # statistics only on the steps that log them
            loss = out.loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, o.clip_grad if o.clip_grad > 0 else math.inf)
            finite.record(step_no, loss, grad_norm)  # checked on the device; read below when due
            method.on_optimizer_step(it)
            opt.step()
            method.after_step(it)
            evaluates, saves = step_no % r.eval_every == 0 or step_no == o.steps, step_no % r.ckpt_every == 0
            # before anything reads or writes the weights: the first bad step stops the run there
            if (logs or evaluates or saves or stop.reason) and (bad := finite.first_bad()):
                step = bad[0] - 1  # the last good step
                raise FloatingPointError(bad[1])
            step = step_no

            if logs:  # every rank: the mean is a collective
                stats = _mean_over_ranks({M.TRAIN_LOSS: loss.detach(), M.GRAD_NORM: grad_norm, **out.stats}, rt)
            if writer is not None and logs:
                now = time.perf_counter()
                stats.update({
                    M.OPT_LR: float(lr_schedule[it]), M.OPT_WD: float(wd_schedule[it]),
                    M.PERF_IMAGES_PER_S: (step - n_last) * images_per_step / (now - t_last),
                    **method.schedule_stats(it),
                })
                writer.log_scalars(step, epoch(step), stats)
                bar.update(step, stats)
                t_last, n_last = time.perf_counter(), step
            if evaluates:
                evaluate(step)
            if saves or step == o.steps:
                checkpoint(step)
            if stop.reason:
                checkpoint(step)
                if writer is not None:
                    writer.log_event(step, "warning", stop.reason)
                    writer.set_status("stopped", stop.reason)
                raise RunStopped(run_dir, stop.signum, step)
        if writer is not None:
            writer.set_status("finished")
    except RunStopped:
        raise
    except FloatingPointError as e:
        if writer is not None:  # keep the last good checkpoint; say where and why it broke
            with contextlib.suppress(StoreError):
                writer.log_event(step, "error", str(e))
            with contextlib.suppress(StoreError):
                writer.set_status("failed", f"{e}; the last good checkpoint is kept")
        raise
    except BaseException as e:
        if writer is not None:  # e.g. a full disk: record why, as far as the disk lets us
            reason = str(e) if isinstance(e, StoreError) else f"{type(e).__name__}: {e}"
            with contextlib.suppress(StoreError):
                writer.log_event(step, "error", reason)
            with contextlib.suppress(StoreError):
                writer.set_status("failed", reason)
        raise
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        teardown_runtime()
    return run_dir
