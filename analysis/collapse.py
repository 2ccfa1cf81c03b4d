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

One owner per number: feature statistics are ``core.collapse``'s (the trainer logs the same
maths), the DINO statistics come from the run's own ``DINOLoss`` (its centre, its centring
mode -- Sinkhorn-Knopp included -- and its temperatures) on multi-crop views of the images,
so ``dino/kl_teacher_student`` is the training definition (across views) that the logged KL
is, and the thresholds below are the declared healthy ranges of ``core.metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from core import collapse as online
from core import metrics as M

if TYPE_CHECKING:  # annotation only: the pure functions here need no run or checkpoint machinery
    from analysis.source import Source
    from trainer.config import Config
    from trainer.methods.dino import DINO


def _bound(name: str, end: int) -> float:
    value = M.METRICS[name].healthy_range[end]
    assert value is not None, name
    return value


# Thresholds of diagnose(): the healthy ranges of core.metrics, as fractions of ln K or of
# min(N, D). Chosen from the DINO paper's Fig. 7 and the trainer's ablation figures (issue 2):
# a collapsed uniform run sat at 0.998 ln K with KL 0.002, a barely healthy one at 0.95 ln K
# with KL 0.06.
UNIFORM_ENTROPY = _bound(M.DINO_TEACHER_ENTROPY, 1)  # teacher entropy >= 0.9 ln K ...
UNIFORM_KL = _bound(M.DINO_KL_TEACHER_STUDENT, 0)  # ... and KL(teacher || student) across views <= 0.03 nats
ONEHOT_ENTROPY = _bound(M.DINO_TEACHER_ENTROPY, 0)  # teacher entropy <= 0.3 ln K ...
ONEHOT_BATCH_ENTROPY = _bound(M.DINO_TEACHER_BATCH_ENTROPY, 0)  # ... and batch-mean entropy <= 0.5 ln K
DIM_RANKME = _bound(M.COLLAPSE_RANKME, 0)  # RankMe <= 0.1 min(N, D) ...
DIM_STD_L2 = _bound(M.COLLAPSE_STD_L2, 0)  # ... or std_l2 <= 0.3 (about sqrt(k / D): under ~10% of directions used)

LABELS = ("healthy", "uniform collapse", "one-hot collapse", "dimensional collapse", "unknown")  # diagnose()'s
ALARMS = ("uniform collapse", "one-hot collapse", "dimensional collapse", "not learning")  # labels that alarm


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

    def values(self) -> dict[str, float]:
        """The three ``collapse/*`` values under their metric names."""
        return {M.COLLAPSE_STD_L2: self.std_l2, M.COLLAPSE_RANKME: self.rankme,
                M.COLLAPSE_MEAN_COSINE: self.mean_cosine}


def feature_stats(z: np.ndarray | torch.Tensor) -> FeatureStats:
    """All feature statistics of z (N, D)."""
    x = _t(z)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"feature statistics need a matrix (N >= 2, D); got shape {tuple(x.shape)}")
    c = {k: float(v) for k, v in online.collapse_stats(x).items()}
    return FeatureStats(int(x.shape[0]), int(x.shape[1]), c[M.COLLAPSE_STD_L2], c[M.COLLAPSE_RANKME],
                        c[M.COLLAPSE_MEAN_COSINE], singular_spectrum(x), per_dim_variance(x))


# ---------------------------------------------------------------------------------------
# diagnose()
# ---------------------------------------------------------------------------------------
@dataclass
class Diagnosis:
    """A label from ``LABELS``, the sentences that justify it, and the numbers behind them.
    A run's diagnosis (``diagnose_run``, from ``analysis.alarms``) also names the rule that gave
    the label, the first logged step at which it fired, the step judged and what to try."""

    label: str
    evidence: list[str] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)
    rule: str = ""  # the alarm rule that gave the label ("" when none fired)
    first_step: int | None = None  # first logged step at which that rule fired
    step: int | None = None  # the step judged (the run's last logged step)
    advice: str = ""  # what to try, from the run's config ("" when healthy)

    @property
    def alarm(self) -> bool:
        """True when the label is an alarm (a collapse or not learning)."""
        return self.label in ALARMS

    def summary(self) -> str:
        head = f"{self.label}" + (f" ({self.rule}, first flagged at step {self.first_step})" if self.rule else "")
        return f"{head}: " + "; ".join(self.evidence) + (f" Try: {self.advice}" if self.advice else "")


