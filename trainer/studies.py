"""Every classic ablation as data (``python -m trainer ablate STUDY``): its arms, the paper's
finding, a default budget, the metrics it compares and the rule (``trainer.study_rules``) by
which ``analysis.verdict`` judges, from the figures, whether our runs reproduce the finding.

The rules were written from the papers before any of these runs; margins are noise levels: a
k-NN or linear top-1 on 1,000 val images has a binomial standard error of about 0.015 near
p = 0.3, hence ``NOISE``. Studies whose ``requires`` fields this config lacks (iBOT and Gram
anchoring arrive with the DINOv2/v3 work) are listed but refused until those fields exist: a
new study is one more entry in ``STUDIES``.
"""

from __future__ import annotations

import dataclasses

from core import metrics as M
from core.measures import ATTENTION_JACCARD, LINEAR_TOP1
from trainer.config import Config
from trainer.study_rules import LN_K, Arm, Check, Claim, Study, Value

NOISE = 0.015  # one standard error of a top-1 accuracy on 1,000 val images (p ~ 0.3)


def _line(metric: str, end: int) -> float:
    """One end of ``metric``'s healthy range in core.metrics: the collapse lines the alarms and
    each run's diagnosis (analysis.collapse) read, so a verdict and a diagnosis never disagree on
    what "collapsed" means."""
    value = M.METRICS[metric].healthy_range[end]
    assert value is not None, metric
    return value


UNIFORM_H = _line(M.DINO_TEACHER_ENTROPY, 1)  # teacher entropy >= 0.9 ln K: uniform ...
COLLAPSED_KL = _line(M.DINO_KL_TEACHER_STUDENT, 0)  # ... with KL <= 0.03 nats: nothing left to learn
ONEHOT_H = _line(M.DINO_TEACHER_ENTROPY, 0)  # teacher entropy <= 0.3 ln K: one-hot ...
ONEHOT_BATCH_H = _line(M.DINO_TEACHER_BATCH_ENTROPY, 0)  # ... batch-mean entropy <= 0.5 ln K: the same one
COLLAPSED_STD = _line(M.COLLAPSE_STD_L2, 0)  # std_l2 <= 0.3: the embeddings use under ~10% of directions

# The setting shared by every arm of the DINO studies (the DINO paper's Fig. 7): the default
# augmentations and teacher temperature with KoLeo at 0.05 instead of 0.2. KoLeo spreads the
# backbone's features by itself: at 0.2 a collapsed head's k-NN rises as far as the full method's
# (shapes, 16 px: 0.29 in all three arms) and the study would no longer show what centering and
# sharpening each do; at 0 the full method drifts to uniform (0.83-0.95 ln K) and its k-NN falls
# below the collapsed arms'. At 0.05: 0.33 vs 0.27-0.28 (docs/architecture.md).
FIG7 = ("dino.koleo_weight=0.05",)
# A small ViT on 16 px shapes (the collapse study of tests/trainer/test_dino_science.py): each
# DINO run costs about a third of a default cpu-tiny 32 px one.
DINO_SMALL = ("data.image_size=16", "model.preset=custom", "model.embed_dim=64", "model.depth=3",
              "model.num_heads=2", "dino.n_local=4", "dino.hidden_dim=256", "data.batch_size=64")

H, KL, CE = M.DINO_TEACHER_ENTROPY, M.DINO_KL_TEACHER_STUDENT, M.DINO_CE
KNN = M.EVAL_KNN_TOP1


def _v(arm: str, metric: str, per: str = "") -> Value:
    return Value(arm, metric, per)


def uniform(arm: str) -> tuple[Check, ...]:
    """Uniform collapse as the diagnosis calls it: entropy >= 0.9 ln K and KL <= 0.03."""
    return Check(_v(arm, H, LN_K), ">=", UNIFORM_H), Check(_v(arm, KL), "<=", COLLAPSED_KL)


def one_hot(arm: str) -> tuple[Check, ...]:
    """One-hot collapse as the diagnosis calls it (entropy <= 0.3 ln K, batch-mean entropy
    <= 0.5 ln K), with the KL near 0 of the paper's Fig. 7 (<= 0.03)."""
    return (Check(_v(arm, H, LN_K), "<=", ONEHOT_H), Check(_v(arm, M.DINO_TEACHER_BATCH_ENTROPY, LN_K), "<=",
                                                           ONEHOT_BATCH_H), Check(_v(arm, KL), "<=", COLLAPSED_KL))


def trains(arm: str) -> tuple[Check, ...]:
    """Not collapsed: the teacher inside its healthy range (0.3-0.9 ln K) and KL above 0.03."""
    return (Check(_v(arm, H, LN_K), ">", ONEHOT_H), Check(_v(arm, H, LN_K), "<", UNIFORM_H),
            Check(_v(arm, KL), ">", COLLAPSED_KL))


