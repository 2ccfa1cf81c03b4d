"""Every scalar name the run store holds, declared once: its unit, the family the Live page
draws it in, its healthy range and its Guide entry (formula, meaning, what healthy and
collapsed look like, what to try).

Code that logs or reads a metric uses the constant (``M.DINO_TEACHER_ENTROPY`` is the string
``"dino/teacher_entropy"``), so a name exists in one place. The methods, the loop, the
progress bar, ``analysis.collapse.diagnose`` (its thresholds are the healthy ranges below),
the charts, the Live families and the Guide all read these declarations;
``tests/test_metric_names.py`` checks that every name any run logs is declared here and every
declaration is logged by something.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """A group of metrics drawn together on the Live page and listed together in the Guide."""

    title: str
    help: str
    figure: str = "panels"  # "panels": one small panel per metric; "collapse": DINO's 2 x 2 figure first;
    #   "ibot": panels, the entropy one with the patch head's 0 and ln K lines


LOSSES = Family("Losses", "the loss of each method and the gradient norm")
DINO_COLLAPSE = Family("DINO collapse", "teacher entropy between 0 and ln K, KL, batch entropy, center norm",
                       figure="collapse")
IBOT = Family("iBOT patch loss", "DINOv2's masked-patch distillation: its loss, the per-token cross-entropy, the "
              "patch teacher's entropy between 0 and ln K, and the KL", figure="ibot")
DENSE = Family("Dense features", "patch-level health: [CLS]-patch cosine, patch-feature rank, Gram anchoring")
EMBEDDING = Family("Embedding health", "spread and rank of the features, and k-NN accuracy")
TOKENS = Family("Tokens", "registers and high-norm outlier tokens")
SCHEDULES = Family("Schedules", "learning rate, weight decay, EMA momentum, teacher temperature")
SPEED = Family("Speed", "training throughput")
FAMILIES: tuple[Family, ...] = (LOSSES, DINO_COLLAPSE, IBOT, DENSE, EMBEDDING, TOKENS, SCHEDULES, SPEED)
# Names no declaration knows: read from another trainer's log (``python -m sslscope.monitor
# import-log`` files them under this prefix) or logged by a user's own code.
IMPORTED_PREFIX = "imported/"
IMPORTED = Family("Imported", "metrics read from another trainer's log that SSLScope has no declaration for")
OTHER = Family("Other metrics", "metrics without a family")


@dataclass(frozen=True)
class Metric:
    """One logged scalar. ``healthy_range`` (low, high), either end None, is in units of
    ``per`` ("" = absolute, "ln K", "min(N, D)"): ``analysis.collapse.diagnose`` judges by it."""

    name: str  # the scalar's name in the run store
    title: str
    unit: str  # "" when unitless
    family: Family
    formula: str  # LaTeX for st.latex ("" if none)
    meaning: str
    healthy: str = ""
    collapsed: str = ""
    try_: str = ""
    healthy_range: tuple[float | None, float | None] | None = None
    per: str = ""
    short: str = ""  # label in the terminal progress bar ("" = not shown)
    curve: bool = True  # False: not a curve of its own (ln K is the reference line of the entropy panels)

    @property
    def anchor(self) -> str:
        """The Guide page's heading anchor for this metric."""
        return self.name.replace("/", "-").replace("_", "-")

    @property
    def range_text(self) -> str:
        """The healthy range in words ("0.3-0.9 ln K", ">= 0.03"), "" when none is declared."""
        if self.healthy_range is None:
            return ""
        lo, hi = self.healthy_range
        per = f" {self.per}" if self.per else ""
        if lo is not None and hi is not None:
            return f"{lo:g}-{hi:g}{per}"
        return f">= {lo:g}{per}" if lo is not None else f"<= {hi:g}{per}"

    @property
    def label(self) -> str:
        """Title with its unit, for axis and panel titles."""
        return f"{self.title} ({self.unit})" if self.unit else self.title


METRICS: dict[str, Metric] = {}


def declare(metric: Metric) -> str:
    """Register ``metric``; returns its name (the constant code uses)."""
    assert metric.name not in METRICS, f"{metric.name} declared twice"
    METRICS[metric.name] = metric
    return metric.name


def family_names(family: Family) -> tuple[str, ...]:
    """The names of ``family`` in declaration order (the Live page's panel order)."""
    return tuple(n for n, m in METRICS.items() if m.family == family)


