"""Welcome page: what SSLScope is, one click that starts the demo, and how far it has got."""

from __future__ import annotations

from pathlib import Path

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
# Seconds from the click on an idle 2-core machine, measured by benchmarks/demo_timing.py on
# 2026-12-02 (load average 1.9 decaying to idle at the start): first row 14.9 s, first loss point
# 17.7 s, all four arms with loss rows 17.7 s, the whole demo 186.6 s (350 CPU-seconds: at least
# 175 s on 2 cores). README.md states the same sentence (a test compares them).
DEMO_TIMES = {"first curves": 18, "all four arms": 18, "whole demo": 187}
REFRESH_S = 2.0


def demo_times_sentence() -> str:
    """The measured demo times, as the README says them too."""
    t = DEMO_TIMES
    whole = f"{t['whole demo'] // 60} min {t['whole demo'] % 60:02d} s"
    return (f"On an idle 2-core machine the first curves appear about {t['first curves']} s after the click, all "
            f"four arms are on Compare after about {t['all four arms']} s, and the whole demo ends after about "
            f"{whole}.")


def _demo_text(root: Path) -> str:
    return ("Seven short runs (150 steps each) on the procedural `shapes` data (32 px, CPU-sized ViT): first the "
            "four arms of DINO's centering x sharpening grid side by side, then DINO, MAE and I-JEPA at their "
            f"defaults. {demo_times_sentence()} Other work on the machine stretches all of it; the panel below "
            f"then says how far it has got. The runs are written to `{root}`. Same as "
            f"`python -m trainer demo --runs-dir {root}` in a terminal.")


def launch_panel(root: Path) -> None:
    """The newest demo or ablation: one summary line and a row per run (refreshed while it runs)."""
    plan = launch.latest_launch(root)
    if plan is None:
        return
    table = launch.launch_progress(root, plan)
    what = "The demo" if plan.get("command") == "demo" else f"Ablation `{plan.get('name')}`"
    line = f"**{what}** {'is running' if plan['alive'] else 'has ended'}: {launch.progress_summary(plan, table)}."
    (st.info if plan["alive"] else st.caption)(line)
    if plan.get("stop_reason"):
        st.caption(f"It was {plan['stop_reason']}; `python -m trainer resume runs/<run>` continues a stopped run.")
    st.dataframe(table, hide_index=True, width="stretch", key="welcome_progress", column_config={
        "progress": st.column_config.ProgressColumn("progress", format="percent", min_value=0, max_value=1),
        "step": st.column_config.NumberColumn("step", format="%d")})
    if plan["alive"] and st.button("Stop the demo" if plan.get("command") == "demo" else "Stop the ablation",
                                   icon=":material/stop_circle:", key="welcome_stop",
                                   help="SIGTERM to the launcher: every run in progress saves a checkpoint and is "
                                        "marked stopped; the runs still waiting never start."):
        try:
            st.toast(launch.stop_launch(plan))
        except launch.LaunchError as e:
            st.warning(str(e))


def render() -> None:
    root = session.runs_dir()
    st.title("Welcome to SSLScope")
    st.markdown(_WHAT)
    has_runs = bool(loaders.runs(str(root))) if root.is_dir() else False
    st.subheader("Start with the demo")
    st.markdown(_demo_text(root))
    if st.button("Start the demo", type="primary", icon=":material/play_arrow:", key="welcome_demo"):
        try:
            started = launch.start(root, launch.demo_argv(root), "demo")
        except launch.LaunchError as e:
            st.error(str(e))
        else:
            st.success(f"Demo started (pid {started.pid}); opening Live.")
            navigation.go("live")
    plan = launch.latest_launch(root)
    if plan is not None:
        st.subheader("What is running", divider="gray")
        st.fragment(run_every=REFRESH_S if plan["alive"] else None)(launch_panel)(root)
        c = st.container(horizontal=True)
        if c.button("Watch live", icon=":material/monitoring:", key="welcome_live"):
            navigation.go("live")
        if c.button("Compare", icon=":material/compare_arrows:", key="welcome_compare"):
            navigation.go("compare")
    if has_runs:
        st.info(f"`{root}` already holds runs: see them on the Runs page.")
    else:
        st.caption("Already have runs elsewhere? Enter their folder under *Runs directory* in the sidebar.")