def above(a: str, b: str, metric: str, margin: float = NOISE) -> Check:
    return Check(_v(a, metric), ">", _v(b, metric), margin)


def _temp(t: float) -> Arm:
    return Arm(f"tau{t:g}", (f"dino.teacher_temp={t}", f"dino.warmup_teacher_temp={t}",
                             "dino.teacher_temp_warmup_steps=0"))


CENTERING_SHARPENING = Study(
    "centering-sharpening", "dino", "Centering x sharpening (the collapse study)",
    "DINO (Caron et al. 2021), Sec. 5.3 and Fig. 7",
    "Centering alone collapses the teacher to a uniform output (entropy -> ln K, KL -> 0), sharpening "
    "alone to a one-hot one (entropy -> 0, KL -> 0); with both, the entropy stays in between and the KL "
    "well above 0, and only then are the features good (k-NN).",
    arms=(Arm("both", (*FIG7, "dino.centering=mean", "dino.sharpening=true")),
          Arm("centering-only", (*FIG7, "dino.centering=mean", "dino.sharpening=false")),
          Arm("sharpening-only", (*FIG7, "dino.centering=none", "dino.sharpening=true")),
          Arm("neither", (*FIG7, "dino.centering=none", "dino.sharpening=false"))),
    claims=(
        Claim("Centering alone: uniform collapse (entropy near ln K, KL near 0)", uniform("centering-only")),
        Claim("Sharpening alone: one-hot collapse (entropy near 0, KL near 0)",
              one_hot("sharpening-only")),
        Claim("Both: entropy strictly between the collapsed arms and KL clearly above 0",
              (Check(_v("both", H, LN_K), ">", _v("sharpening-only", H, LN_K), 0.1),
               Check(_v("both", H, LN_K), "<", _v("centering-only", H, LN_K), 0.1),
               Check(_v("both", KL), ">=", 0.1))),
        Claim("k-NN: both above each collapsed arm", (above("both", "centering-only", KNN),
                                                      above("both", "sharpening-only", KNN)), headline=False),
    ),
    metrics=(H, KL, M.DINO_TEACHER_BATCH_ENTROPY, KNN, M.COLLAPSE_STD_L2),
    base=DINO_SMALL, steps=150, seeds=3,
    note="The paper's Fig. 7 plots the teacher entropy and KL over training; a collapsed head passes no "
         "gradient, so KoLeo (0.05 in every arm) is the only thing its backbone learns from, which can lift a "
         "collapsed arm's k-NN at this scale.")

TEACHER_TEMP = Study(
    "teacher-temp", "dino", "Teacher temperature",
    "DINO (Caron et al. 2021), appendix ablation of tau_t; main_dino.py: 'anything above 0.07 is unstable'",
    "tau_t = 0.08 collapses, with the loss stuck at ln K; the default 0.04, and 0.04 warmed up to 0.07, train.",
    arms=(_temp(0.02), _temp(0.04), _temp(0.06), _temp(0.08),
          Arm("warmup0.04-0.07", ("dino.warmup_teacher_temp=0.04", "dino.teacher_temp=0.07"),
              (("dino.teacher_temp_warmup_steps", 0.3),))),
    claims=(
        Claim("tau_t = 0.08 collapses, the loss stuck at ln K",
              (*uniform("tau0.08"), Check(_v("tau0.08", CE, LN_K), ">=", UNIFORM_H))),
        Claim("tau_t = 0.04 (the paper's default) trains", trains("tau0.04")),
        Claim("tau_t 0.04 warmed up to 0.07 trains", trains("warmup0.04-0.07"), headline=False),
        Claim("tau_t = 0.06 trains", trains("tau0.06"), headline=False),
    ),
    metrics=(H, KL, CE, KNN), base=(*DINO_SMALL, *FIG7), steps=200, seeds=3,
    note="Our CPU default is tau_t = 0.015: short runs with strong colour jitter drift to uniform at the paper's "
         "0.04 (docs/architecture.md), so the paper's temperatures may all sit closer to collapse here.")

CENTER_MOMENTUM = Study(
    "center-momentum", "dino", "Centre momentum",
    "DINO (Caron et al. 2021), appendix ablation of the centre momentum m",
    "m = 0.999 collapses (the centre moves too slowly to stop one dimension dominating); 0, 0.9 and 0.99 train.",
    arms=tuple(Arm(f"m{m:g}", (f"dino.center_momentum={m}",)) for m in (0.0, 0.9, 0.99, 0.999)),
    claims=(
        Claim("m = 0.999 collapses", (Check(_v("m0.999", KL), "<=", COLLAPSED_KL),)),
        Claim("m = 0.9 (the default) trains", trains("m0.9")),
        Claim("m = 0 and m = 0.99 train", (*trains("m0"), *trains("m0.99")), headline=False),
    ),
    metrics=(H, KL, M.DINO_TEACHER_BATCH_ENTROPY, M.DINO_CENTER_NORM, KNN),
    base=(*DINO_SMALL, *FIG7), steps=200, seeds=3,
    note="The centre's time constant is 1 / (1 - m) steps: 1,000 at m = 0.999, longer than our runs.")

