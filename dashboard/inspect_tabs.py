"""The Inspect page's tabs. Each takes (target, step, source) and draws one question about
the checkpoint; the answers come from ``analysis`` (cached on disk beside the run), the
pictures from ``dashboard.charts``."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import streamlit as st

from core import metrics as M
from core.metrics import metric
from dashboard import charts, dense_view, models
from dashboard.glossary import guide_link

N_PICTURES = 6  # images per picture grid
_CFG = {"displaylogo": False}


def _guarded(view):
    """Analysis failures on odd inputs become one message in the page, not a traceback."""

    @functools.wraps(view)
    def run(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except models.InspectError:
            raise
        except (*models.analysis_errors(), RuntimeError) as e:
            raise models.InspectError(f"{view.__name__}: {e}") from None

    return run


def _normalize(images: np.ndarray):
    from core.images import normalize

    return normalize(images)


@_guarded
def embeddings(target: str, step: int | None, src) -> None:
    from analysis.embedding import source_embedding

    c1, c2, c3 = st.columns(3)
    how = c1.segmented_control("Map", ["UMAP", "PCA"], default="UMAP", key="emb_how") or "UMAP"
    n = c2.select_slider("Images", [250, 500, 1000, 2000, 5000], value=1000, key="emb_n",
                         help="First images of the train split; UMAP of 5,000 takes a few seconds once, "
                              "then it is cached.")
    feature = c3.segmented_control("Feature", ["cls", "pooled"], default="cls", key="emb_feature",
                                   help="[CLS] token, or the patch tokens averaged, then normed (timm, MAE)") or "cls"
    with st.spinner(f"{how} of the features (cached after the first time)..."):
        e = source_embedding(src, "train", how.lower(), feature=feature, max_points=n, seed=0)
        images, _, _, classes = models.split_images(target, step, "train", n)
    hover = [f"#{i} {classes[lab] if 0 <= lab < len(classes) else 'unlabelled'}" for i, lab in zip(e.indices, e.labels)]
    fig = charts.embedding_figure(e.coords, e.labels, classes, hover=hover,
                                  title=f"{how} of {len(e.indices)} {feature} features, coloured by class")
    st.caption("Click a point, or draw a box or lasso (toolbar, top right), to see the images. Well-separated "
               "class clusters mean the features carry the class without labels. " + guide_link(M.COLLAPSE_RANKME))
    event = st.plotly_chart(fig, key="embedding", on_select="rerun", selection_mode=("points", "box", "lasso"),
                            config=_CFG)
    rows = charts.selected_indices(event)
    if rows:
        picked = e.indices[rows][:48]
        st.markdown(f"**{len(rows)} selected**" + (" (first 48 shown)" if len(rows) > 48 else ""))
        st.image([images[i] for i in picked], caption=[hover[r] for r in rows[:48]], width=72)
    table = pd.DataFrame({"x": e.coords[:, 0], "y": e.coords[:, 1], "label": e.labels, "image_index": e.indices})
    c1, c2 = st.columns(2)
    c1.download_button("Coordinates (CSV)", table.to_csv(index=False), "embedding.csv", "text/csv",
                       icon=":material/download:", on_click="ignore")
    c2.download_button("Figure (HTML)", lambda: fig.to_html(include_plotlyjs=True), "embedding.html", "text/html",
                       icon=":material/download:", on_click="ignore")


def _attention_image(target: str, step: int | None, src) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The image to look at: (uint8 (S, S, 3), object mask (S, S) or None, caption)."""
    size = src.data.image_size
    kind = st.segmented_control("Image", ["dataset", "photo", "upload"], default="dataset", key="att_kind") or "dataset"
    if kind == "photo":
        name = st.selectbox("Photo", models.BUNDLED, key="att_photo",
                            help="scikit-image's sample photos, resized to the model's image size")
        return models.bundled_photo(name, size), None, f"{name} (scikit-image), {size} px"
    if kind == "upload":
        up = st.file_uploader("Picture", type=["png", "jpg", "jpeg", "webp", "bmp"], key="att_upload")
        if up is None:
            raise models.InspectError("upload a picture (PNG, JPEG or WebP) to see where the model looks")
        return models.uploaded_image(up.getvalue(), size), None, f"{up.name}, resized to {size} px"
    images, labels, masks, classes = models.split_images(target, step, "val", 64)
    i = st.number_input("Validation image", 0, len(images) - 1, 0, key="att_index")
    name = classes[labels[i]] if 0 <= labels[i] < len(classes) else "unlabelled"
    return images[i], None if masks is None else masks[i], f"val #{i}: {name}"


