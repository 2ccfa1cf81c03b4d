"""diagnose() of a DINO checkpoint computes its dino/* statistics with the run's own loss object:
on the batch that training saw at the next step, they equal the values training logged there, for
Sinkhorn-Knopp and for mean centring. Before, analysis softmaxed Sinkhorn runs uncentred and took
the KL between teacher and student on the same view."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.collapse import diagnose_dino
from trainer.config import Config
from trainer.data import build_loader
from trainer.loading import load_method
from trainer.loop import train
from trainer.store import read_metric

TINY = ["model.preset=custom", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.patch_size=4",
        "data.image_size=16", "data.num_train=64", "data.num_val=32", "data.batch_size=16", "data.num_workers=0",
        "dino.out_dim=32", "dino.hidden_dim=32", "dino.bottleneck_dim=16", "dino.n_local=2",
        "dino.freeze_last_layer_steps=0", "dino.warmup_teacher_temp=0.1", "dino.teacher_temp=0.1",
        "optim.steps=4", "optim.warmup_steps=1", "run.log_every=1",
        "run.eval_every=4", "run.ckpt_every=2", "run.keep_ckpts=0", "run.probe_size=2", "run.device=cpu"]


def _logged(run_dir, name: str, step: int) -> float:
    steps, values = read_metric(run_dir, name)
    return float(values[list(steps).index(step)])


@pytest.mark.parametrize("centering", ["sinkhorn", "mean", "mean+ibot"])
def test_checkpoint_diagnosis_equals_the_training_statistics_on_the_same_batch(tmp_path, centering):
    ibot = ["dino.ibot_weight=1"] if centering.endswith("+ibot") else []  # the student saw masked crops
    centering = centering.split("+")[0]
    cfg = Config().with_overrides(TINY + ibot + [f"dino.centering={centering}", f"run.runs_dir={tmp_path}",
                                                 f"run.name={centering}"])
    run = train(cfg)
    method, cfg, ck = load_method(run, step=2)  # weights and centre after step 2 ...
    batch = next(build_loader(cfg, method.views(), "train", start_step=2))  # ... and the batch of step 3
    z = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    diag, dino = diagnose_dino(method, [batch.views], ck.step, z)
    for name in ("dino/teacher_entropy", "dino/kl_teacher_student", "dino/teacher_batch_entropy",
                 "dino/top10pct_mass", "dino/teacher_temp"):
        assert diag.values[name] == pytest.approx(_logged(run, name, 3), abs=1e-5), name
    assert diag.values["dino/log_k"] == pytest.approx(np.log(32))
    # the old analysis: softmax((g - c) / tau_t) for mean runs, no centring for Sinkhorn runs, KL
    # between teacher and student on the same (first global) view
    with torch.no_grad():
        t = method.teacher(batch.views[:2])[0]
        s = method.student(batch.views[:2])[0]
        tau_t = method.loss.teacher_temp(2)
        center = method.loss.center if centering == "mean" else 0.0
        pt = torch.softmax((torch.cat(t) - center) / tau_t, -1)
        old_h = float(-(pt * pt.clamp_min(1e-12).log()).sum(-1).mean())
        ps = torch.softmax(s[0] / method.loss.student_temp, -1)
        old_kl = float((pt[:16] * (pt[:16].clamp_min(1e-12).log() - ps.clamp_min(1e-12).log())).sum(-1).mean())
    print(f"\n{centering}: logged H {_logged(run, 'dino/teacher_entropy', 3):.6f}, KL "
          f"{_logged(run, 'dino/kl_teacher_student', 3):.6f}; diagnose() H {dino['dino/teacher_entropy']:.6f}, "
          f"KL {dino['dino/kl_teacher_student']:.6f}; the old analysis H {old_h:.6f}, same-view KL {old_kl:.6f}")
    if centering == "sinkhorn":  # the bug this fixes: a Sinkhorn run judged on assignments it never used
        assert abs(old_h - _logged(run, "dino/teacher_entropy", 3)) > 1e-3
    assert abs(old_kl - _logged(run, "dino/kl_teacher_student", 3)) > 1e-3  # a different quantity
