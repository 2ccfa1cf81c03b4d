"""Collapse statistics against hand-worked values, and diagnose() on synthetic cases."""

import math

import numpy as np
import pytest
import torch

from analysis.collapse import (
    diagnose,
    diagnose_features,
    feature_stats,
    mean_cosine,
    per_dim_variance,
    rankme,
    singular_spectrum,
    std_l2,
)
from trainer.methods.dino_loss import DINOLoss


def test_rankme_identity_and_rank_one():
    assert rankme(np.eye(32)) == pytest.approx(32, rel=1e-3)
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(100, 1)), rng.normal(size=(1, 16))
    assert rankme(u @ v) == pytest.approx(1.0, abs=0.01)


def test_std_l2_and_mean_cosine_extremes():
    same = np.tile(np.array([[1.0, 2.0, 3.0]]), (10, 1))
    assert std_l2(same) == pytest.approx(0.0, abs=1e-6)
    assert mean_cosine(same) == pytest.approx(1.0, abs=1e-6)
    # +-e_i: rows of the normalised matrix; mean over dims of the std times sqrt(D)
    d = 4
    z = np.concatenate([np.eye(d), -np.eye(d)])  # 2D rows, each dim takes +1, -1 once, else 0
    std_per_dim = math.sqrt(2 / (2 * d - 1))  # unbiased std of {1, -1, 0 x (2d-2)}
    assert std_l2(z) == pytest.approx(std_per_dim * math.sqrt(d), rel=1e-5)
    # cosine: each row has one opposite (-1) and 2d-2 orthogonal rows: mean = -1 / (2d - 1)
    assert mean_cosine(z) == pytest.approx(-1 / (2 * d - 1), rel=1e-5)


def test_spectrum_and_variance():
    z = np.diag([3.0, 1.0, 0.0])  # uncentred singular values 3, 1, 0
    s = singular_spectrum(z, center=False)
    np.testing.assert_allclose(s, [0.75, 0.25, 0.0], atol=1e-9)
    np.testing.assert_allclose(per_dim_variance(np.array([[0.0, 1.0], [2.0, 1.0]])), [1.0, 0.0])
    fs = feature_stats(np.random.default_rng(0).normal(size=(50, 8)))
    assert fs.n == 50 and fs.dim == 8 and fs.spectrum.sum() == pytest.approx(1.0)