@_guarded
def attention(target: str, step: int | None, src) -> None:
    from analysis.attention import inspect_attention

    c1, c2 = st.columns([3, 2])
    with c1:
        image, obj_mask, caption = _attention_image(target, step, src)
    keep = c2.slider("Mass kept by the mask", 0.1, 0.95, 0.6, 0.05, key="att_keep",
                     help="The mask keeps the most-attended patches that hold this share of the attention (DINO: 0.6).")
    v = inspect_attention(src.vit, _normalize(image[None]), obj_mask, keep)
    norm_panels = [("token norm", image, v.token_norm), ("high-norm tokens (> 2x median)", image, v.high_norm * 1.0)]
    if v.cls_attn is None:
        st.info("This backbone has no [CLS] token (I-JEPA pools its patches), so there is no [CLS] attention; "
                "the output token norms show where its features are strongest.")
        st.plotly_chart(charts.image_grid_figure([("image", image, None), *norm_panels], cols=3),
                        key="att_norms", config=_CFG)
        return
    st.subheader("Last-layer [CLS] attention per head", divider="gray",
                 help="Each head's attention from [CLS] to the patches; DINO heads often pick out the object. "
                      + guide_link(M.TOKENS_REGISTER_ATTN_SHARE))
    st.caption(caption)
    st.plotly_chart(charts.attention_grid_figure(image, v.cls_attn, mean_map=v.mean_attn, mask=v.mask * 1.0,
                                                 cols=min(6, v.cls_attn.shape[0] + 3)),
                    key="attention_grid", config=_CFG)
    panels = [("rollout over all blocks", image, v.rollout), *norm_panels]
    if v.register_share is not None:
        panels.append(("patch attention to registers", image, v.register_share))
    st.subheader("Rollout, registers and high-norm tokens", divider="gray",
                 help="Rollout multiplies attention through the blocks; high-norm patch tokens are the artefacts "
                      "registers remove. " + guide_link(M.TOKENS_HIGH_NORM_FRAC))
    st.plotly_chart(charts.image_grid_figure(panels, cols=len(panels)), key="attention_extras", config=_CFG)
    if v.jaccard is not None:
        j = v.jaccard
        st.metric("Jaccard of the attention mask with the object", f"{j.per_image[0]:.2f}",
                  help=f"Mean over heads' masks {j.per_head.mean():.2f}, best head {j.best_head} "
                       f"({j.per_head[j.best_head]:.2f}). 1 = the mask is exactly the object.")


