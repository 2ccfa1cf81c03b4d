"""The DINO paper's collapse study (Fig. 7) and a short default run, on CPU.

Centering alone flattens the teacher to uniform (entropy -> ln K, KL -> 0); sharpening alone
makes it one-hot (entropy -> 0, one dimension dominates the batch); both together keep it in
between, with the student still learning from it (KL well above either collapsed arm).
"""

import math

import numpy as np
import pytest

from tests.trainer.knn_lift import assert_knn_lift
from trainer.__main__ import ABLATIONS
from trainer.config import Config
from trainer.loop import train
from trainer.store import read_metric

pytestmark = pytest.mark.slow

# A small ViT on 16 px shapes: each arm trains in well under a minute on 2 cores. The arms bring
# the study's shared setting (weak KoLeo: trainer.__main__.FIG7).
STUDY = [
    "data.image_size=16", "model.preset=custom", "model.embed_dim=64", "model.depth=3", "model.num_heads=2",
    "dino.n_local=4", "dino.hidden_dim=256", "data.batch_size=64", "optim.steps=300", "run.eval_every=150",
    "run.ckpt_every=300", "data.num_val=1000",
]


def _final(run_dir, name, last=3):
    """Mean of the last ``last`` logged values (damps step-to-step noise)."""
    _, v = read_metric(run_dir, name)
    return float(np.mean(v[-last:]))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    runs = {}
    for arm in ("both", "centering-only", "sharpening-only"):
        cfg = Config().with_overrides(STUDY + ABLATIONS["centering-sharpening"][arm]
                                      + [f"run.runs_dir={root}", f"run.name={arm}", "run.group=study"])
        runs[arm] = train(cfg)
    return runs


def test_collapse_study_reproduces_dino_fig7(study):
    log_k = math.log(Config().dino.out_dim)
    fig = {}
    for arm, rd in study.items():
        fig[arm] = dict(H=_final(rd, "dino/teacher_entropy") / log_k, KL=_final(rd, "dino/kl_teacher_student"),
                        batchH=_final(rd, "dino/teacher_batch_entropy") / log_k,
                        top10=_final(rd, "dino/top10pct_mass"), knn=read_metric(rd, "eval/knn_top1")[1][-1],
                        knn0=read_metric(rd, "eval/knn_top1")[1][0])
        print(f"{arm:16s} entropy/lnK={fig[arm]['H']:.3f} KL={fig[arm]['KL']:.4f} batch-entropy/lnK="
              f"{fig[arm]['batchH']:.3f} top-10% mass={fig[arm]['top10']:.3f} kNN={fig[arm]['knn']:.3f} "
              f"(init {fig[arm]['knn0']:.3f})")
    c, s, b = fig["centering-only"], fig["sharpening-only"], fig["both"]
    # centering alone: uniform collapse
    assert c["H"] >= 0.9 and c["KL"] < 0.05
    # sharpening alone: one-hot collapse, still falling, a few dimensions hold the batch mean
    _, h = read_metric(study["sharpening-only"], "dino/teacher_entropy")
    assert s["H"] <= 0.3
    assert h[-1] <= h[len(h) // 2] + 1e-3
    assert s["top10"] > 0.5 and s["batchH"] < 0.5
    # both: strictly between, the student still has something to learn, better features
    assert s["H"] < b["H"] < c["H"] and 0.3 <= b["H"] <= 0.9
    assert b["KL"] >= 3 * max(c["KL"], s["KL"])
    assert b["knn"] > max(c["knn"], s["knn"])


def test_default_run_on_shapes_is_healthy_and_learns(tmp_path):
    """The default config (cpu-tiny, 32 px shapes) for 600 steps ends with the teacher well between
    the two collapses, the student still learning from it, and a k-NN clearly above the same
    backbone at random initialisation (step 0 of the same run, same bank and queries)."""
    cfg = Config().with_overrides([f"run.runs_dir={tmp_path}", "run.name=default", "optim.steps=600",
                                   "run.eval_every=300", "run.ckpt_every=600", "data.num_val=1000"])
    rd = train(cfg)
    log_k = math.log(cfg.dino.out_dim)
    h = _final(rd, "dino/teacher_entropy") / log_k
    kl = _final(rd, "dino/kl_teacher_student")
    print(f"default run: entropy/lnK={h:.3f} KL={kl:.3f}")
    assert 0.3 <= h <= 0.85
    assert kl > 0.2
    assert _final(rd, "collapse/std_l2") > 0.3
    assert_knn_lift(rd, "DINO default (600 steps)")
