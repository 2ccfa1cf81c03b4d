"""Is the representation collapsing, and which way? Statistics of features and DINO outputs,
and ``diagnose()``, which turns them into one of four labels with the evidence in words.

The three ways self-distillation fails (DINO paper, Sec. 5.3 and Fig. 7; Jing et al. 2022):

- uniform collapse: the teacher outputs the same flat distribution for every image (centering
  without sharpening): teacher entropy near ln K, KL(teacher || student) near 0;
- one-hot collapse: the teacher puts all its mass on the same few prototypes for every image
  (sharpening without centering): teacher entropy near 0 *and* the batch-mean distribution
  concentrated on a few dimensions (low batch entropy);
- dimensional collapse: the embeddings span only a few directions (or shrink to one point):
  RankMe small against min(N, D), ``std_l2`` well below 1.

Feature statistics reuse the trainer's online ones (``trainer.methods.stats``), so the numbers
the dashboard shows for a checkpoint are the same maths as the curves logged while training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from trainer.methods import stats as online

if TYPE_CHECKING:  # annotation only: the pure functions here need no run or checkpoint machinery
    from analysis.source import Source

# Thresholds of diagnose(), as fractions of ln K or of min(N, D). Chosen from the DINO paper's
# Fig. 7 and the trainer's ablation figures (issue 2): a collapsed uniform run sat at 0.998 ln K
# with KL 0.002, a barely healthy one at 0.95 ln K with KL 0.06.
UNIFORM_ENTROPY = 0.9  # teacher entropy >= 0.9 ln K ...
UNIFORM_KL = 0.03  # ... and KL(teacher || student) <= 0.03 nats
ONEHOT_ENTROPY = 0.3  # teacher entropy <= 0.3 ln K ...
ONEHOT_BATCH_ENTROPY = 0.5  # ... and batch-mean entropy <= 0.5 ln K (few prototypes used overall)
DIM_RANKME = 0.1  # RankMe <= 0.1 min(N, D) ...
DIM_STD_L2 = 0.3  # ... or std_l2 <= 0.3 (about sqrt(k / D): under ~10% of directions used)

LABELS = ("healthy", "uniform collapse", "one-hot collapse", "dimensional collapse", "unknown")


def _t(z: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(z) if not isinstance(z, torch.Tensor) else z).float()


# ---------------------------------------------------------------------------------------
# Feature statistics: z (N, D)
# ---------------------------------------------------------------------------------------
def std_l2(z: np.ndarray | torch.Tensor) -> float:
    """Batch std of l2-normalised rows, averaged over dims, times sqrt(D): ~1 healthy, 0 collapsed."""
    return float(online.std_l2(_t(z)))


def rankme(z: np.ndarray | torch.Tensor) -> float:
    """RankMe (Garrido et al. 2023): effective rank in [1, min(N, D)]."""
    return float(online.rankme(_t(z)))


def mean_cosine(z: np.ndarray | torch.Tensor) -> float:
    """Mean cosine similarity over distinct pairs of rows: ~0 spread out, 1 collapsed."""
    return float(online.mean_cosine(_t(z)))


def singular_spectrum(z: np.ndarray | torch.Tensor, center: bool = True) -> np.ndarray:
    """Singular values (min(N, D),) of z, descending, normalised to sum 1; a spectrum that
    drops to ~0 after k values means the features live in k dimensions. ``center``: subtract
    the mean first, so a shared offset does not count as a direction."""
    x = _t(z)
    if center:
        x = x - x.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(x.double())
    return (s / s.sum().clamp_min(1e-12)).numpy()


def per_dim_variance(z: np.ndarray | torch.Tensor) -> np.ndarray:
    """Variance of each feature dimension over the rows, (D,)."""
    return _t(z).double().var(dim=0, unbiased=False).numpy()


@dataclass
class FeatureStats:
    """Collapse statistics of one feature matrix."""

    n: int
    dim: int
    std_l2: float
    rankme: float
    mean_cosine: float
    spectrum: np.ndarray  # (min(N, D),) normalised singular values, descending
    per_dim_variance: np.ndarray  # (D,)


def feature_stats(z: np.ndarray | torch.Tensor) -> FeatureStats:
    """All feature statistics of z (N, D)."""
    x = _t(z)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"feature statistics need a matrix (N >= 2, D); got shape {tuple(x.shape)}")
    return FeatureStats(int(x.shape[0]), int(x.shape[1]), std_l2(x), rankme(x), mean_cosine(x),
                        singular_spectrum(x), per_dim_variance(x))


# ---------------------------------------------------------------------------------------
# DINO output statistics: probabilities (N, K)
# ---------------------------------------------------------------------------------------
def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1)


@dataclass
class ProbStats:
    """Statistics of the teacher's (and optionally the student's) output distributions."""

    log_k: float  # ln K: the entropy of the uniform distribution
    teacher_entropy: float  # mean per-sample entropy of p_t (nats)
    teacher_batch_entropy: float  # entropy of the batch-mean p_t (nats)
    teacher_max_prob: float  # mean over samples of max_k p_t
    top_dims_share: float  # mass of the batch-mean p_t on its 3 largest dimensions
    kl_teacher_student: float | None = None  # mean KL(p_t || p_s) (nats); None without a student


def prob_stats(teacher_probs: np.ndarray | torch.Tensor,
               student_probs: np.ndarray | torch.Tensor | None = None) -> ProbStats:
    """Statistics of p_t (N, K) (rows sum to 1) and optionally p_s (N, K) for the same images."""
    pt = _t(teacher_probs).double()
    mean_p = pt.mean(0)
    kl = None
    if student_probs is not None:
        ps = _t(student_probs).double()
        kl = float((pt * (torch.log(pt.clamp_min(1e-12)) - torch.log(ps.clamp_min(1e-12)))).sum(-1).mean())
    return ProbStats(
        log_k=math.log(pt.shape[-1]),
        teacher_entropy=float(_entropy(pt).mean()),
        teacher_batch_entropy=float(_entropy(mean_p)),
        teacher_max_prob=float(pt.max(-1).values.mean()),
        top_dims_share=float(mean_p.topk(min(3, pt.shape[-1])).values.sum()),
        kl_teacher_student=kl,
    )


def dino_probs(logits: torch.Tensor, temp: float, center: torch.Tensor | None = None) -> torch.Tensor:
    """softmax((g - c) / temp): the teacher's p_t (with its centre and tau_t) or the student's
    p_s (no centre, tau_s). (N, K) -> (N, K)."""
    g = logits.float() if center is None else logits.float() - center.float()
    return torch.softmax(g / temp, dim=-1)


# ---------------------------------------------------------------------------------------
# diagnose()
# ---------------------------------------------------------------------------------------
@dataclass
class Diagnosis:
    """A label from ``LABELS``, the sentences that justify it, and the numbers behind them."""

    label: str
    evidence: list[str] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        return f"{self.label}: " + "; ".join(self.evidence)


def diagnose(values: Mapping[str, float], max_rank: int | None = None) -> Diagnosis:
    """Label a representation from metric values named as in DESIGN.md.

    Uses ``dino/teacher_entropy``, ``dino/log_k``, ``dino/kl_teacher_student``,
    ``dino/teacher_batch_entropy`` (DINO only) and ``collapse/rankme``, ``collapse/std_l2``
    (any method); missing ones are skipped. ``max_rank``: min(N, D) of the matrix RankMe was
    computed on (RankMe is judged as a fraction of it; without it only std_l2 judges).
    Checks run in order uniform, one-hot, dimensional; the first that holds gives the label.
    """
    v = {k: float(x) for k, x in values.items() if x is not None and math.isfinite(float(x))}
    ev: list[str] = []
    h, log_k = v.get("dino/teacher_entropy"), v.get("dino/log_k")
    kl, hb = v.get("dino/kl_teacher_student"), v.get("dino/teacher_batch_entropy")
    rm, sl = v.get("collapse/rankme"), v.get("collapse/std_l2")
    if h is not None and log_k:
        r = h / log_k
        if r >= UNIFORM_ENTROPY and kl is not None and kl <= UNIFORM_KL:
            return Diagnosis("uniform collapse", [
                f"teacher entropy {h:.3f} nats is {r:.2f} ln K (>= {UNIFORM_ENTROPY} ln K: nearly uniform outputs)",
                f"KL(teacher || student) {kl:.4f} <= {UNIFORM_KL}: the student matches a flat teacher, "
                "nothing is learnt; centering without enough sharpening does this (lower the teacher "
                "temperature, smaller K, or add KoLeo)"], v)
        if r <= ONEHOT_ENTROPY and hb is not None and hb / log_k <= ONEHOT_BATCH_ENTROPY:
            return Diagnosis("one-hot collapse", [
                f"teacher entropy {h:.3f} nats is {r:.2f} ln K (<= {ONEHOT_ENTROPY} ln K: near one-hot outputs)",
                f"batch-mean entropy {hb:.3f} is {hb / log_k:.2f} ln K (<= {ONEHOT_BATCH_ENTROPY} ln K): every image "
                f"picks the same ~{math.exp(hb):.1f} of {round(math.exp(log_k))} prototypes; sharpening without "
                "centering does this (turn centering on)"], v)
        if ONEHOT_ENTROPY < r < UNIFORM_ENTROPY:
            ev.append(f"teacher entropy {r:.2f} ln K lies between the collapse lines "
                      f"({ONEHOT_ENTROPY} and {UNIFORM_ENTROPY} ln K)")
        elif r >= UNIFORM_ENTROPY:
            ev.append(f"teacher entropy is high ({r:.2f} ln K) but KL(teacher || student) "
                      + (f"{kl:.3f} > {UNIFORM_KL}: the student still learns" if kl is not None else "is unknown"))
        else:
            ev.append(f"teacher outputs are sharp ({r:.2f} ln K) but spread over prototypes (batch entropy "
                      + (f"{hb / log_k:.2f} ln K > {ONEHOT_BATCH_ENTROPY})" if hb is not None else "unknown)"))
    dim_ev = []
    if rm is not None and max_rank:
        if rm <= DIM_RANKME * max_rank:
            dim_ev.append(f"RankMe {rm:.1f} <= {DIM_RANKME} x {max_rank} = {DIM_RANKME * max_rank:.1f}: "
                          "the embeddings use only a few directions")
        else:
            ev.append(f"RankMe {rm:.1f} of at most {max_rank} (> {DIM_RANKME * max_rank:.1f})")
    if sl is not None:
        if sl <= DIM_STD_L2:
            dim_ev.append(f"std_l2 {sl:.3f} <= {DIM_STD_L2} (1 when spread over the sphere"
                          + (", ~0: all embeddings nearly identical)" if sl < 0.05 else ")"))
        else:
            ev.append(f"std_l2 {sl:.3f} > {DIM_STD_L2}")
    if dim_ev:
        return Diagnosis("dimensional collapse", dim_ev + ["anti-collapse terms (KoLeo, variance) or a "
                                                           "lower learning rate help"], v)
    if not ev:
        return Diagnosis("unknown", ["no collapse statistics available (need dino/* or collapse/* values)"], v)
    return Diagnosis("healthy", ev, v)


def diagnose_features(z: np.ndarray | torch.Tensor, teacher_probs: np.ndarray | torch.Tensor | None = None,
                      student_probs: np.ndarray | torch.Tensor | None = None) -> Diagnosis:
    """``diagnose`` from embeddings z (N, D) and, for DINO, p_t and p_s (N, K) of the same images."""
    fs = feature_stats(z)
    values = {"collapse/rankme": fs.rankme, "collapse/std_l2": fs.std_l2, "collapse/mean_cosine": fs.mean_cosine}
    if teacher_probs is not None:
        ps = prob_stats(teacher_probs, student_probs)
        values.update({"dino/teacher_entropy": ps.teacher_entropy, "dino/log_k": ps.log_k,
                       "dino/teacher_batch_entropy": ps.teacher_batch_entropy,
                       "dino/teacher_max_prob": ps.teacher_max_prob})
        if ps.kl_teacher_student is not None:
            values["dino/kl_teacher_student"] = ps.kl_teacher_student
    return diagnose(values, max_rank=min(fs.n, fs.dim))


def diagnose_run(run_dir: Path | str, last: int = 5) -> Diagnosis:
    """``diagnose`` from a run's logged scalars: each metric's mean over its ``last`` logged
    values (one noisy batch should not flip the label). RankMe is judged against
    min(batch size, width), the matrix the trainer computes it on."""
    from trainer.models.loading import run_config
    from trainer.store import read_scalars

    names = ["dino/teacher_entropy", "dino/log_k", "dino/kl_teacher_student", "dino/teacher_batch_entropy",
             "collapse/rankme", "collapse/std_l2", "collapse/mean_cosine"]
    cols, _ = read_scalars(run_dir, names=names)
    values: dict[str, float] = {}
    for name in names:
        sel = cols["name"] == name
        if sel.any():
            order = np.argsort(cols["step"][sel], kind="stable")
            values[name] = float(np.mean(cols["value"][sel][order][-last:]))
    max_rank = None
    try:
        cfg = run_config(run_dir)
        from trainer.config import preset_shape

        max_rank = min(cfg.data.batch_size, preset_shape(cfg.model)[1])
    except Exception:  # noqa: BLE001 - a run without a readable config still gets std_l2 judged
        max_rank = None
    return diagnose(values, max_rank)


@dataclass
class DiagnosisReport:
    """A checkpoint judged on its own features (and DINO outputs), and its run on its logs."""

    checkpoint: Diagnosis  # from the val features (+ teacher/student outputs for DINO runs)
    features: FeatureStats
    run: Diagnosis | None = None  # from the run's logged scalars; None outside a run


@torch.inference_mode()
def dino_output_probs(method: torch.nn.Module, images: torch.Tensor, step: int,
                      batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """A DINO method's p_t (centred, tau_t at ``step``) and p_s (tau_s) on normalised images
    (N, 3, H, W), one view each: (N, K) and (N, K)."""
    method.eval()
    pt, ps = [], []
    for s in range(0, images.shape[0], batch_size):
        x = images[s:s + batch_size]
        t_logits = method.teacher([x])[0][0]  # (b, K)
        s_logits = method.student([x])[0][0]
        center = method.center if method.cfg.dino.centering == "mean" else None
        pt.append(dino_probs(t_logits, method.teacher_temp(step), center))
        ps.append(dino_probs(s_logits, method.cfg.dino.student_temp))
    return torch.cat(pt), torch.cat(ps)


def diagnose_source(source: Source, max_images: int = 512) -> DiagnosisReport:
    """``diagnose`` an ``analysis.source.Source`` on the [CLS] features of its val split (and,
    for a DINO run, its teacher and student outputs), and its run on its logged scalars."""
    from analysis.features import split_features

    feats = split_features(source, "val", max_images)
    pt = ps = None
    if source.method == "dino" and source.run_dir is not None:
        from analysis.source import split_images
        from trainer.data.datasets import normalize
        from trainer.models.loading import load_method

        method, _, _ = load_method(source.run_dir, source.step)
        images = split_images(source, "val", max_images)[0]
        pt, ps = dino_output_probs(method, normalize(images), source.step or 0)
    run = diagnose_run(source.run_dir) if source.run_dir is not None else None
    return DiagnosisReport(diagnose_features(feats.cls, pt, ps), feature_stats(feats.cls), run)
