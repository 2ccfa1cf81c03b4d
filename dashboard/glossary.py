"""The Guide's words beyond the metric declarations: each method's summary, and the link every
chart's help text carries to a metric's Guide entry.

What each metric means (formula, healthy, collapsed, what to try), its unit and its family are
declared once in ``core.metrics``; the Guide page, the charts and the Live families read them
there.
"""

from __future__ import annotations

from core.metrics import metric


def guide_link(name: str | None = None) -> str:
    """Markdown link to the Guide page (at the metric's entry when given)."""
    if name is None:
        return "[Guide](/guide)"
    m = metric(name)
    return f"[{m.title} in the Guide](/guide#{m.anchor})"


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
    ("iBOT", "Masked image modelling inside DINO, as DINOv2 trains it (Zhou et al. 2022; Oquab et al. "
     "2024; dino.ibot_weight, --preset dinov2). Half of the global crops get BEiT-style blocks of patches "
     "replaced by a learnable mask token before the positions are added; at each masked patch the student "
     "predicts the teacher's patch distribution on the unmasked crop, through the DINO head or its own, "
     "centred by a separate patch centre or Sinkhorn-Knopp. Each masked token weighs 1 / (masked "
     "patches of its crop).",
     r"\mathcal{L}_{\mathrm{iBOT}} = \frac1n \sum_{j\in\mathcal{M}} \frac{1}{|\mathcal{M}_{c(j)}|}"
     r"\Big(-\,p_t^{(j)} \cdot \log\mathrm{softmax}\big(g_s(\tilde x)_j/\tau_s\big)\Big)",
     "the iBOT panel: patch teacher entropy between 0 and its ln K, ibot/ce falling, KL above 0."),
    ("Gram-anchoring", "DINOv3's fix for dense features that degrade over long training (Simeoni et al. 2025; "
     "dino.gram_weight, --preset dinov3): the patch-similarity (Gram) matrix of the student's global crops "
     "is pulled towards that of a frozen early copy of the EMA teacher, which can run at a higher "
     "resolution. The features themselves stay free; only how patches relate is anchored.",
     r"\mathcal{L}_{\mathrm{Gram}} = \operatorname{mean}\big[(X_S X_S^\top - X_G X_G^\top)^{2}\big]",
     "dense/cls_patch_cosine over a long run, and gram/loss once its weight is on."),
)

# The dense views of the Live and Inspect pages: (title, how to read it, what healthy looks like).
DENSE_VIEWS: tuple[tuple[str, str, str], ...] = (
    ("PCA of patch features", "DINOv2's figure. A PCA of the patch features of all shown images together; the "
     "first component, thresholded at its mean, splits the object from the background (the side that fills the "
     "picture border is taken as background); a second PCA of the object's patches alone gives three "
     "components, shown as red, green and blue. Matching parts of different images get matching colours.",
     "the object stands out from a black background and its parts (edges, inside, tips) take consistent "
     "colours across images. A background in colour, or one colour everywhere, means the patch features do "
     "not separate object from background."),
    ("Patch similarity", "Click a patch of the map: every patch is coloured by the cosine of its feature to the "
     "clicked one (red similar, blue opposite).", "a patch on the object lights up the object, a background "
     "patch the background. Everything red is dense collapse: patches no longer say where they are "
     "(see [CLS]-patch cosine)."),
)