def diagnose(values: Mapping[str, float], max_rank: int | None = None, cfg: Config | None = None) -> Diagnosis:
    """Label a representation (one snapshot: a checkpoint's features) from metric values named
    as in ``core.metrics``.

    Uses ``dino/teacher_entropy``, ``dino/log_k``, ``dino/kl_teacher_student``,
    ``dino/teacher_batch_entropy`` (DINO only) and ``collapse/rankme``, ``collapse/std_l2``
    (any method); missing ones are skipped. ``max_rank``: min(N, D) of the matrix RankMe was
    computed on (RankMe is judged as a fraction of it; without it only std_l2 judges).
    Checks run in order uniform, one-hot, dimensional; the first that holds gives the label.
    ``cfg``: the run's config, from which the advice names its causes (``analysis.advice``).
    A run over its curves is judged by ``analysis.alarms`` (``diagnose_run``).
    """
    d = _diagnose(values, max_rank)
    from analysis.advice import advice

    d.advice = advice(d.label, cfg)
    return d


def _diagnose(values: Mapping[str, float], max_rank: int | None) -> Diagnosis:
    v = {k: float(x) for k, x in values.items() if x is not None and math.isfinite(float(x))}
    ev: list[str] = []
    h, log_k = v.get(M.DINO_TEACHER_ENTROPY), v.get(M.DINO_LOG_K)
    kl, hb = v.get(M.DINO_KL_TEACHER_STUDENT), v.get(M.DINO_TEACHER_BATCH_ENTROPY)
    rm, sl = v.get(M.COLLAPSE_RANKME), v.get(M.COLLAPSE_STD_L2)
    if h is not None and log_k:
        r = h / log_k
        if r >= UNIFORM_ENTROPY and kl is not None and kl <= UNIFORM_KL:
            return Diagnosis("uniform collapse", [
                f"teacher entropy {h:.3f} nats is {r:.2f} ln K (>= {UNIFORM_ENTROPY} ln K: nearly uniform outputs)",
                f"KL(teacher || student) {kl:.4f} <= {UNIFORM_KL}: the student matches a flat teacher, "
                "nothing is learnt"], v)
        if r <= ONEHOT_ENTROPY and hb is not None and hb / log_k <= ONEHOT_BATCH_ENTROPY:
            return Diagnosis("one-hot collapse", [
                f"teacher entropy {h:.3f} nats is {r:.2f} ln K (<= {ONEHOT_ENTROPY} ln K: near one-hot outputs)",
                f"batch-mean entropy {hb:.3f} is {hb / log_k:.2f} ln K (<= {ONEHOT_BATCH_ENTROPY} ln K): every image "
                f"picks the same ~{math.exp(hb):.1f} of {round(math.exp(log_k))} prototypes"], v)
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
        return Diagnosis("dimensional collapse", dim_ev, v)
    if not ev:
        return Diagnosis("unknown", ["no collapse statistics available (need dino/* or collapse/* values)"], v)
    return Diagnosis("healthy", ev, v)


def diagnose_features(z: np.ndarray | torch.Tensor, dino: Mapping[str, float] | None = None,
                      cfg: Config | None = None) -> Diagnosis:
    """``diagnose`` from embeddings z (N, D) and, for DINO, the ``dino/*`` statistics of its
    loss object on the same images (``dino_output_stats``); ``cfg`` the run's config (advice)."""
    fs = feature_stats(z)
    return diagnose({**fs.values(), **(dino or {})}, max_rank=min(fs.n, fs.dim), cfg=cfg)


def diagnose_run(run_dir: Path | str) -> Diagnosis:
    """A run's verdict from its logged curves and its config: ``analysis.alarms`` at its last
    logged step (label, the rule that fired and the first step it fired at, the evidence of
    every rule, advice from the config). The Live banner, the Runs and Compare tables and
    ``python -m analysis RUN --what diagnose`` all read this."""
    from analysis.alarms import RULE_METRICS, diagnose_curves
    from analysis.curves import read_run_curves
    from trainer.loading import run_config

    curves = read_run_curves(run_dir, RULE_METRICS)
    try:
        cfg = run_config(run_dir)
    except Exception as e:  # noqa: BLE001 - a run without a readable config cannot be judged against it
        return Diagnosis("unknown", [f"the run's config cannot be read ({e})"], {})
    return diagnose_curves(curves, cfg)


