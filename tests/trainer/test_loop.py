"""The loop end to end on a tiny model: resume is exact, NaN stops the run cleanly."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from trainer.config import Config
from trainer.loading import load_encoder
from trainer.loop import resume, train
from trainer.store import list_checkpoints, load_checkpoint, read_events, read_metric, read_run_info

TINY = [
    "model.preset=custom", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.patch_size=4",
    "data.image_size=16", "data.num_train=256", "data.num_val=64", "data.batch_size=16", "data.num_workers=0",
    "dino.out_dim=16", "dino.hidden_dim=32", "dino.bottleneck_dim=16", "dino.n_local=2",
    "optim.warmup_steps=3", "dino.freeze_last_layer_steps=2", "run.log_every=1", "run.eval_every=10",
    "run.probe_size=4",
]


def tiny(tmp_path, name, *extra):
    return Config().with_overrides(TINY + [f"run.runs_dir={tmp_path}", f"run.name={name}", *extra])


def test_killed_run_resumes_to_the_same_weights_and_curves(tmp_path):
    steps = ["optim.steps=40", "run.ckpt_every=10", "run.keep_ckpts=0"]
    ref = train(tiny(tmp_path, "ref", *steps))
    # the same run in another process, SIGKILLed (no chance to clean up) after a checkpoint
    sets = [x for s in TINY + steps + [f"run.runs_dir={tmp_path}", "run.name=killed"] for x in ("--set", s)]
    proc = subprocess.Popen([sys.executable, "-m", "trainer", "train", *sets],
                            env=dict(os.environ, PYTHONPATH=os.getcwd()),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_dir = tmp_path / "killed"
    deadline = time.time() + 120
    while not list_checkpoints(killed_dir) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = list_checkpoints(killed_dir)[-1].step
    assert at_kill < 40, "the run finished before it could be killed; the test proved nothing"
    assert read_run_info(killed_dir)["status"] == "stopped"  # its process is gone
    resume(killed_dir)
    assert read_run_info(killed_dir)["status"] == "finished"
    a = load_checkpoint(list_checkpoints(ref)[-1].path)
    b = load_checkpoint(list_checkpoints(killed_dir)[-1].path)
    assert a.keys() == b.keys()
    for k in a:  # student, EMA teacher and DINO centre all continue exactly
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    sa, la = read_metric(ref, "train/loss")
    sb, lb = read_metric(killed_dir, "train/loss")
    assert sa.tolist() == sb.tolist() == list(range(1, 41))  # one curve, no duplicated steps
    assert torch.allclose(torch.tensor(la), torch.tensor(lb), atol=1e-4)
    assert any("resumed from step" in e["message"] for e in read_events(killed_dir))


def test_non_finite_loss_fails_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = tiny(tmp_path, "nan", "optim.steps=30", "run.ckpt_every=5")
    from trainer.methods import dino

    real_forward = dino.DINO.forward

    def poisoned(self, batch, it, with_stats=True):
        out = real_forward(self, batch, it, with_stats)
        if it == 12:
            out.loss = out.loss * float("nan")
        return out

    dino.DINO.forward = poisoned
    try:
        with pytest.raises(FloatingPointError, match="step 13"):
            train(cfg)
    finally:
        dino.DINO.forward = real_forward
    info = read_run_info(tmp_path / "nan")
    assert info["status"] == "failed" and "step 13" in info["reason"]
    assert [c.step for c in list_checkpoints(tmp_path / "nan")][-1] == 10
    vit, _, ck = load_encoder(tmp_path / "nan")  # the kept checkpoint is whole and loads
    assert ck.step == 10 and all(torch.isfinite(p).all() for p in vit.parameters())
