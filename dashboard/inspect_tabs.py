"""The Inspect page's tabs. Each takes (target, step, source) and draws one question about
the checkpoint; the answers come from ``analysis`` (cached on disk beside the run), the
pictures from ``dashboard.charts``."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import charts, models
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
    from trainer.data.datasets import normalize

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
               "class clusters mean the features carry the class without labels. " + guide_link("collapse/rankme"))
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
    from analysis.attention import (
        attention_jaccard,
        attention_maps,
        attention_rollout,
        high_norm_tokens,
        last_layer_attention,
        mass_mask,
        token_norms,
    )

    c1, c2 = st.columns([3, 2])
    with c1:
        image, obj_mask, caption = _attention_image(target, step, src)
    keep = c2.slider("Mass kept by the mask", 0.1, 0.95, 0.6, 0.05, key="att_keep",
                     help="The mask keeps the most-attended patches that hold this share of the attention (DINO: 0.6).")
    x = _normalize(image[None])
    vit = src.vit
    norms = token_norms(vit, x)  # (1, L)
    p = int(vit.num_prefix_tokens)
    h = w = image.shape[0] // vit.patch_embed.patch_size[0]
    high = high_norm_tokens(norms, p)[0].reshape(h, w)
    if vit.cls_token is None:
        st.info("This backbone has no [CLS] token (I-JEPA pools its patches), so there is no [CLS] attention; "
                "the output token norms show where its features are strongest.")
        st.plotly_chart(charts.image_grid_figure([("image", image, None),
                                                  ("token norm", image, norms[0, p:].reshape(h, w)),
                                                  ("high-norm tokens", image, high.astype(float))], cols=3),
                        key="att_norms", config=_CFG)
        return
    res = last_layer_attention(vit, x)
    mask = mass_mask(res.mean_attn, keep)[0]
    st.subheader("Last-layer [CLS] attention per head", divider="gray",
                 help="Each head's attention from [CLS] to the patches; DINO heads often pick out the object. "
                      + guide_link("tokens/register_attn_share"))
    st.caption(caption)
    st.plotly_chart(charts.attention_grid_figure(image, res.cls_attn[0], mean_map=res.mean_attn[0],
                                                 mask=mask.astype(float), cols=min(6, res.cls_attn.shape[1] + 3)),
                    key="attention_grid", config=_CFG)
    rollout = attention_rollout(attention_maps(vit, x), res.num_prefix, res.mean_attn.shape[-2:])[0]
    panels = [("rollout over all blocks", image, rollout), ("token norm", image, norms[0, p:].reshape(h, w)),
              ("high-norm tokens (> 2x median)", image, high.astype(float))]
    if res.register_maps.shape[2]:
        panels.append(("patch attention to registers", image, res.register_share[0]))
    st.subheader("Rollout, registers and high-norm tokens", divider="gray",
                 help="Rollout multiplies attention through the blocks; high-norm patch tokens are the artefacts "
                      "registers remove. " + guide_link("tokens/high_norm_frac"))
    st.plotly_chart(charts.image_grid_figure(panels, cols=len(panels)), key="attention_extras", config=_CFG)
    if obj_mask is not None:
        j = attention_jaccard(vit, x, obj_mask[None].astype(bool), keep)
        st.metric("Jaccard of the attention mask with the object", f"{j.per_image[0]:.2f}",
                  help=f"Mean over heads' masks {j.per_head.mean():.2f}, best head {int(np.argmax(j.per_head))} "
                       f"({j.per_head.max():.2f}). 1 = the mask is exactly the object.")


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
    st.metric("Masked-patch PSNR", f"{r.psnr_mean:.2f} dB", help=guide_link("mae/psnr_masked"))
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
    st.metric("Mean cosine, prediction vs target", f"{pr.mean_cosine:.3f}", help=guide_link("ijepa/loss"))
    panels = []
    for i in range(len(images)):
        first = i == 0
        panels += [("image" if first else "", pr.original[i], None),
                   ("context block" if first else "", pr.original[i], pr.context_mask[i].astype(float)),
                   ("target blocks" if first else "", pr.original[i], pr.target_masks[i].any(0).astype(float)),
                   ("cosine per target patch" if first else "", None, pr.pred_cosine[i])]
    st.plotly_chart(charts.image_grid_figure(panels, cols=4, panel_px=150), key="predictions", config=_CFG)
    st.caption("Bright cosine: the predictor infers that patch's representation from the context; dark: it cannot.")


@st.cache_data(max_entries=8, show_spinner="Computing attributions (captum)...")
def _attributions(target: str, step: int | None, how: str, n: int):
    from analysis.attribution import attribute_source

    return attribute_source(models.source(target, step), n, how)


@_guarded
def attribution(target: str, step: int | None, src) -> None:
    from analysis.attention import last_layer_attention

    how = st.segmented_control("Method", ["integrated_gradients", "occlusion"], default="integrated_gradients",
                               key="attr_how", format_func=lambda m: m.replace("_", " ")) or "integrated_gradients"
    st.caption("What drives the cosine of each image's embedding to its class prototype: red patches raise it, "
               "blue lower it. Beside it, where the [CLS] token looks.")
    images, labels, attr = _attributions(target, step, how, 4)
    attn = last_layer_attention(src.vit, _normalize(images)).mean_attn if src.vit.cls_token is not None else None
    panels = []
    for i in range(len(images)):
        panels += [("image" if i == 0 else "", images[i], None),
                   (how.replace("_", " ") if i == 0 else "", None, attr.heatmap[i])]
        if attn is not None:
            panels.append(("[CLS] attention" if i == 0 else "", None, attn[i]))
    cols = 3 if attn is not None else 2
    st.plotly_chart(charts.image_grid_figure(panels, cols=cols, panel_px=150, heat_scale="RdBu_r", signed=True),
                    key="attribution", config=_CFG)
    if attr.delta is not None:
        st.caption(f"Integrated Gradients completeness gap |sum(attr) - (f(x) - f(baseline))|: "
                   f"{float(np.abs(attr.delta).max()):.3g} (small = faithful).")


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
               + guide_link("eval/knn_top1"))