# --- losses -----------------------------------------------------------------------------
TRAIN_LOSS = declare(Metric(
    "train/loss", "Training loss", "", LOSSES, r"\mathcal{L}",
    "The method's loss: DINO's cross-entropy between teacher and student, MAE's masked-patch "
    "MSE, I-JEPA's latent regression.",
    "falls quickly then flattens; for DINO it settles above 0.",
    "a DINO loss that drops to almost 0 is a warning, not a success: both collapses make "
    "teacher and student agree trivially (check the KL below).",
    "if it diverges or turns NaN: lower optim.lr, keep optim.clip_grad at 3, lengthen optim.warmup_steps.",
    short="loss"))
DINO_CE = declare(Metric(
    "dino/ce", "DINO cross-entropy", "nats", LOSSES,
    r"\frac{1}{|P|}\sum_{(i,j)\in P} -\sum_k p_t^{(i)}[k] \log p_s^{(j)}[k]",
    "The distillation loss alone (train/loss minus KoLeo), over pairs P of different views.",
    "above the teacher entropy: KL = CE - H(p_t) stays positive.",
    "equal to the teacher entropy: KL = 0, nothing left to learn."))
DINO_KOLEO = declare(Metric(
    "dino/koleo", "KoLeo", "", LOSSES,
    r"\mathcal{L}_{\mathrm{KoLeo}} = -\frac1B\sum_i \log \min_{j\ne i}\lVert x_i - x_j\rVert",
    "DINOv2's regulariser on the student's [CLS]: spreads features uniformly (dino.koleo_weight).",
    try_="0.1 pulls small-data runs away from uniform collapse."))
MAE_LOSS = declare(Metric(
    "mae/loss", "MAE loss", "", LOSSES, r"\frac{1}{|M|}\sum_{i \in M} \lVert \hat x_i - x_i \rVert^2",
    "Mean squared error on the masked patches only (M), optionally on per-patch normalised pixels.",
    "falls well below predicting each patch's mean colour.",
    "flat at the mean-colour level: the decoder only paints blurred averages.",
    "train longer; mae.norm_pix_loss=true sharpens reconstructions."))
MAE_PSNR_MASKED = declare(Metric(
    "mae/psnr_masked", "Masked PSNR", "dB", LOSSES, r"10 \log_{10} \frac{\mathrm{MAX}^2}{\mathrm{MSE}_{M}}",
    "PSNR of the reconstruction on masked patches (dB). Higher is better.", "rising.", short="psnr"))
MAE_PSNR_MASKED_PROBE = declare(Metric(
    "mae/psnr_masked_probe", "Masked PSNR (probe batch)", "dB", LOSSES,
    r"10 \log_{10} \frac{\mathrm{MAX}^2}{\mathrm{MSE}_{M}}",
    "mae/psnr_masked on the fixed probe images with fixed masks: comparable across steps.", "rising."))
IJEPA_LOSS = declare(Metric(
    "ijepa/loss", "I-JEPA loss", "", LOSSES,
    r"\frac{1}{|T|}\sum_{i \in T} \ell\big(\hat s_i,\ \mathrm{LN}(\bar s_i)\big)",
    "Smooth-L1 (or L2) between predicted and layer-normed target-encoder features at the "
    "target blocks T. Never pixels.",
    "falls but not to 0.", "near 0 together with a falling target std: latent collapse.",
    "keep ijepa.ema=true; add ijepa.reg=variance with a small ijepa.reg_weight."))
IJEPA_REG = declare(Metric(
    "ijepa/reg", "I-JEPA anti-collapse regulariser", "", LOSSES,
    r"\text{KoLeo or } \frac1D\sum_d \max(0, 1 - \mathrm{std}(z_d))",
    "The regulariser on the pooled context features (ijepa.reg: KoLeo at 0.3 by default; none in the paper).",
    "small and steady.", "large: the features are bunching up.",
    "ijepa.reg=variance with ijepa.reg_weight=1 when running without EMA."))
GRAD_NORM = declare(Metric(
    "grad/norm", "Gradient norm", "", LOSSES, r"\lVert \nabla_\theta \mathcal{L} \rVert_2",
    "Global l2 norm of the gradients before clipping.",
    "stable or slowly falling.", "spikes before a NaN; exactly 0 means nothing is learning.",
    "optim.clip_grad=3 (DINO's value) tames spikes."))

