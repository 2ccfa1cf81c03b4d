"""What every metric means: the text behind the Guide page and every chart's help link.

One entry per metric name of DESIGN.md (plus the ones the methods add), grouped in the
families the Live page draws. Each entry gives the formula (LaTeX), what healthy and
collapsed look like, and what to try. Words only; the numbers come from the run store.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricDoc:
    name: str  # the scalar's name in the run store
    title: str
    formula: str  # LaTeX for st.latex ("" if none)
    meaning: str
    healthy: str = ""
    collapsed: str = ""
    try_: str = ""

    @property
    def anchor(self) -> str:
        """The Guide page's heading anchor for this metric."""
        return self.name.replace("/", "-").replace("_", "-")


_DOCS = [
    # --- losses and optimisation ---------------------------------------------------------
    MetricDoc("train/loss", "Training loss", r"\mathcal{L}",
              "The method's loss: DINO's cross-entropy between teacher and student, MAE's masked-patch "
              "MSE, I-JEPA's latent regression.",
              "falls quickly then flattens; for DINO it settles above 0.",
              "a DINO loss that drops to almost 0 is a warning, not a success: both collapses make "
              "teacher and student agree trivially (check the KL below).",
              "if it diverges or turns NaN: lower optim.lr, keep optim.clip_grad at 3, lengthen "
              "optim.warmup_steps."),
    MetricDoc("grad/norm", "Gradient norm", r"\lVert \nabla_\theta \mathcal{L} \rVert_2",
              "Global l2 norm of the gradients before clipping.",
              "stable or slowly falling.", "spikes before a NaN; exactly 0 means nothing is learning.",
              "optim.clip_grad=3 (DINO's value) tames spikes."),
    MetricDoc("opt/lr", "Learning rate", r"\eta_t = \eta_\min + \tfrac12(\eta - \eta_\min)(1 + \cos\pi t/T)",
              "AdamW learning rate: linear warm-up to optim.lr, then cosine decay to optim.min_lr."),
    MetricDoc("opt/wd", "Weight decay", r"\lambda_t: 0.04 \rightarrow 0.4 \text{ (cosine)}",
              "AdamW weight decay, cosine-increased from optim.weight_decay to optim.weight_decay_end as in DINO."),
    MetricDoc("ema/momentum", "EMA momentum",
              r"\theta_t \leftarrow \lambda\,\theta_t + (1-\lambda)\,\theta_s,\quad \lambda: 0.996 \rightarrow 1",
              "Momentum of the teacher (DINO) or target encoder (I-JEPA), cosine-increased to 1 so the "
              "teacher freezes at the end.",
              try_="a lower start (0.99) lets the teacher follow faster on short runs."),
    MetricDoc("perf/images_per_s", "Throughput", r"\text{images} / \text{s}",
              "Training images processed per second (all crops of an image count once)."),
    # --- DINO ---------------------------------------------------------------------------
    MetricDoc("dino/teacher_temp", "Teacher temperature", r"\tau_t",
              "Sharpening of the teacher softmax; lower = sharper. Warms up from dino.warmup_teacher_temp.",
              try_="the paper uses 0.04 -> 0.07; if the run collapses to one-hot, warm up from a higher value."),
    MetricDoc("dino/teacher_entropy", "Teacher entropy",
              r"H(p_t) = -\frac1B\sum_b \sum_{k=1}^{K} p_t^{(b,k)} \log p_t^{(b,k)},"
              r"\quad p_t = \mathrm{softmax}\big((g_t - c)/\tau_t\big)",
              "Mean per-image entropy of the teacher's distribution over the K prototypes, in nats. "
              "Bounded by 0 (one prototype per image) and ln K (uniform).",
              "well between the two lines, e.g. 0.3-0.85 ln K, with KL above 0.",
              "near ln K with KL near 0: uniform collapse (centering without sharpening). Near 0 with "
              "low batch entropy: one-hot collapse (sharpening without centering).",
              "uniform: lower dino.teacher_temp, freeze the last layer longer, add KoLeo "
              "(dino.koleo_weight=0.1), smaller dino.out_dim. One-hot: turn centering on "
              "(dino.centering=mean or sinkhorn)."),
    MetricDoc("dino/teacher_batch_entropy", "Teacher batch entropy",
              r"H(\bar p_t),\quad \bar p_t = \frac1B \sum_b p_t^{(b)}",
              "Entropy of the batch-mean teacher distribution: how many prototypes are used across images.",
              "high (close to ln K) while the per-image entropy is lower: each image picks a few "
              "prototypes, different images pick different ones.",
              "low: the same few prototypes win for every image (one-hot collapse).",
              "centering spreads the prototypes; Sinkhorn-Knopp (dino.centering=sinkhorn) enforces it."),
    MetricDoc("dino/kl_teacher_student", "KL teacher-student",
              r"\mathrm{KL}(p_t \,\|\, p_s) = \sum_k p_t^{(k)} \log \frac{p_t^{(k)}}{p_s^{(k)}}",
              "How much the student still has to learn from the teacher. Both collapses drive it to 0: "
              "a constant target is matched perfectly.",
              "clearly above 0 and steady.", "near 0 (with entropy at ln K or at 0).",
              "see teacher entropy."),
    MetricDoc("dino/log_k", "ln K", r"\ln K",
              "The entropy of the uniform distribution over K = dino.out_dim prototypes: the "
              "uniform-collapse line of the entropy panels."),
    MetricDoc("dino/center_norm", "Center norm",
              r"c \leftarrow m\,c + (1-m)\,\frac1B\sum_b g_t^{(b)},\quad \lVert c \rVert_2",
              "Norm of the running mean subtracted from the teacher logits (m = dino.center_momentum).",
              "settles to a steady value.", "keeps growing when the teacher pushes all images to one side.",
              ),
    MetricDoc("dino/teacher_max_prob", "Teacher max probability", r"\frac1B\sum_b \max_k p_t^{(b,k)}",
              "Mean top probability of the teacher. 1/K when uniform, 1 when one-hot.",
              "in between.", "at 1/K (uniform) or 1 (one-hot)."),
    MetricDoc("dino/koleo", "KoLeo",
              r"\mathcal{L}_{\mathrm{KoLeo}} = -\frac1B\sum_i \log \min_{j\ne i}\lVert x_i - x_j\rVert",
              "DINOv2's regulariser on the student's [CLS]: spreads features uniformly (dino.koleo_weight).",
              try_="0.1 pulls small-data runs away from uniform collapse."),
    MetricDoc("dino/ce", "DINO cross-entropy", r"\frac{1}{|P|}\sum_{(i,j)\in P} -\sum_k p_t^{(i)}[k] \log p_s^{(j)}[k]",
              "The distillation loss alone (train/loss minus KoLeo), over pairs P of different views.",
              "above the teacher entropy: KL = CE - H(p_t) stays positive.",
              "equal to the teacher entropy: KL = 0, nothing left to learn."),
    MetricDoc("dino/top10pct_mass", "Top-10% mass of the batch-mean teacher",
              r"\sum_{k \in \text{top } 10\%} \bar p_t[k], \quad \bar p_t = \frac1B \sum_b p_t^{(b)}",
              "Share of the batch-averaged teacher distribution held by its 10% largest dimensions.",
              "about 0.1 to 0.4: many prototypes in use.",
              "near 1: a few dimensions dominate every image (one-hot collapse).",
              "keep centering on (dino.centering=mean or sinkhorn)."),
    MetricDoc("tokens/high_norm_frac_probe", "High-norm tokens (probe batch)",
              r"\frac1{BN}\sum_{b,n} [\lVert z_{b,n}\rVert > 2\,\mathrm{median}_n \lVert z_{b,n}\rVert]",
              "tokens/high_norm_frac on the fixed probe images, in eval mode.", "near 0.",
              "a few percent: outlier tokens that registers (model.reg_tokens) absorb."),
    # --- MAE ----------------------------------------------------------------------------
    MetricDoc("mae/psnr_masked_probe", "Masked PSNR (probe batch)",
              r"10 \log_{10} \frac{\mathrm{MAX}^2}{\mathrm{MSE}_{M}}",
              "mae/psnr_masked on the fixed probe images with fixed masks: comparable across steps.", "rising."),
    MetricDoc("ijepa/reg", "I-JEPA anti-collapse regulariser",
              r"\text{KoLeo or } \frac1D\sum_d \max(0, 1 - \mathrm{std}(z_d))",
              "The regulariser on the pooled context features (ijepa.reg: KoLeo at 0.3 by default; none in the paper).",
              "small and steady.", "large: the features are bunching up.",
              "ijepa.reg=variance with ijepa.reg_weight=1 when running without EMA."),
    MetricDoc("ijepa/pred_cosine_probe", "Prediction cosine (probe batch)",
              r"\frac{1}{|T|}\sum_{i\in T} \cos(\hat s_i, s_i)",
              "Mean cosine similarity of predicted to target features over the probe images' target patches.",
              "rising while target std and RankMe hold.",
              "near 1 together with falling RankMe: the targets collapsed, prediction is trivial."),
    MetricDoc("mae/loss", "MAE loss", r"\frac{1}{|M|}\sum_{i \in M} \lVert \hat x_i - x_i \rVert^2",
              "Mean squared error on the masked patches only (M), optionally on per-patch normalised pixels.",
              "falls well below predicting each patch's mean colour.",
              "flat at the mean-colour level: the decoder only paints blurred averages.",
              "train longer; mae.norm_pix_loss=true sharpens reconstructions."),
    MetricDoc("mae/psnr_masked", "Masked PSNR", r"10 \log_{10} \frac{\mathrm{MAX}^2}{\mathrm{MSE}_{M}}",
              "PSNR of the reconstruction on masked patches (dB). Higher is better.", "rising."),
    # --- I-JEPA -------------------------------------------------------------------------
    MetricDoc("ijepa/loss", "I-JEPA loss",
              r"\frac{1}{|T|}\sum_{i \in T} \ell\big(\hat s_i,\ \mathrm{LN}(\bar s_i)\big)",
              "Smooth-L1 (or L2) between predicted and layer-normed target-encoder features at the "
              "target blocks T. Never pixels.",
              "falls but not to 0.", "near 0 together with a falling target std: latent collapse.",
              "keep ijepa.ema=true; add ijepa.reg=variance with a small ijepa.reg_weight."),
    MetricDoc("ijepa/target_std", "Target std", r"\mathrm{std}_{b}(\bar s)",
              "Spread of the target features across images.", "steady.", "falling towards 0: latent collapse."),
    MetricDoc("ijepa/pred_std", "Predictor std", r"\mathrm{std}_{b}(\hat s)",
              "Spread of the predictor outputs across images.", "follows the target std.", "falling towards 0."),
    # --- embedding health ---------------------------------------------------------------
    MetricDoc("collapse/std_l2", "Std of l2-normalised embeddings",
              r"\sqrt{d}\cdot \frac1d\sum_j \mathrm{std}_b\big(z_{bj}/\lVert z_b\rVert\big)",
              "Spread of the normalised embeddings (SimSiam's collapse measure).",
              "about 1: embeddings spread over the sphere.", "towards 0: all images map to one point.",
              "see the method's own collapse advice."),
    MetricDoc("collapse/rankme", "RankMe (effective rank)",
              r"\exp\Big(-\sum_k p_k \log p_k\Big),\quad p_k = \frac{\sigma_k}{\sum_j \sigma_j}",
              "Effective rank of the embedding matrix from its singular values (Garrido et al. 2023).",
              "a large fraction of min(batch, dim).",
              "close to 1, or far below the dimension: dimensional collapse (few directions used).",
              "larger batch, KoLeo, lower learning rate."),
    MetricDoc("collapse/mean_cosine", "Mean cosine similarity", r"\frac{1}{B(B-1)}\sum_{i\ne j}\cos(z_i, z_j)",
              "Average cosine similarity between different images' embeddings.",
              "near 0.", "near 1: every image looks the same to the model."),
    # --- tokens -------------------------------------------------------------------------
    MetricDoc("tokens/register_attn_share", "Register attention share",
              r"\sum_{r \in \mathrm{reg}} a_{\mathrm{CLS}\to r}",
              "Share of the last-layer [CLS] attention that goes to register tokens (model.reg_tokens).",
              "some share: registers absorb global information so patch maps stay clean.",
              try_="model.reg_tokens=4 when attention maps show stray bright patches."),
    MetricDoc("tokens/high_norm_frac", "High-norm token fraction",
              r"\Pr_i\big[\lVert x_i\rVert > 2\,\mathrm{median}_j\lVert x_j\rVert\big]",
              "Fraction of patch tokens with outlier output norms: the artefacts of Darcet et al. 2024.",
              "near 0.", "a few percent: the model stores global information in background patches.",
              "add registers (model.reg_tokens)."),
    # --- evaluation ---------------------------------------------------------------------
    MetricDoc("eval/knn_top1", "k-NN top-1", r"\hat y = \arg\max_c \sum_{i \in N_k(x)} e^{\cos(x, x_i)/T}\,[y_i = c]",
              "Weighted k-NN (k = 20, T = 0.07, cosine) on the held-out split, with train features as memory.",
              "clearly above the same backbone at random initialisation (see Inspect > Scores).",
              "at or below the random-init baseline.", "train longer; check the collapse panels."),
]

