"""Welcome page: what SSLScope is, and one click that starts the demo."""

from __future__ import annotations

import streamlit as st

from dashboard import launch, loaders, navigation, session

_WHAT = """
**SSLScope** trains self-supervised vision models (**DINO** with DINOv2's refinements, **MAE**,
**I-JEPA**) on one small ViT and shows what happens inside while they learn:

- **Live**: loss, the DINO collapse panel (teacher entropy between 0 and ln K, KL), feature
  spread and rank, attention maps of a fixed probe batch, refreshed as the run trains;
- **Compare**: ablations side by side, e.g. the DINO paper's centering x sharpening study;
- **Inspect**: UMAP of the features, per-head attention, reconstructions, predictions,
  attributions and k-NN scores of any checkpoint;
- **Guide**: every metric with its formula and what to try when a run collapses.
"""


def render() -> None:
    root = session.runs_dir()
    st.title("Welcome to SSLScope")
    st.markdown(_WHAT)
    has_runs = bool(loaders.runs(str(root))) if root.is_dir() else False
    st.subheader("Start with the demo")
    st.markdown("Short runs of DINO, MAE and I-JEPA, and the four arms of the centering x sharpening grid, on "
                "the procedural `shapes` data (32 px, CPU-sized ViT): a few minutes on a laptop. The runs "
                f"are written to `{root}`. Same as `python -m trainer demo --runs-dir {root}` in a terminal.")
    if st.button("Start the demo", type="primary", icon=":material/play_arrow:", key="welcome_demo"):
        try:
            started = launch.start(root, launch.demo_argv(root), "demo")
        except launch.LaunchError as e:
            st.error(str(e))
        else:
            st.success(f"Demo started (pid {started.pid}); opening Live.")
            navigation.go("live")
    if has_runs:
        st.info(f"`{root}` already holds runs: see them on the Runs page.")
    else:
        st.caption("Already have runs elsewhere? Enter their folder under *Runs directory* in the sidebar.")