# --- DINO collapse: the four panels of the collapse figure first ----------------------------
DINO_TEACHER_ENTROPY = declare(Metric(
    "dino/teacher_entropy", "Teacher entropy", "nats", DINO_COLLAPSE,
    r"H(p_t) = -\frac1B\sum_b \sum_{k=1}^{K} p_t^{(b,k)} \log p_t^{(b,k)},"
    r"\quad p_t = \mathrm{softmax}\big((g_t - c)/\tau_t\big)",
    "Mean per-image entropy of the teacher's distribution over the K prototypes, in nats "
    "(Sinkhorn-Knopp assignments when dino.centering=sinkhorn). Bounded by 0 (one prototype per "
    "image) and ln K (uniform).",
    "between the two collapse lines, 0.3-0.9 ln K, with KL above 0.",
    "near ln K with KL near 0: uniform collapse (centering without sharpening). Near 0 with "
    "low batch entropy: one-hot collapse (sharpening without centering).",
    "uniform: lower dino.teacher_temp, freeze the last layer longer, add KoLeo "
    "(dino.koleo_weight=0.1), smaller dino.out_dim. One-hot: turn centering on "
    "(dino.centering=mean or sinkhorn).",
    healthy_range=(0.3, 0.9), per="ln K", short="H_t"))
DINO_KL_TEACHER_STUDENT = declare(Metric(
    "dino/kl_teacher_student", "KL teacher-student", "nats", DINO_COLLAPSE,
    r"\frac{1}{|P|}\sum_{(i,j)\in P} \mathrm{KL}\big(p_t^{(i)} \,\|\, p_s^{(j)}\big)"
    r" = \mathrm{CE} - H(p_t)",
    "How much the student still has to learn from the teacher, over the same pairs P of different "
    "views as the loss (teacher on one global crop, student on another crop of the image). Both "
    "collapses drive it to 0: a constant target is matched perfectly.",
    "clearly above 0 (> 0.03 nats) and steady.", "near 0 (with entropy at ln K or at 0).",
    "see teacher entropy.", healthy_range=(0.03, None), short="KL"))
DINO_TEACHER_BATCH_ENTROPY = declare(Metric(
    "dino/teacher_batch_entropy", "Teacher batch entropy", "nats", DINO_COLLAPSE,
    r"H(\bar p_t),\quad \bar p_t = \frac1B \sum_b p_t^{(b)}",
    "Entropy of the batch-mean teacher distribution: how many prototypes are used across images.",
    "high (close to ln K) while the per-image entropy is lower: each image picks a few "
    "prototypes, different images pick different ones.",
    "low (under 0.5 ln K): the same few prototypes win for every image (one-hot collapse).",
    "centering spreads the prototypes; Sinkhorn-Knopp (dino.centering=sinkhorn) enforces it.",
    healthy_range=(0.5, None), per="ln K"))
DINO_CENTER_NORM = declare(Metric(
    "dino/center_norm", "Center norm", "", DINO_COLLAPSE,
    r"c \leftarrow m\,c + (1-m)\,\frac1B\sum_b g_t^{(b)},\quad \lVert c \rVert_2",
    "Norm of the running mean subtracted from the teacher logits (m = dino.center_momentum; 0 "
    "without mean centring).",
    "settles to a steady value.", "keeps growing when the teacher pushes all images to one side."))
DINO_TEACHER_MAX_PROB = declare(Metric(
    "dino/teacher_max_prob", "Teacher max probability", "", DINO_COLLAPSE, r"\frac1B\sum_b \max_k p_t^{(b,k)}",
    "Mean top probability of the teacher. 1/K when uniform, 1 when one-hot.",
    "in between.", "at 1/K (uniform) or 1 (one-hot)."))
DINO_TOP10PCT_MASS = declare(Metric(
    "dino/top10pct_mass", "Top-10% mass of the batch-mean teacher", "", DINO_COLLAPSE,
    r"\sum_{k \in \text{top } 10\%} \bar p_t[k], \quad \bar p_t = \frac1B \sum_b p_t^{(b)}",
    "Share of the batch-averaged teacher distribution held by its 10% largest dimensions "
    "(at least one dimension): the one definition of the teacher's top mass share.",
    "about 0.1 to 0.4: many prototypes in use.",
    "above 0.5, near 1: a few dimensions dominate every image (one-hot collapse).",
    "keep centering on (dino.centering=mean or sinkhorn).", healthy_range=(None, 0.5)))
