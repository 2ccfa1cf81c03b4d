"""A PyTorch Lightning ``Callback`` that watches a ``LightningModule`` with a ``Monitor``
(Lightning is an optional dependency: only this module imports it, ``lightning.pytorch`` first,
then ``pytorch_lightning``).

    trainer = pl.Trainer(callbacks=[MonitorCallback("runs", name="my-dino", every=10)])

Every ``every`` optimiser steps the callback logs the loss that ``training_step`` returned, the
first parameter group's learning rate and weight decay and the values logged with ``self.log``
(known aliases mapped, ``core.metrics`` names kept). ``training_step`` may hand the monitor its
tensors under the key ``"sslscope"`` of its output: a mapping from a ``Monitor`` method name to
its keyword arguments, e.g.

    return {"loss": loss, "sslscope": {"dino": dict(teacher_logits=t, student_logits=s, **loss_params(crit, epoch=e)),
                                       "embeddings": dict(z=teacher_cls)}}

(build ``loss_params`` before the loss moves the centre). The rank is the trainer's global
rank: only rank 0 writes. The run ends ``finished`` with ``fit``, ``failed`` (``stopped`` for
Ctrl-C) on an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from core import metrics as M
from sslscope.monitor.monitor import Monitor

try:
    from lightning.pytorch import Callback
except ImportError:
    try:
        from pytorch_lightning import Callback
    except ImportError:
        raise ImportError("sslscope.monitor.lightning needs PyTorch Lightning: pip install lightning "
                          "(the Monitor itself does not)") from None

OUTPUT_KEY = "sslscope"
METHODS = ("dino", "embeddings", "tokens", "vit_tokens", "mae", "jepa", "scalars")


class MonitorCallback(Callback):
    """Creates the run at ``fit`` (rank 0), logs every ``every`` optimiser steps, closes it at the end.
    Arguments as ``Monitor``'s; ``config`` defaults to the module's ``hparams``."""

    def __init__(self, runs_dir: str | Path | None = None, name: str = "lightning", method: str = "dino",
                 config: Any = None, every: int = 10, group: str = ""):
        super().__init__()
        self.runs_dir, self.name, self.method, self.config = runs_dir, name, method, config
        self.every, self.group = every, group
        self.monitor: Monitor | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or self.monitor is not None:
            return
        config = self.config if self.config is not None else dict(getattr(pl_module, "hparams", {}) or {})
        self.monitor = Monitor(self.runs_dir, self.name, self.method, config, every=self.every, group=self.group,
                               rank=trainer.global_rank)

    def on_train_start(self, trainer, pl_module) -> None:
        batches = trainer.num_training_batches
        if self.monitor is not None and isinstance(batches, int) and batches > 0:
            self.monitor.steps_per_epoch = max(batches // max(trainer.accumulate_grad_batches, 1), 1)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        mon, step = self.monitor, trainer.global_step
        if mon is None or not mon.due(step):
            return  # nothing touched on the other steps: no device sync
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        values: dict[str, Any] = {M.TRAIN_LOSS: loss}
        if trainer.optimizers:
            group = trainer.optimizers[0].param_groups[0]
            values.update({M.OPT_LR: group.get("lr"), M.OPT_WD: group.get("weight_decay")})
        values.update({k: v for k, v in trainer.callback_metrics.items()
                       if isinstance(v, torch.Tensor) and v.numel() == 1 and k != "epoch"})
        mon.scalars(step, {k: v for k, v in values.items() if v is not None})
        extra = outputs.get(OUTPUT_KEY) if isinstance(outputs, Mapping) else None
        for kind, kwargs in (extra or {}).items():
            if kind not in METHODS:
                raise ValueError(f"training_step's '{OUTPUT_KEY}' entry '{kind}' is not one of {', '.join(METHODS)}")
            getattr(mon, kind)(step, **kwargs)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._close("finished")

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self._close("stopped", "interrupted (Ctrl-C)")
        else:
            self._close("failed", f"{type(exception).__name__}: {exception}"[:500])

    def _close(self, status: str, reason: str = "") -> None:
        if self.monitor is not None:
            self.monitor.close(status, reason)
            self.monitor = None
