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
)