DINO_LOG_K = declare(Metric(
    "dino/log_k", "ln K", "nats", DINO_COLLAPSE, r"\ln K",
    "The entropy of the uniform distribution over K = dino.out_dim prototypes: the "
    "uniform-collapse line of the entropy panels.", short="lnK", curve=False))

# --- iBOT (DINOv2's masked-patch loss) -----------------------------------------------------------
IBOT_LOSS = declare(Metric(
    "ibot/loss", "iBOT patch loss", "nats", IBOT,
    r"\mathcal{L}_{\mathrm{iBOT}} = \frac1n \sum_{j \in \mathcal{M}} w_j\,\mathrm{CE}_j,"
    r"\quad w_j = \frac{1}{|\mathcal{M}_{c(j)}|}",
    "The masked-patch term as DINOv2 weights it (dino.ibot_weight times it enters train/loss): the "
    "student sees half of the global crops with BEiT-style blocks of patches replaced by a mask "
    "token and predicts, at each masked patch j, the teacher's distribution on the unmasked crop. "
    "Each token is weighted by 1 / (masked patches of its crop), and the sum is divided by the n "
    "global crops of the batch, masked or not, so it is about half the mean cross-entropy of the "
    "masked crops.",
    "falls, then settles above the patch teacher entropy times the masked share.",
    "near 0 with the patch entropy at 0 or ln K: the patch head collapsed.",
    "dino.ibot_weight=1 (DINOv2); dino.ibot_separate_head=true gives the patches their own prototypes."))
IBOT_CE = declare(Metric(
    "ibot/ce", "iBOT cross-entropy per masked token", "nats", IBOT,
    r"\frac{1}{|\mathcal{M}|}\sum_{j\in\mathcal{M}} -\sum_k p_t^{(j)}[k] \log p_s^{(j)}[k]",
    "The unweighted mean over all masked tokens of the cross-entropy between the teacher's patch "
    "distribution (unmasked crop) and the student's (masked crop): comparable across mask ratios, "
    "unlike ibot/loss (DINOv2 logs only its weighted, halved term).",
    "above the patch teacher entropy (the KL stays positive).",
    "equal to the teacher entropy: nothing left to predict."))
IBOT_TEACHER_ENTROPY = declare(Metric(
    "ibot/teacher_entropy", "iBOT patch teacher entropy", "nats", IBOT,
    r"\frac{1}{|\mathcal{M}|}\sum_{j} H(p_t^{(j)}),\quad p_t^{(j)} = \mathrm{softmax}"
    r"\big((g_t^{(j)} - c_{\mathrm{patch}})/\tau_t\big)",
    "Mean entropy of the teacher's distribution at the masked patches, centred by the patch centre "
    "(or Sinkhorn-Knopp over all masked patches). Bounded by 0 and ln K of the patch head "
    "(ibot/log_k, the dashed line).",
    "between the lines, like the [CLS] teacher entropy.",
    "at ln K: every patch predicts the uniform distribution; near 0: one prototype for every patch.",
    "as for the [CLS] head: lower dino.teacher_temp against ln K, keep centring on against 0.",
    healthy_range=(0.3, 0.9), per="ln K"))
IBOT_KL = declare(Metric(
    "ibot/kl", "iBOT KL teacher-student", "nats", IBOT,
    r"\frac{1}{|\mathcal{M}|}\sum_{j} \mathrm{KL}\big(p_t^{(j)} \,\|\, p_s^{(j)}\big) = \mathrm{CE} - H",
    "How much the student, at the masked patches, still differs from the teacher on the full crop.",
    "clearly above 0.", "near 0 together with an entropy at 0 or ln K: collapsed patch head.",
    healthy_range=(0.03, None)))
IBOT_LOG_K = declare(Metric(
    "ibot/log_k", "ln K (patch head)", "nats", IBOT, r"\ln K_{\mathrm{patch}}",
    "ln of the patch head's prototype count (dino.out_dim shared, dino.ibot_out_dim separate): the "
    "uniform-collapse line of the patch entropy panel.", curve=False))