DOCS: dict[str, MetricDoc] = {d.name: d for d in _DOCS}

# Panels of the Live page: (family, help, metric names). The DINO collapse family is drawn
# as its own 2 x 2 figure (charts.collapse_figure).
FAMILIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Losses", "the loss of each method and the gradient norm",
     ("train/loss", "mae/loss", "ijepa/loss", "mae/psnr_masked", "dino/koleo", "grad/norm")),
    ("DINO collapse", "teacher entropy between 0 and ln K, KL, batch entropy, center norm",
     ("dino/teacher_entropy", "dino/kl_teacher_student", "dino/teacher_batch_entropy", "dino/center_norm",
      "dino/teacher_max_prob")),
    ("Embedding health", "spread and rank of the features, and k-NN accuracy",
     ("collapse/std_l2", "collapse/rankme", "collapse/mean_cosine", "eval/knn_top1", "ijepa/target_std",
      "ijepa/pred_std")),
    ("Tokens", "registers and high-norm outlier tokens", ("tokens/register_attn_share", "tokens/high_norm_frac")),
    ("Schedules", "learning rate, weight decay, EMA momentum, teacher temperature",
     ("opt/lr", "opt/wd", "ema/momentum", "dino/teacher_temp")),
    ("Speed", "training throughput", ("perf/images_per_s",)),
)