@torch.inference_mode()
def dino_output_stats(method: DINO, views: list[torch.Tensor], step: int) -> dict[str, float]:
    """The ``dino/*`` statistics of a DINO method on one batch of multi-crop views (globals
    first, each (B, 3, H, W) normalised), computed by its own loss object as training does
    (teacher on the global crops, student on all, centre, centring mode and tau_t at ``step``,
    KL across views), in eval mode and without moving the centre. With iBOT the student sees
    the global crops with the masks training drew at ``step``, as it did."""
    from core.eval_mode import eval_mode

    masks = method.draw_masks(step, views[0].shape[0])
    with eval_mode(method):
        t_logits = method.teacher(views[:2])[0]
        s_logits = method.student(views, None if masks is None else masks.masks)[0]
        out = method.loss(t_logits, s_logits, step, update_center=False)
    return {k: float(v) for k, v in out.stats.items()}


def dino_views(method: DINO, images: np.ndarray, seed: int = 0) -> list[list[torch.Tensor]]:
    """The training views (the method's ``ViewSpec``: multi-crop with its augmentations) of
    uint8 images (N, S, S, 3), in batches of the training batch size, drawn from ``seed``."""
    from trainer.data.multicrop import build_view_transform

    transform = build_view_transform(method.views())
    g = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # (N, 3, S, S) uint8
    b = method.cfg.data.batch_size
    return [transform.batch(x[s:s + b], g) for s in range(0, len(x) - b + 1, b)] or [transform.batch(x, g)]


def diagnose_dino(method: DINO, batches: list[list[torch.Tensor]], step: int, z: np.ndarray | torch.Tensor
                  ) -> tuple[Diagnosis, dict[str, float]]:
    """``diagnose`` of a DINO checkpoint: its loss object's statistics on each batch of views,
    averaged over the batches (as ``diagnose_run`` averages logged values), with the features
    z (N, D). Returns the diagnosis and the averaged ``dino/*`` values."""
    per_batch = [dino_output_stats(method, views, step) for views in batches]
    dino = {k: float(np.mean([p[k] for p in per_batch])) for k in per_batch[0]}
    return diagnose_features(z, dino, method.cfg), dino


@dataclass
class DiagnosisReport:
    """A checkpoint judged on its own features (and DINO outputs), and its run on its logs."""

    checkpoint: Diagnosis  # from the val features (+ the DINO loss object's statistics for DINO runs)
    features: FeatureStats
    feature: str  # which image feature was judged: the method's own ("cls" | "pooled")
    run: Diagnosis | None = None  # from the run's logged scalars; None outside a run
    dino: dict[str, float] | None = None  # the dino/* statistics of the checkpoint (DINO runs)


def diagnose_source(source: Source, max_images: int = 512) -> DiagnosisReport:
    """``diagnose`` an ``analysis.source.Source`` on its val split: the image feature its method
    trains (``Method.feature``: [CLS] for DINO and weights files, pooled for MAE and I-JEPA) and,
    for a DINO run, its loss object's statistics on multi-crop views of the same images in
    batches of the training size; and its run on its logged scalars."""
    from analysis.features import split_features
    from trainer.methods import method_class

    feature = method_class(source.method).feature if source.method else "cls"
    z = split_features(source, "val", max_images).get(feature)
    dino = None
    if source.method == "dino" and source.run_dir is not None:
        from analysis.source import split_images
        from trainer.loading import load_method

        method, _, _ = load_method(source.run_dir, source.step)
        images = split_images(source, "val", max_images)[0]
        check, dino = diagnose_dino(method, dino_views(method, images, source.seed), source.step or 0, z)
    else:
        cfg = None
        if source.run_dir is not None:
            from trainer.loading import run_config

            cfg = run_config(source.run_dir)
        check = diagnose_features(z, cfg=cfg)
    run = diagnose_run(source.run_dir) if source.run_dir is not None else None
    return DiagnosisReport(check, feature_stats(z), feature, run, dino)