IBOT_CENTER_NORM = declare(Metric(
    "ibot/center_norm", "iBOT patch centre norm", "", IBOT,
    r"c_{\mathrm{patch}} \leftarrow m\,c_{\mathrm{patch}} + (1-m)\,\frac{1}{|\mathcal{M}|}\sum_j g_t^{(j)}",
    "Norm of the running mean subtracted from the teacher's patch logits: a separate centre from "
    "the [CLS] one (0 with Sinkhorn-Knopp or without centring).",
    "settles.", "keeps growing: the patch teacher is pushed to one side."))

# --- dense features and Gram anchoring ------------------------------------------------------------
DENSE_CLS_PATCH_COSINE = declare(Metric(
    "dense/cls_patch_cosine", "[CLS]-patch cosine", "", DENSE,
    r"\frac{1}{BN}\sum_{b,n} \cos\big(z^{(b)}_{\mathrm{CLS}}, z^{(b)}_n\big)",
    "Mean cosine between each image's [CLS] token and its patch tokens (teacher, first global crop, "
    "after the final norm). DINOv3 reports that it rises over long training as patch features lose "
    "their locality and drift towards the global feature (dense features degrade).",
    "steady or falling once training settles: patches stay distinct from the image summary.",
    "rising late in training, towards 1: every patch says what [CLS] says; segmentation and other "
    "dense uses suffer even while k-NN on [CLS] holds.",
    "Gram anchoring (dino.gram_weight=2, started late with an early teacher: dino.gram_teacher_step, "
    "dino.gram_start)."))
DENSE_PATCH_RANKME = declare(Metric(
    "dense/patch_rankme", "Patch-feature RankMe", "", DENSE,
    r"\exp\Big(-\sum_k p_k \log p_k\Big),\ p_k = \frac{\sigma_k}{\sum_j\sigma_j},\ \sigma = "
    r"\mathrm{svd}(Z_{\mathrm{patch}} \in \mathbb{R}^{BN\times D})",
    "Effective rank of all patch tokens of the batch stacked (teacher, first global crop, after the "
    "final norm): how many directions the dense features use.",
    "a good share of the width, not far below the [CLS] RankMe.",
    "near 1: every patch of every image maps to the same few directions (dense collapse).",
    "iBOT (dino.ibot_weight=1) trains the patch tokens directly."))
GRAM_LOSS = declare(Metric(
    "gram/loss", "Gram anchoring loss", "", DENSE,
    r"\mathcal{L}_{\mathrm{Gram}} = \operatorname{mean}\big[(X_S X_S^\top - X_G X_G^\top)^{2}\big]",
    "DINOv3's Gram anchoring: the mean over crops and P x P entries of the squared difference between "
    "the patch-similarity (Gram) matrices of the student (X_S) and of the Gram teacher (X_G, an earlier "
    "frozen copy of the EMA teacher), on l2-normalised patch features of the global crops. Logged from "
    "the step the Gram teacher exists (dino.gram_teacher_step), before its weight turns on.",
    "small and flat once the weight is on.", "rising before the weight is on: the patch structure drifts "
    "away from the early teacher's (what Gram anchoring then corrects).",
    "dino.gram_weight=2 (DINOv3); dino.gram_teacher_scale=2 for a higher-resolution teacher."))

# --- embedding health -----------------------------------------------------------------------
COLLAPSE_STD_L2 = declare(Metric(
    "collapse/std_l2", "Std of l2-normalised embeddings", "", EMBEDDING,
    r"\sqrt{d}\cdot \frac1d\sum_j \mathrm{std}_b\big(z_{bj}/\lVert z_b\rVert\big)",
    "Spread of the normalised embeddings (SimSiam's collapse measure), on the method's own image "
    "feature: the [CLS] token for DINO, the pooled patch tokens for MAE and I-JEPA (what k-NN reads).",
    "about 1: embeddings spread over the sphere.", "0.3 or less, towards 0: all images map to one point.",
    "see the method's own collapse advice.", healthy_range=(0.3, None)))
