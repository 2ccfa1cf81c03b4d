"""Collapse statistics against hand-worked values, and diagnose() on synthetic cases."""

import math

import numpy as np
import pytest
import torch

from analysis.collapse import (
    diagnose,
    diagnose_features,
    dino_probs,
    feature_stats,
    mean_cosine,
    per_dim_variance,
    prob_stats,
    rankme,
    singular_spectrum,
    std_l2,
)


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


def test_prob_stats_hand_worked():
    pt = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    ps = torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 1.0, 0.0]])
    st = prob_stats(pt, ps)
    assert st.log_k == pytest.approx(math.log(4))
    assert st.teacher_entropy == pytest.approx(math.log(2) / 2)  # (ln 2 + 0) / 2
    # batch mean (0.25, 0.25, 0.5, 0): entropy = 2 * 0.25 ln 4 + 0.5 ln 2
    assert st.teacher_batch_entropy == pytest.approx(0.5 * math.log(4) + 0.5 * math.log(2))
    assert st.teacher_max_prob == pytest.approx(0.75)
    assert st.top_dims_share == pytest.approx(1.0)
    # KL row 1: 2 * 0.5 ln(0.5 / 0.25) = ln 2; row 2: 0
    assert st.kl_teacher_student == pytest.approx(math.log(2) / 2)
    p = dino_probs(torch.tensor([[1.0, 2.0]]), temp=0.5, center=torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(p, torch.softmax(torch.tensor([[0.0, 2.0]]), -1))


def _healthy_features(n=256, d=64, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_diagnose_synthetic_cases():
    g = torch.Generator().manual_seed(0)
    K, n = 64, 256
    z = _healthy_features()
    # healthy: each image sharply prefers its own cluster's prototypes, spread over all K
    cluster = torch.randint(0, K, (n,), generator=g)
    logits = torch.randn(n, K, generator=g) + 4.0 * torch.nn.functional.one_hot(cluster, K)
    pt = dino_probs(logits, 1.0)
    ps = dino_probs(logits + 0.5 * torch.randn(n, K, generator=g), 1.0)
    d = diagnose_features(z, pt, ps)
    assert d.label == "healthy", d.summary()
    # uniform: flat teacher, student equal to it
    flat = dino_probs(0.01 * torch.randn(n, K, generator=g), 1.0)
    d = diagnose_features(z, flat, flat)
    assert d.label == "uniform collapse", d.summary()
    assert any("ln K" in e for e in d.evidence)
    # one-hot: every image puts all its mass on prototype 3
    onehot = dino_probs(torch.randn(n, K, generator=g) + 30.0 * torch.nn.functional.one_hot(
        torch.full((n,), 3), K), 1.0)
    d = diagnose_features(z, onehot, flat)
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


def test_diagnose_run_reads_last_logged_values(tmp_path):
    from analysis.collapse import diagnose_run
    from trainer.config import Config
    from trainer.store import RunWriter

    w = RunWriter.create(tmp_path, "r1", Config().to_dict(), "dino")
    log_k = math.log(64)
    for step in range(0, 100, 10):  # healthy early, uniform collapse in the last 5 logs
        late = step >= 50
        w.log_scalars(step, 0.0, {"dino/teacher_entropy": (0.99 if late else 0.6) * log_k, "dino/log_k": log_k,
                                  "dino/kl_teacher_student": 0.001 if late else 0.3,
                                  "dino/teacher_batch_entropy": log_k, "collapse/rankme": 20.0,
                                  "collapse/std_l2": 0.7})
    w.close()
    d = diagnose_run(tmp_path / "r1")
    assert d.label == "uniform collapse", d.summary()
    assert d.values["dino/kl_teacher_student"] == pytest.approx(0.001)


def test_diagnose_source_uses_teacher_outputs(tmp_path):
    from analysis.collapse import diagnose_source
    from analysis.source import open_source, split_images
    from tests.analysis.conftest import make_run
    from trainer.data.datasets import normalize

    run_dir, method = make_run(tmp_path)
    src = open_source(run_dir)
    rep = diagnose_source(src)
    x = normalize(split_images(src, "val")[0])
    with torch.no_grad():
        pt = dino_probs(method.teacher([x])[0][0], method.teacher_temp(0), method.center)
        ps = dino_probs(method.student([x])[0][0], method.cfg.dino.student_temp)
    ref = prob_stats(pt, ps)
    assert rep.checkpoint.values["dino/log_k"] == pytest.approx(math.log(64))
    assert rep.checkpoint.values["dino/teacher_entropy"] == pytest.approx(ref.teacher_entropy, rel=1e-5)
    assert rep.checkpoint.values["dino/kl_teacher_student"] == pytest.approx(ref.kl_teacher_student, rel=1e-4)
    assert rep.features.n == 60 and rep.run is not None and rep.run.label == "unknown"  # nothing logged