@_guarded
def dense(target: str, step: int | None, src) -> None:
    from analysis.dense import patch_pca

    c1, c2 = st.columns(2)
    split = c1.segmented_control("Split", ["val", "train"], default="val", key="dense_split") or "val"
    n = c2.select_slider("Images", [4, 8, 16, 32], value=8, key="dense_n",
                         help="The PCA is fitted on the patches of all of them together, so colours match across "
                              "images.")
    images, _, masks, _ = models.split_images(target, step, split, n)
    patches = models.patch_features(target, step, split, n)
    dense_view.dense_panel(patches, images, key="insp_dense")
    if masks is not None:  # shapes: the PCA foreground against the exact object masks
        from analysis.attention import jaccard

        fg = patch_pca(patches).foreground
        p = images.shape[1] // fg.shape[1]
        gt = masks[:, p // 2::p, p // 2::p]  # the object mask at each patch centre
        st.caption(f"Jaccard of the PCA foreground with the object masks at the patch centres: "
                   f"{float(np.mean(jaccard(fg, gt))):.2f} (1 = the first component is exactly the object). "
                   + guide_link(M.DENSE_PATCH_RANKME))


def _needs(src, method: str, what: str) -> bool:
    if src.method == method:
        return True
    also = " or an MAE file with its decoder (models_mae.py)" if method == "mae" else ""
    st.info(f"{what} need an {method.upper() if method == 'mae' else 'I-JEPA'} run{also}; this is "
            f"{src.method or 'a weights file'}. Pick one under *Run*.")
    return False


@_guarded
def reconstructions(target: str, step: int | None, src) -> None:
    from analysis.reconstruction import reconstruct

    file_mae = src.mae if src.method != "mae" else None  # an official MAE file with its decoder
    if file_mae is None and not _needs(src, "mae", "Reconstructions"):
        return
    trained = file_mae.mask_ratio if file_mae is not None else src.config.mae.mask_ratio
    c1, c2 = st.columns(2)
    ratio = c1.slider("Mask ratio", 0.05, 0.95, float(trained), 0.05, key="rec_ratio",
                      help=f"Share of patches hidden from the encoder (trained at {trained}).")
    seed = c2.number_input("Seed", 0, 10_000, 0, key="rec_seed", help="Draws which patches are hidden.")
    if file_mae is None:
        images, _, _, _ = models.split_images(target, step, "val", N_PICTURES)
        mae = models.method(target, step)
    else:  # the decoder's positions are fixed: images at its own size
        images, _, _, _ = models.split_images(target, step, "val", N_PICTURES, file_mae.image_size)
        mae = file_mae
    r = reconstruct(mae, _normalize(images), ratio, int(seed))
    st.metric("Masked-patch PSNR", f"{r.psnr_mean:.2f} dB", help=guide_link(M.MAE_PSNR_MASKED))
    panels = []
    for i in range(len(images)):
        panels += [("original" if i == 0 else "", r.original[i], None), ("masked" if i == 0 else "", r.masked[i], None),
                   ("reconstruction" if i == 0 else "", r.reconstruction[i], None),
                   ("visible pasted" if i == 0 else "", r.pasted[i], None)]
    st.plotly_chart(charts.image_grid_figure(panels, cols=4, panel_px=150), key="reconstructions", config=_CFG)


@_guarded
def predictions(target: str, step: int | None, src) -> None:
    from analysis.jepa import predict_targets

    if not _needs(src, "ijepa", "Predictions"):
        return
    seed = st.number_input("Seed", 0, 10_000, 0, key="jepa_seed", help="Draws the context and target blocks.")
    images, _, _, _ = models.split_images(target, step, "val", N_PICTURES)
    pr = predict_targets(models.method(target, step), _normalize(images), int(seed))
    st.metric("Mean cosine, prediction vs target", f"{pr.mean_cosine:.3f}", help=guide_link(M.IJEPA_LOSS))
    panels = []
    for i in range(len(images)):
        first = i == 0
        panels += [("image" if first else "", pr.original[i], None),
                   ("context block" if first else "", pr.original[i], pr.context_mask[i].astype(float)),
                   ("target blocks" if first else "", pr.original[i], pr.targets[i] * 1.0),
                   ("cosine per target patch" if first else "", None, pr.pred_cosine[i])]
    st.plotly_chart(charts.image_grid_figure(panels, cols=4, panel_px=150), key="predictions", config=_CFG)
    st.caption("Bright cosine: the predictor infers that patch's representation from the context; dark: it cannot.")


@st.cache_data(max_entries=8, show_spinner="Computing attributions (captum)...")
def _attributions(target: str, step: int | None, how: str, n: int):
    from analysis.attribution import attribute_source

    return attribute_source(models.source(target, step), n, how)


@_guarded
def attribution(target: str, step: int | None, src) -> None:
    from analysis.attention import mean_cls_attention

    how = st.segmented_control("Method", ["integrated_gradients", "occlusion"], default="integrated_gradients",
                               key="attr_how", format_func=lambda m: m.replace("_", " ")) or "integrated_gradients"
    st.caption("What drives the cosine of each image's embedding to its class prototype: red patches raise it, "
               "blue lower it. Beside it, where the [CLS] token looks.")
    images, labels, attr = _attributions(target, step, how, 4)
    attn = mean_cls_attention(src.vit, _normalize(images))
    panels = []
    for i in range(len(images)):
        panels += [("image" if i == 0 else "", images[i], None),
                   (how.replace("_", " ") if i == 0 else "", None, attr.heatmap[i])]
        if attn is not None:
            panels.append(("[CLS] attention" if i == 0 else "", None, attn[i]))
    cols = 3 if attn is not None else 2
    st.plotly_chart(charts.image_grid_figure(panels, cols=cols, panel_px=150, heat_scale="RdBu_r", signed=True),
                    key="attribution", config=_CFG)
    if attr.completeness_gap is not None:
        st.caption(f"Integrated Gradients completeness gap |sum(attr) - (f(x) - f(baseline))|: "
                   f"{attr.completeness_gap:.3g} (small = faithful).")


@_guarded
def scores(target: str, step: int | None, src) -> None:
    from analysis.scores import score_source

    with st.spinner("Scoring features (cached after the first time)..."):
        r = score_source(src)
    c = st.columns(3)
    c[0].metric("k-NN top-1", f"{100 * r.knn_top1:.1f}%",
                f"{100 * (r.knn_top1 - r.random_init_knn_top1):+.1f} vs random init")
    c[1].metric("Linear probe top-1", f"{100 * r.linear_top1:.1f}%",
                f"{100 * (r.linear_top1 - r.random_init_linear_top1):+.1f} vs random init")
    c[2].metric("Chance", f"{100 * r.chance:.1f}%", help=f"{len(r.classes)} classes")
    rows = [("k-NN", r.knn_top1), ("k-NN, random init", r.random_init_knn_top1),
            ("k-NN, raw pixels", r.pixels_knn_top1), ("linear", r.linear_top1),
            ("linear, random init", r.random_init_linear_top1), ("linear, raw pixels", r.pixels_linear_top1)]
    c1, c2 = st.columns(2)
    with c1:
        st.plotly_chart(charts.scores_figure(rows, title=f"Top-1 on {src.data.name} (k = {r.k})", chance=r.chance),
                        key="scores", config=_CFG)
    with c2:
        st.plotly_chart(charts.confusion_figure(r.confusion, r.classes, title="k-NN confusion"), key="confusion",
                        config=_CFG)
    st.download_button("Scores (CSV)", pd.DataFrame(rows, columns=["score", "top1"]).to_csv(index=False),
                       "scores.csv", "text/csv", icon=":material/download:", on_click="ignore")
    st.caption(f"{r.n_train} train images as the k-NN bank, {r.n_val} validation queries. "
               + guide_link(M.EVAL_KNN_TOP1))
    _diagnosis(target, step)


def _diagnosis(target: str, step: int | None) -> None:
    """The checkpoint's collapse diagnosis: its own features and, for DINO, its loss object's
    statistics on training views of the validation images (``analysis.collapse.diagnose_source``)."""
    rep = models.diagnosis(target, step)
    st.subheader(f"Collapse diagnosis: {rep.checkpoint.label}", divider="gray",
                 help="Judged on this checkpoint's validation features (" + rep.feature + ") and, for DINO, on "
                      "the teacher and student outputs of its own loss (centre, centring, temperatures) over "
                      "training views. " + guide_link(M.DINO_TEACHER_ENTROPY))
    st.markdown("\n".join(f"- {e}" for e in rep.checkpoint.evidence))
    values = pd.DataFrame([(n, metric(n).title, v, metric(n).range_text) for n, v in rep.checkpoint.values.items()],
                          columns=["metric", "meaning", "value", "healthy"])
    st.dataframe(values, hide_index=True, width="stretch",
                 column_config={"value": st.column_config.NumberColumn(format="%.4f")})
    if rep.run is not None:
        st.caption(f"The run's logged curves (last 5 logs): **{rep.run.label}**.")