def doc(name: str) -> MetricDoc:
    """The entry for ``name``; unknown names get a plain entry so every chart has a title."""
    return DOCS.get(name) or MetricDoc(name, name, "", "A metric logged by the run (not described in the Guide).")


def guide_link(name: str | None = None) -> str:
    """Markdown link to the Guide page (at the metric's entry when given)."""
    if name is None:
        return "[Guide](/guide)"
    return f"[{doc(name).title} in the Guide](/guide#{doc(name).anchor})"


# The methods, for the Guide's first section: (name, summary, loss formula, what to watch).
METHODS: tuple[tuple[str, str, str, str], ...] = (
    ("DINO", "Self-distillation without labels (Caron et al. 2021; DINOv2 refinements). A student "
     "matches an EMA teacher across crops: 2 global crops go to both, local crops to the student only. "
     "The teacher output is centred (c) and sharpened (low tau_t); centering alone drifts to a uniform "
     "output, sharpening alone to one prototype, together they balance.",
     r"\mathcal{L} = \sum_{x \in \{x^g_1, x^g_2\}} \sum_{x' \ne x}"
     r" -\,\mathrm{softmax}\Big(\frac{g_t(x) - c}{\tau_t}\Big)"
     r"\cdot \log\mathrm{softmax}\Big(\frac{g_s(x')}{\tau_s}\Big)",
     "the collapse panel: teacher entropy between 0 and ln K with KL above 0."),
    ("MAE", "Masked autoencoder (He et al. 2022). Hide 75% of the patches, encode only the visible "
     "ones, and let a light decoder reconstruct the pixels of the hidden ones.",
     r"\mathcal{L} = \frac{1}{|M|}\sum_{i \in M} \lVert \hat x_i - x_i \rVert_2^2",
     "masked-patch loss and PSNR, the reconstructions in the probe panel."),
    ("I-JEPA", "Joint-embedding predictive architecture (Assran et al. 2023). From one context block, a "
     "narrow predictor predicts the target encoder's features of several target blocks: prediction "
     "in latent space, no pixels, no hand-made augmentations.",
     r"\mathcal{L} = \frac{1}{|T|}\sum_{i \in T}"
     r" \big\lVert \hat s_i - \mathrm{LN}(\bar s_i) \big\rVert_1^{\mathrm{smooth}}",
     "target std and RankMe: without the EMA target they fall (latent collapse)."),
)
