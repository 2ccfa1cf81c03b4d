"""The dense-features panel the Live page (probe patches) and the Inspect page (any backbone's
patches) share: DINOv2's PCA colours and the clickable patch-similarity map. UI only: the
numbers come from ``analysis.dense``, the figures from ``dashboard.dense_charts``."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core import metrics as M
from dashboard.glossary import guide_link


def dense_panel(patches: np.ndarray, images: np.ndarray | None, key: str) -> None:
    """PCA colours of the patch features (N, h, w, D) of the pictures (N, S, S, 3), and the
    similarity of a clicked patch to every other patch of one picture."""
    from analysis.dense import patch_pca, patch_similarity
    from dashboard import dense_charts

    st.subheader("Dense features", divider="gray",
                 help="DINOv2's view of the patch features: the first principal component, thresholded, splits "
                      "object from background; three more components of the object's patches become colours, so "
                      "matching parts get matching colours. Click a patch of the map to see its cosine to every "
                      "other patch. [Dense views in the Guide](/guide#dense-views); "
                      + guide_link(M.DENSE_CLS_PATCH_COSINE))
    pca = patch_pca(patches)
    st.plotly_chart(dense_charts.pca_grid_figure(images, pca.rgb), key=f"{key}_pca", config={"displaylogo": False})
    n, h, w = pca.rgb.shape[:3]
    c1, c2 = st.columns([1, 3])
    i = int(c1.number_input("Image", 0, n - 1, 0, key=f"{key}_img"))
    picked = dense_charts.clicked_patch(st.session_state.get(f"{key}_sim")) or (h // 2, w // 2)  # the last click
    picked = (min(picked[0], h - 1), min(picked[1], w - 1))
    fig = dense_charts.similarity_figure(None if images is None else images[i],
                                         patch_similarity(patches, *picked, image=i), picked)
    with c2:
        st.plotly_chart(fig, key=f"{key}_sim", on_select="rerun", selection_mode="points",
                        config={"displaylogo": False})
    c1.caption(f"Patch ({picked[0]}, {picked[1]}) of {h} x {w}; foreground {pca.foreground[i].mean():.0%} of the "
               f"patches. PCA colours explain {pca.explained.sum():.0%} of the object's variance.")

