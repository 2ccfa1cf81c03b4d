"""A DINO run with iBOT and Gram anchoring resumes exactly: the masks are a function of the
step, and the patch centre and the Gram teacher travel in the checkpoint."""

import shutil

import pytest
import torch

from trainer.config import Config
from trainer.loop import resume, train
from trainer.store import list_checkpoints, load_checkpoint, read_metric

TINY = ["model.preset=custom", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.patch_size=4",
        "data.image_size=16", "data.num_train=128", "data.num_val=32", "data.batch_size=8", "data.num_workers=0",
        "dino.out_dim=16", "dino.hidden_dim=32", "dino.bottleneck_dim=16", "dino.n_local=1", "optim.steps=12",
        "optim.warmup_steps=2", "dino.freeze_last_layer_steps=0", "run.log_every=1", "run.eval_every=12",
        "run.ckpt_every=4", "run.keep_ckpts=0", "run.probe_size=2", "run.device=cpu",
        "dino.ibot_weight=1", "dino.ibot_separate_head=true", "dino.gram_weight=1", "dino.gram_teacher_step=2",
        "dino.gram_start=3", "dino.gram_ramp_steps=2", "dino.gram_refresh_every=4", "dino.gram_max_refreshes=2"]

pytestmark = pytest.mark.slow  # two short runs (~15 s on idle cores)


def test_resume_mid_run_gives_the_same_weights_centres_gram_teacher_and_curves(tmp_path):
    ref = train(Config().with_overrides(TINY + [f"run.runs_dir={tmp_path}", "run.name=ref"]))
    again = tmp_path / "again"
    shutil.copytree(ref, again)
    resume(again, step=4)  # after the Gram teacher's source copy (2), before its refreshes (6, 10)
    a = load_checkpoint(list_checkpoints(ref)[-1].path)
    b = load_checkpoint(list_checkpoints(again)[-1].path)
    assert {"ibot_loss.center", "loss.center"} <= a.keys() and any(k.startswith("gram_teacher.") for k in a)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    for name in ("train/loss", "ibot/loss", "gram/loss"):
        sa, va = read_metric(ref, name)
        sb, vb = read_metric(again, name)
        assert sa.tolist() == sb.tolist() and torch.allclose(torch.tensor(va), torch.tensor(vb), atol=1e-4), name