OUT_DIM = Study(
    "out-dim", "dino", "Output dimension K",
    "DINO (Caron et al. 2021), Table on the output dimension (k-NN rises from K = 1,024 to 65,536)",
    "A larger head output (more prototypes K) gives better features, with diminishing returns.",
    arms=tuple(Arm(f"K{k}", (f"dino.out_dim={k}",)) for k in (16, 64, 256, 1024)),
    claims=(
        Claim("k-NN: the largest K beats the smallest", (above("K1024", "K16", KNN),)),
        Claim("k-NN rises at each step up in K", (above("K64", "K16", KNN), above("K256", "K64", KNN),
                                                 above("K1024", "K256", KNN)), headline=False),
    ),
    metrics=(KNN, H, KL, M.COLLAPSE_RANKME), base=(*DINO_SMALL, *FIG7), steps=200, seeds=3,
    note="shapes has 8 classes, so K runs from 2 to 128 prototypes per class; entropies are read in units of "
         "each run's own ln K.")

MASK_RATIO = Study(
    "mask-ratio", "mae", "MAE mask ratio",
    "MAE (He et al. 2022), Fig. 5",
    "The linear probe improves as the mask ratio rises up to 0.75 and drops beyond it.",
    arms=tuple(Arm(f"mask{r:g}", (f"mae.mask_ratio={r}",)) for r in (0.15, 0.5, 0.75, 0.9)),
    claims=(
        Claim("Linear probe: 0.75 beats 0.5 and 0.15", (above("mask0.75", "mask0.5", LINEAR_TOP1),
                                                        above("mask0.5", "mask0.15", LINEAR_TOP1))),
        Claim("Linear probe: 0.75 beats 0.9", (above("mask0.75", "mask0.9", LINEAR_TOP1),), headline=False),
    ),
    metrics=(LINEAR_TOP1, KNN, M.MAE_LOSS, M.COLLAPSE_STD_L2), steps=400, seeds=3,
    note="MAE's features need ~1,000 steps on CPU to lift k-NN clearly above random init "
         "(docs/architecture.md); at a short budget the probe may not separate the ratios.")

REGISTERS = Study(
    "registers", "dino", "Registers",
    "Vision Transformers Need Registers (Darcet et al. 2024)",
    "Without registers a trained ViT repurposes a few patch tokens as high-norm stores of global "
    "information; 4 registers take that role (attention flows to them) and the [CLS] attention maps "
    "find objects better.",
    arms=(Arm("reg0", ("model.reg_tokens=0",)), Arm("reg4", ("model.reg_tokens=4",))),
    claims=(
        Claim("Fewer high-norm patch tokens with registers",
              (Check(_v("reg4", M.TOKENS_HIGH_NORM_FRAC), "<", _v("reg0", M.TOKENS_HIGH_NORM_FRAC), 0.002),)),
        Claim("Attention Jaccard against the object masks is higher with registers",
              (above("reg4", "reg0", ATTENTION_JACCARD, 0.01),)),
        Claim("The registers draw attention (share >= 0.1, about twice a uniform share of 4 of 69 tokens)",
              (Check(_v("reg4", M.TOKENS_REGISTER_ATTN_SHARE), ">=", 0.1),), headline=False),
    ),
    metrics=(M.TOKENS_HIGH_NORM_FRAC, M.TOKENS_REGISTER_ATTN_SHARE, ATTENTION_JACCARD, KNN, H),
    steps=300, seeds=3,
    note="The DINO defaults (KoLeo 0.2: a healthy run to look for artefacts in) at 32 px images (an 8 x 8 "
         "patch grid) so that attention maps have something to find; the paper's "
         "outliers appear in large models after long training, which a CPU run may not reach.")

