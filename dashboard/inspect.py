"""Inspect page: pick a run's checkpoint or a weights file, then look inside it -- embeddings,
attention, dense (patch) features, reconstructions, predictions, attributions and scores (one tab each; only the open
tab computes)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import inspect_tabs, loaders, models, session
from dashboard.glossary import guide_link
from trainer.store import list_checkpoints

TABS = {"Embeddings": inspect_tabs.embeddings, "Attention": inspect_tabs.attention,
        "Dense features": inspect_tabs.dense, "Reconstructions": inspect_tabs.reconstructions,
        "Predictions": inspect_tabs.predictions, "Attribution": inspect_tabs.attribution, "Scores": inspect_tabs.scores}


def default_run(runs: list[dict]) -> str:
    """The run Inspect opens on: one picked on another page, else the newest finished run,
    else the newest run with a checkpoint (``runs`` newest first, each with a checkpoint)."""
    ids = [r["run_id"] for r in runs]
    picked = session.remembered_selection(ids, fallback=0)
    finished = [r["run_id"] for r in runs if r.get("status") == "finished"]
    return (picked or finished or ids)[0]


def _pick_run(root: Path) -> tuple[str, int | None] | None:
    runs = [r for r in (loaders.runs(str(root)) if root.is_dir() else []) if list_checkpoints(r["dir"])]
    if not runs:
        st.info(f"No run in `{root}` has a checkpoint yet; runs save one every `run.ckpt_every` steps and at the end. "
                "Or analyse a weights file.")
        return None
    ids = [r["run_id"] for r in runs]
    c1, c2 = st.columns([2, 3])
    run_id = c1.selectbox("Run", ids, index=ids.index(default_run(runs)), key="insp_run",
                          format_func=lambda r: f"{r} ({next(x for x in runs if x['run_id'] == r).get('status')})",
                          on_change=lambda: session.choose(st.session_state["insp_run"]))
    steps = [c.step for c in list_checkpoints(root / run_id)]
    if not steps:  # deleted or pruned since the list was read
        st.warning(f"Run '{run_id}' has no checkpoint any more (deleted or moved); pick another run.")
        return None
    step = steps[0] if len(steps) == 1 else c2.select_slider("Checkpoint step", steps, value=steps[-1],
                                                              key=f"insp_step_{run_id}")
    return str(root / run_id), step


def _pick_file(root: Path) -> tuple[str, int | None] | None:
    c1, c2 = st.columns(2)
    path = c1.text_input("Weights file on this machine", key="insp_path",
                         placeholder="~/weights/dino_deitsmall16_pretrain.pth",
                         help="DINO, DINOv2, MAE, I-JEPA or timm weights (.pth, .safetensors). Pickles that would "
                              "run code are refused.")
    upload = c2.file_uploader("or upload one", type=["safetensors", "pth", "pt", "bin"], key="insp_upload")
    if upload is not None:
        return str(models.save_upload(root, upload.name, upload.getvalue())), None
    if not path.strip():
        st.info("Enter the path of a weights file, or upload one.")
        return None
    return str(Path(path.strip()).expanduser()), None


def _with_heads(target: str, step: int | None, src):
    """A file whose head count cannot be known: say so, and let the user set it."""
    if src.heads is None or src.heads.known:
        return src
    st.warning(f"Attention heads: {src.heads.source}. Every attention map and feature depends on it.",
               icon=":material/warning:")
    heads = st.number_input("Attention heads", min_value=1, max_value=src.vit.embed_dim, value=src.heads.heads,
                            key="insp_heads", help=f"Must divide the width, {src.vit.embed_dim}. Most ViTs have "
                                                   "heads 64 wide (ViT-S/B/L), I-JEPA's ViT-g/16 88 wide.")
    return src if heads == src.heads.heads else models.source(target, step, int(heads))


def render() -> None:
    root = session.runs_dir()
    st.title("Inspect")
    st.caption("Look inside a checkpoint: how its features are arranged, where it looks, what it reconstructs or "
               f"predicts, which pixels drive it, and how good its features are. {guide_link()}")
    mode = st.segmented_control("Analyse", ["a run's checkpoint", "a weights file"], default="a run's checkpoint",
                                key="insp_mode") or "a run's checkpoint"
    picked = _pick_run(root) if mode == "a run's checkpoint" else _pick_file(root)
    if picked is None:
        return
    target, step = picked
    try:
        src = _with_heads(target, step, models.source(target, step))
    except models.InspectError as e:
        st.error(str(e))
        return
    heads = f"{src.heads.heads} heads ({src.heads.source})" if src.heads and step is None else ""
    st.caption(f"**{src.name}** · {src.method or src.layout} · width {src.vit.embed_dim}, "
               f"{len(src.vit.blocks)} blocks, patch {src.vit.patch_embed.patch_size[0]} · analysed on "
               f"`{src.data.name}` at {src.data.image_size} px" + (f" · {heads}" if heads else ""))
    for note in src.notes:
        st.caption(note)
    tabs = st.tabs(list(TABS), key="tab", on_change="rerun", bind="query-params")  # ?tab=Attention opens it
    for tab, view in zip(tabs, TABS.values()):
        if not tab.open:
            continue
        with tab:
            try:
                view(target, step, src)
            except models.InspectError as e:
                st.error(str(e))