def _healthy_features(n=256, d=64, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _dino_stats(teacher_logits, student_logits):
    """The dino/* statistics of DINO's loss object (no centring, tau = 1) on two views."""
    loss = DINOLoss(teacher_logits[0].shape[1], 1.0, np.ones(1), centering="none")
    return {k: float(v) for k, v in loss(teacher_logits, student_logits, 0, update_center=False).stats.items()}


def test_diagnose_synthetic_cases():
    g = torch.Generator().manual_seed(0)
    K, n = 64, 256
    z = _healthy_features()
    # healthy: each image sharply prefers its own cluster's prototypes, spread over all K; the
    # two views and the student disagree a little
    cluster = torch.randint(0, K, (n,), generator=g)
    logits = torch.randn(n, K, generator=g) + 4.0 * torch.nn.functional.one_hot(cluster, K)
    views = [logits + 0.5 * torch.randn(n, K, generator=g) for _ in range(2)]
    d = diagnose_features(z, _dino_stats(views, [v + 0.5 * torch.randn(n, K, generator=g) for v in views]))
    assert d.label == "healthy", d.summary()
    # uniform: flat teacher, student equal to it
    flat = [0.01 * torch.randn(n, K, generator=g) for _ in range(2)]
    d = diagnose_features(z, _dino_stats(flat, flat))
    assert d.label == "uniform collapse", d.summary()
    assert any("ln K" in e for e in d.evidence)
    # one-hot: every image puts all its mass on prototype 3
    onehot = [torch.randn(n, K, generator=g) + 30.0 * torch.nn.functional.one_hot(torch.full((n,), 3), K)
              for _ in range(2)]
    d = diagnose_features(z, _dino_stats(onehot, flat))
    assert d.label == "one-hot collapse", d.summary()
    # dimensional: embeddings in a 2-d subspace of 64 dims, no DINO outputs (e.g. MAE)
    low = torch.randn(n, 2, generator=g) @ torch.randn(2, 64, generator=g)
    d = diagnose_features(low)
    assert d.label == "dimensional collapse", d.summary()
    assert diagnose_features(z).label == "healthy"


def test_diagnose_from_logged_values_and_unknown():
    healthy = {"dino/teacher_entropy": 0.6 * math.log(64), "dino/log_k": math.log(64),
               "dino/kl_teacher_student": 0.2, "dino/teacher_batch_entropy": 0.95 * math.log(64),
               "collapse/rankme": 30.0, "collapse/std_l2": 0.8}
    assert diagnose(healthy, max_rank=64).label == "healthy"
    # high entropy with a student that still disagrees is not uniform collapse
    assert diagnose(healthy | {"dino/teacher_entropy": 0.95 * math.log(64), "dino/kl_teacher_student": 0.06},
                    max_rank=64).label == "healthy"
    # sharp but spread teacher outputs (batch entropy high) are not one-hot collapse
    assert diagnose(healthy | {"dino/teacher_entropy": 0.1}, max_rank=64).label == "healthy"
    assert diagnose(healthy | {"collapse/rankme": 3.0}, max_rank=64).label == "dimensional collapse"
    assert diagnose({}).label == "unknown"


def test_diagnose_run_judges_the_logged_curves_with_the_alarms(tmp_path):
    from analysis.collapse import diagnose_run
    from trainer.config import Config
    from trainer.store import RunWriter

    cfg = Config()  # 300 steps: the EMA teacher (0.99 -> 1) is judged from step 73, windows of 5 logs
    w = RunWriter.create(tmp_path, "r1", cfg.to_dict(), "dino")
    log_k = math.log(64)
    for step in range(0, 200, 10):  # healthy early, uniform collapse from step 100
        late = step >= 100
        w.log_scalars(step, 0.0, {"dino/teacher_entropy": (0.99 if late else 0.6) * log_k, "dino/log_k": log_k,
                                  "dino/kl_teacher_student": 0.001 if late else 0.3,
                                  "dino/teacher_batch_entropy": log_k, "collapse/rankme": 20.0,
                                  "collapse/std_l2": 0.7})
    w.close()
    d = diagnose_run(tmp_path / "r1")
    assert d.label == "uniform collapse", d.summary()
    # the first window of 5 logs that starts at 100: (100..140)
    assert (d.rule, d.first_step, d.step) == ("uniform-collapse", 140, 190)
    assert d.values["dino/kl_teacher_student"] == pytest.approx(0.001)
    # the default config: sharpening on at 0.015 and KoLeo at its default, so neither is named as off
    assert "the teacher temperature is already 0.015" in d.advice and "KoLeo" not in d.advice


def test_diagnose_source_uses_the_loss_object_on_multicrop_views(tmp_path):
    from analysis.collapse import diagnose_source, dino_views
    from analysis.source import open_source, split_images
    from tests.analysis.conftest import make_run

    run_dir, method = make_run(tmp_path)
    src = open_source(run_dir)
    rep = diagnose_source(src)
    # by hand: the run's own loss object on the training views of the first 32 val images
    batches = dino_views(method, split_images(src, "val")[0], src.seed)
    assert len(batches) == 1 and len(batches[0]) == 2 + method.cfg.dino.n_local and len(batches[0][0]) == 32
    with torch.no_grad():
        t_logits = method.teacher(batches[0][:2])[0]
        s_logits = method.student(batches[0])[0]
        probs = method.loss.teacher_probs(t_logits, 0)
        p = torch.cat(probs)
        entropy = float(-(p * torch.log(p + 1e-12)).sum(-1).mean())
        log_ps = [torch.log_softmax(s / method.loss.student_temp, -1) for s in s_logits]
        kl = np.mean([float((pt * (torch.log(pt + 1e-12) - log_ps[j])).sum(-1).mean())
                      for i, pt in enumerate(probs) for j in range(len(log_ps)) if i != j])
    assert rep.dino["dino/log_k"] == pytest.approx(math.log(64))
    assert rep.dino["dino/teacher_entropy"] == pytest.approx(entropy, rel=1e-5)
    assert rep.dino["dino/kl_teacher_student"] == pytest.approx(kl, rel=1e-4)
    assert rep.checkpoint.values["dino/kl_teacher_student"] == rep.dino["dino/kl_teacher_student"]
    assert rep.feature == "cls" and rep.features.n == 60 and rep.run is not None and rep.run.label == "unknown"


def test_diagnose_source_reads_the_methods_own_feature(tmp_path):
    from analysis.collapse import diagnose_source
    from analysis.features import split_features
    from analysis.source import open_source
    from tests.analysis.conftest import make_run

    run_dir, _ = make_run(tmp_path, "mae", **{"mae.decoder_dim": 32, "mae.decoder_heads": 2})
    src = open_source(run_dir)
    rep = diagnose_source(src)
    pooled = split_features(src, "val", 512).pooled
    assert rep.feature == "pooled" and rep.dino is None
    assert rep.features.rankme == pytest.approx(rankme(pooled), rel=1e-6)
    assert rep.features.rankme != pytest.approx(rankme(split_features(src, "val", 512).cls), rel=1e-3)