COLLAPSE_RANKME = declare(Metric(
    "collapse/rankme", "RankMe (effective rank)", "", EMBEDDING,
    r"\exp\Big(-\sum_k p_k \log p_k\Big),\quad p_k = \frac{\sigma_k}{\sum_j \sigma_j}",
    "Effective rank of the embedding matrix from its singular values (Garrido et al. 2023).",
    "a large fraction of min(batch, dim).",
    "0.1 min(batch, dim) or less, close to 1: dimensional collapse (few directions used).",
    "larger batch, KoLeo, lower learning rate.", healthy_range=(0.1, None), per="min(N, D)", short="rank"))
COLLAPSE_MEAN_COSINE = declare(Metric(
    "collapse/mean_cosine", "Mean cosine similarity", "", EMBEDDING,
    r"\frac{1}{B(B-1)}\sum_{i\ne j}\cos(z_i, z_j)",
    "Average cosine similarity between different images' embeddings.",
    "near 0.", "near 1: every image looks the same to the model."))
EVAL_KNN_TOP1 = declare(Metric(
    "eval/knn_top1", "k-NN top-1", "", EMBEDDING,
    r"\hat y = \arg\max_c \sum_{i \in N_k(x)} e^{\cos(x, x_i)/T}\,[y_i = c]",
    "Weighted k-NN (k = 20, T = 0.07, cosine) on the held-out split, with train features as memory; "
    "features as for the collapse statistics ([CLS] for DINO, pooled for MAE and I-JEPA).",
    "clearly above its own value at step 0 (the backbone at random initialisation).",
    "at or below the step-0 value after several evaluations: the backbone is not learning.",
    "train longer; check the collapse panels.", healthy_range=(0.01, None), per="above step 0"))
# The k-NN's healthy range is a margin over its own step-0 value, judged on the mean of the last two
# evaluations: 0.01 is about 1.4 standard deviations of that mean (one evaluation on 1,000 queries
# moves by ~0.01 between evaluations of a steady run). Calibrated in docs/architecture.md.
EVAL_KNN_TOP1_PIXELS = declare(Metric(
    "eval/knn_top1_pixels", "k-NN top-1 on raw pixels", "", EMBEDDING,
    r"\text{eval/knn\_top1 on } \mathrm{avgpool}_{16\times16}(x)",
    "The same weighted k-NN (bank, queries, k, T) on the normalised pixels downsampled to 16 px, "
    "logged once at step 0: the reference a learnt feature is compared with (drawn as a line "
    "beside eval/knn_top1; its random-init reference is eval/knn_top1 at step 0).",
    "a reference, not a curve: at CPU scale on shapes raw pixels (about 0.6) beat every ViT "
    "feature trained here (0.2-0.4), so falling short of it is no alarm."))
IJEPA_TARGET_STD = declare(Metric(
    "ijepa/target_std", "Target std", "", EMBEDDING, r"\mathrm{std}_{b}(\bar s)",
    "Spread of the target features across images.", "steady.", "falling towards 0: latent collapse.",
    short="t_std"))
IJEPA_PRED_STD = declare(Metric(
    "ijepa/pred_std", "Predictor std", "", EMBEDDING, r"\mathrm{std}_{b}(\hat s)",
    "Spread of the predictor outputs across images.", "follows the target std.", "falling towards 0."))
IJEPA_PRED_COSINE_PROBE = declare(Metric(
    "ijepa/pred_cosine_probe", "Prediction cosine (probe batch)", "", EMBEDDING,
    r"\frac{1}{|T|}\sum_{i\in T} \cos(\hat s_i, s_i)",
    "Mean cosine similarity of predicted to target features over the probe images' target patches.",
    "rising while target std and RankMe hold.",
    "near 1 together with falling RankMe: the targets collapsed, prediction is trivial."))

# --- tokens -----------------------------------------------------------------------------------
TOKENS_REGISTER_ATTN_SHARE = declare(Metric(
    "tokens/register_attn_share", "Register attention share", "", TOKENS,
    r"\frac{1}{HL}\sum_{h,q} \sum_{r \in \mathrm{reg}} a^{(h)}_{q\to r}",
    "Share of the last-layer attention, averaged over heads and all query tokens, that goes to "
    "register tokens (model.reg_tokens), on the probe batch.",
    "some share: registers absorb global information so patch maps stay clean.",
    try_="model.reg_tokens=4 when attention maps show stray bright patches."))