JEPA_EMA = Study(
    "jepa-ema", "ijepa", "I-JEPA's EMA target",
    "I-JEPA (Assran et al. 2023), Sec. 3 (the target encoder is an EMA of the context encoder)",
    "Without the EMA target (the context encoder's own features under stop-gradient) the "
    "representation collapses; with it, it stays spread.",
    arms=(Arm("ema", ("ijepa.ema=true",)), Arm("no-ema", ("ijepa.ema=false",))),
    claims=(
        Claim("Without EMA: collapse (std_l2 <= 0.3)",
              (Check(_v("no-ema", M.COLLAPSE_STD_L2), "<=", COLLAPSED_STD),)),
        Claim("With EMA: spread (std_l2 > 0.3) and clearly above the run without",
              (Check(_v("ema", M.COLLAPSE_STD_L2), ">", COLLAPSED_STD),
               above("ema", "no-ema", M.COLLAPSE_STD_L2, 0.1))),
        Claim("Target std: higher with EMA", (above("ema", "no-ema", M.IJEPA_TARGET_STD, 0.1),), headline=False),
    ),
    metrics=(M.COLLAPSE_STD_L2, M.COLLAPSE_RANKME, M.IJEPA_TARGET_STD, KNN),
    base=("ijepa.reg=none",), steps=250, seeds=3,
    note="Both arms without the regulariser (ijepa.reg=none, as in the paper): KoLeo alone also prevents the "
         "no-EMA collapse (docs/architecture.md).")

# --- the DINOv2 / DINOv3 studies: runnable once the config has their fields ------------------
IBOT = Study(
    "ibot", "dino", "iBOT patch loss",
    "DINOv2 (Oquab et al. 2024), Table 1 ablation (the iBOT masked-patch loss)",
    "Adding iBOT's masked-patch loss improves the patch features (segmentation) at no cost to the image-level "
    "ones.",
    arms=(Arm("no-ibot", ("dino.ibot_weight=0",)), Arm("ibot", ("dino.ibot_weight=1.0",))),
    claims=(
        Claim("Attention Jaccard is higher with iBOT", (above("ibot", "no-ibot", ATTENTION_JACCARD, 0.01),)),
        Claim("k-NN is no lower with iBOT", (Check(_v("ibot", KNN), ">=", _v("no-ibot", KNN), NOISE),),
              headline=False),
    ),
    metrics=(ATTENTION_JACCARD, KNN, H, KL), base=FIG7, steps=300, seeds=3,
    requires=("dino.ibot_weight",))

GRAM = Study(
    "gram", "dino", "Gram anchoring",
    "DINOv3 (Simeoni et al. 2025), Sec. 4 (Gram anchoring)",
    "Anchoring the student's patch-similarity (Gram) matrix to an earlier teacher's keeps the dense features "
    "from degrading over long training.",
    arms=(Arm("no-gram", ("dino.gram_weight=0",)),
          Arm("gram", ("dino.gram_weight=2.0",), (("dino.gram_teacher_step", 0.2), ("dino.gram_start", 0.4),
                                                  ("dino.gram_ramp_steps", 0.1)))),
    claims=(
        Claim("Attention Jaccard is higher with Gram anchoring", (above("gram", "no-gram", ATTENTION_JACCARD, 0.01),)),
        Claim("k-NN is no lower with Gram anchoring", (Check(_v("gram", KNN), ">=", _v("no-gram", KNN), NOISE),),
              headline=False),
    ),
    metrics=(ATTENTION_JACCARD, KNN, H, KL), base=FIG7, steps=300, seeds=3,
    requires=("dino.gram_weight",))

STUDIES: dict[str, Study] = {s.name: s for s in (CENTERING_SHARPENING, TEACHER_TEMP, CENTER_MOMENTUM, OUT_DIM,
                                                 MASK_RATIO, REGISTERS, JEPA_EMA, IBOT, GRAM)}


def config_fields() -> set[str]:
    """Every ``section.field`` of this trainer's ``Config``."""
    return {f"{sec.name}.{f.name}" for sec in dataclasses.fields(Config)
            for f in dataclasses.fields(getattr(Config(), sec.name))}


def missing_fields(study: Study, have: set[str] | None = None) -> list[str]:
    """The config fields ``study`` needs that ``have`` (default: this trainer's) lacks ([] = runnable)."""
    have = config_fields() if have is None else have
    return [k for k in study.requires if k not in have]


def match_arm(study: Study, config: dict) -> str | None:
    """The arm of ``study`` whose every override a run's config (run.json's nested dict) holds, or
    None: how a group started before runs recorded ``run.arm`` (the demo's grid) finds its arms."""
    flat = {f"{s}.{k}": v for s, d in config.items() if isinstance(d, dict) for k, v in d.items()}
    if flat.get("run.method") != study.method:
        return None
    hits = []
    for arm in study.arms:
        try:
            want = Config().with_overrides(list(arm.sets)).to_dict()
        except ValueError:
            return None
        wflat = {f"{s}.{k}": v for s, d in want.items() for k, v in d.items()}
        if all(flat.get(k) == wflat[k] for k in (o.split("=", 1)[0].strip() for o in arm.sets)):
            hits.append(arm.name)
    return hits[0] if len(hits) == 1 else None
