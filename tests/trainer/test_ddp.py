"""Several processes through torchrun (Gloo on CPU): one run folder, written by rank 0 only."""

import os
import subprocess
import sys

import pytest
import torch

from trainer.store import list_checkpoints, load_checkpoint, read_metric, read_run_info

pytestmark = pytest.mark.slow


def test_torchrun_two_processes_train_one_run(tmp_path):
    sets = ["model.preset=custom", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "data.image_size=16",
            "data.num_train=256", "data.num_val=64", "data.batch_size=8", "data.num_workers=0", "dino.out_dim=16",
            "dino.n_local=2", "run.log_every=2", "run.eval_every=10", "run.ckpt_every=5"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "trainer",
           "train", "--steps", "10", "--runs-dir", str(tmp_path), "--name", "ddp", "--device", "cpu"]
    cmd += [x for s in sets for x in ("--set", s)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]
    assert read_run_info(tmp_path / "ddp")["status"] == "finished"
    steps, loss = read_metric(tmp_path / "ddp", "train/loss")
    assert steps.tolist() == [2, 4, 6, 8, 10]  # one writer: no duplicated rows
    ck = load_checkpoint(list_checkpoints(tmp_path / "ddp")[-1].path)
    # the EMA teacher followed the (all-reduced) student: not still at its initialisation
    first = load_checkpoint(list_checkpoints(tmp_path / "ddp")[0].path)
    assert not torch.equal(ck["teacher.backbone.cls_token"], first["teacher.backbone.cls_token"]) or \
        not torch.equal(ck["loss.center"], first["loss.center"])