TOKENS_HIGH_NORM_FRAC = declare(Metric(
    "tokens/high_norm_frac", "High-norm token fraction", "", TOKENS,
    r"\Pr_i\big[\lVert x_i\rVert > 2\,\mathrm{median}_j\lVert x_j\rVert\big]",
    "Fraction of patch tokens with outlier output norms: the artefacts of Darcet et al. 2024.",
    "near 0.", "a few percent: the model stores global information in background patches.",
    "add registers (model.reg_tokens)."))
TOKENS_HIGH_NORM_FRAC_PROBE = declare(Metric(
    "tokens/high_norm_frac_probe", "High-norm tokens (probe batch)", "", TOKENS,
    r"\frac1{BN}\sum_{b,n} [\lVert z_{b,n}\rVert > 2\,\mathrm{median}_n \lVert z_{b,n}\rVert]",
    "tokens/high_norm_frac on the fixed probe images, in eval mode.", "near 0.",
    "a few percent: outlier tokens that registers (model.reg_tokens) absorb."))

# --- schedules --------------------------------------------------------------------------------
OPT_LR = declare(Metric(
    "opt/lr", "Learning rate", "", SCHEDULES,
    r"\eta_t = \eta_\min + \tfrac12(\eta - \eta_\min)(1 + \cos\pi t/T)",
    "AdamW learning rate: linear warm-up to optim.lr, then cosine decay to optim.min_lr."))
OPT_WD = declare(Metric(
    "opt/wd", "Weight decay", "", SCHEDULES, r"\lambda_t: 0.04 \rightarrow 0.4 \text{ (cosine)}",
    "AdamW weight decay, cosine-increased from optim.weight_decay to optim.weight_decay_end as in DINO."))
EMA_MOMENTUM = declare(Metric(
    "ema/momentum", "EMA momentum", "", SCHEDULES,
    r"\theta_t \leftarrow \lambda\,\theta_t + (1-\lambda)\,\theta_s,\quad \lambda: 0.996 \rightarrow 1",
    "Momentum of the teacher (DINO) or target encoder (I-JEPA), cosine-increased to 1 so the "
    "teacher freezes at the end.",
    try_="a lower start (0.99) lets the teacher follow faster on short runs."))
GRAM_WEIGHT = declare(Metric(
    "gram/weight", "Gram anchoring weight", "", SCHEDULES,
    r"w_t = 0\ (t < t_0),\quad \tfrac{w}{2}\big(1 - \cos\tfrac{\pi (t - t_0)}{R}\big)\ (t_0 \le t < t_0 + R),"
    r"\quad w\ \text{after}",
    "Weight of gram/loss in the total: 0 until dino.gram_start (t_0), then a half-cosine rise to "
    "dino.gram_weight (w) over dino.gram_ramp_steps (R)."))
DINO_TEACHER_TEMP = declare(Metric(
    "dino/teacher_temp", "Teacher temperature", "", SCHEDULES, r"\tau_t",
    "Sharpening of the teacher softmax; lower = sharper. Warms up from dino.warmup_teacher_temp.",
    try_="the paper uses 0.04 -> 0.07; if the run collapses to one-hot, warm up from a higher value."))

# --- speed -----------------------------------------------------------------------------------
PERF_IMAGES_PER_S = declare(Metric(
    "perf/images_per_s", "Throughput", "images/s", SPEED, r"\text{images} / \text{s}",
    "Training images processed per second (all crops of an image count once).", short="img/s"))

# The terminal progress bar's numbers, in this order when present.
PROGRESS: tuple[str, ...] = (TRAIN_LOSS, DINO_TEACHER_ENTROPY, DINO_LOG_K, DINO_KL_TEACHER_STUDENT,
                             MAE_PSNR_MASKED, IJEPA_TARGET_STD, COLLAPSE_RANKME, PERF_IMAGES_PER_S)


def metric(name: str) -> Metric:
    """The declaration of ``name``; an undeclared name (a run from elsewhere) gets a plain one,
    in the ``IMPORTED`` family when it carries ``IMPORTED_PREFIX``, else in ``OTHER``."""
    if name in METRICS:
        return METRICS[name]
    if name.startswith(IMPORTED_PREFIX):
        return Metric(name, name[len(IMPORTED_PREFIX):], "", IMPORTED, "",
                      "A metric of an imported log whose name has no SSLScope meaning (kept as the log wrote it).")
    return Metric(name, name, "", OTHER, "", "A metric logged by the run (not described in the Guide).")
