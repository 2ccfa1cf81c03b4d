"""``MonitorCallback``: a LightningModule's DINO (lightly's loss and head on a tiny timm ViT)
watched through the callback, with its tensors handed over in ``training_step``'s output."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from sslscope.monitor import loss_params
from trainer.store import read_metric, read_run_info, read_scalars

pl = pytest.importorskip("pytorch_lightning")
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]


class _Views(torch.utils.data.Dataset):
    """Two global (16 px) and one local (8 px) view of random images."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        img = torch.randn(3, 16, 16, generator=g)
        return [img, img.flip(-1), img[:, :8, :8]]


class _DINO(pl.LightningModule):
    def __init__(self, out_dim: int = 32, fail_at: int | None = None):
        super().__init__()
        self.save_hyperparameters()
        from lightly.loss import DINOLoss
        from lightly.models.modules import DINOProjectionHead
        from timm.models.vision_transformer import VisionTransformer

        vit = VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2, num_classes=0,
                                dynamic_img_size=True)
        self.student = nn.Sequential(vit, DINOProjectionHead(32, 64, 16, out_dim))
        self.teacher = nn.Sequential(copy.deepcopy(vit), DINOProjectionHead(32, 64, 16, out_dim))
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher.requires_grad_(False)
        self.criterion = DINOLoss(output_dim=out_dim, warmup_teacher_temp_epochs=1)

    def training_step(self, views, batch_idx):
        if self.hparams.fail_at is not None and self.global_step == self.hparams.fail_at:
            raise RuntimeError("loss is nan")
        t = [self.teacher(v) for v in views[:2]]
        s = [self.student(v) for v in views]
        params = loss_params(self.criterion, epoch=self.current_epoch)  # before the loss moves the centre
        loss = self.criterion(t, s, epoch=self.current_epoch)
        self.log("train_loss", loss)
        return {"loss": loss, "sslscope": {"dino": dict(teacher_logits=t, student_logits=s, **params)}}

    def configure_optimizers(self):
        return torch.optim.AdamW(self.student.parameters(), lr=1e-3, weight_decay=0.05)


def _fit(tmp_path, name: str, **kwargs):
    from sslscope.monitor.lightning import MonitorCallback

    cb = MonitorCallback(tmp_path, name=name, every=2)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[cb])
    loader = torch.utils.data.DataLoader(_Views(), batch_size=8)
    trainer.fit(_DINO(**kwargs), loader)
    return tmp_path / name


def test_lightning_callback_logs_the_modules_dino_stats_and_schedules(tmp_path):
    run = _fit(tmp_path, "pl")
    info = read_run_info(run)
    assert info["status"] == "finished" and info["config"]["external"]["out_dim"] == 32  # the module's hparams
    steps, ce = read_metric(run, "dino/ce")
    assert steps.tolist() == [2, 4, 6]  # 3 optimiser steps per epoch, 2 epochs, every 2
    _, loss = read_metric(run, "train/loss")
    np.testing.assert_allclose(ce, loss, rtol=1e-5)  # lightly's loss = our cross-entropy of its tensors
    assert read_metric(run, "opt/wd")[1].tolist() == pytest.approx([0.05] * 3)
    cols, _ = read_scalars(run, names=["dino/ce"])
    assert cols["epoch"].tolist() == pytest.approx([2 / 3, 4 / 3, 2.0])  # optimiser steps / steps per epoch


def test_lightning_callback_marks_a_crash_failed(tmp_path):
    with pytest.raises(RuntimeError, match="loss is nan"):
        _fit(tmp_path, "crash", fail_at=3)
    info = read_run_info(tmp_path / "crash")
    assert info["status"] == "failed" and "loss is nan" in info["reason"]
    assert read_metric(tmp_path / "crash", "dino/ce")[0].tolist() == [2]
