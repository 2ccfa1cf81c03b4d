"""Runs page: every run under the runs directory, filters, start and stop runs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import streamlit as st

from core import metrics as M
from dashboard import diagnosis, launch, loaders, navigation, session, studies
from dashboard.glossary import guide_link
from trainer.config import DATASETS, METHODS
from trainer.studies import STUDIES, missing_fields


def runs_frame(root: Path) -> pd.DataFrame:
    """One row per run: identity, status, progress, last key metrics and the diagnosis; then
    one row per damaged run folder (status "damaged", the reason why)."""
    rows = []
    for info in loaders.runs(str(root)):
        last = loaders.last_values(info["dir"])
        diag = diagnosis.of_run(info["dir"])
        step = max(int(info.get("step") or 0), loaders.logged_step(info["dir"]) or 0)
        steps = loaders.config_value(info, "optim.steps", 0)
        steps = steps if isinstance(steps, int) and steps > 0 else 0
        rows.append({
            "run": info["run_id"], "method": info.get("method", "?"), "group": info.get("group") or "",
            "status": info.get("status", "?"), "progress": step / steps if steps else None, "step": step,
            "diagnosis": diag.headline if diag else "", "H/lnK": loaders.entropy_ratio(last, last.get(M.DINO_LOG_K)),
            "k-NN": last.get(M.EVAL_KNN_TOP1), "RankMe": last.get(M.COLLAPSE_RANKME), "loss": last.get(M.TRAIN_LOSS),
            "data": str(loaders.config_value(info, "data.name", "?")),
            "reason": info.get("reason") or loaders.metrics_problem(info["dir"]),
            "started": dt.datetime.fromtimestamp(info["started"]) if info.get("started") else None,
        })
    for bad in loaders.damaged_runs(str(root)):
        rows.append({"run": bad["run_id"], "method": "?", "group": "", "status": bad["status"], "progress": None,
                     "step": 0, "diagnosis": "", "H/lnK": None, "k-NN": None, "RankMe": None, "loss": None,
                     "data": "?", "reason": bad["reason"], "started": None})
    return pd.DataFrame(rows)


def _filters(df: pd.DataFrame) -> pd.DataFrame:
    c1, c2, c3, c4 = st.columns([2, 2, 2, 3])
    methods = c1.multiselect("Method", sorted(df["method"].unique()), placeholder="all")
    statuses = c2.multiselect("Status", sorted(df["status"].unique()), placeholder="all")
    groups = c3.multiselect("Group", sorted(g for g in df["group"].unique() if g), placeholder="all")
    text = c4.text_input("Search", placeholder="part of a run name")
    if methods:
        df = df[df["method"].isin(methods)]
    if statuses:
        df = df[df["status"].isin(statuses)]
    if groups:
        df = df[df["group"].isin(groups)]
    if text:
        df = df[df["run"].str.contains(text, case=False, regex=False)]
    return df


def _table(df: pd.DataFrame) -> list[str]:
    """The runs table; returns the run ids ticked by the user."""
    event = st.dataframe(
        df, hide_index=True, width="stretch", on_select="rerun", selection_mode="multi-row", key="runs_table",
        column_config={
            "progress": st.column_config.ProgressColumn("progress", format="percent", min_value=0, max_value=1),
            "step": st.column_config.NumberColumn("step", format="%d"),
            "loss": st.column_config.NumberColumn("loss", format="%.4f"),
            "k-NN": st.column_config.NumberColumn("k-NN", format="percent", help="eval/knn_top1, held-out split"),
            "H/lnK": st.column_config.NumberColumn("H / ln K", format="%.2f",
                                                   help="DINO teacher entropy over ln K: 1 = uniform collapse, "
                                                        "0 = one-hot"),
            "RankMe": st.column_config.NumberColumn("RankMe", format="%.1f"),
            "reason": st.column_config.TextColumn("reason", help="why a run failed or stopped",
                                                  width="medium" if df["reason"].any() else "small"),
            "diagnosis": st.column_config.TextColumn(
                "diagnosis", width="medium",
                help="the alarms of analysis.alarms on the logged curves: healthy, warming up (too young to judge), "
                     "a collapse or not learning, with the step it was first flagged (the Live page says why)"),
            "started": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm"),
        })
    picked = [df.iloc[i]["run"] for i in event.selection.rows] if event and event.selection else []
    if picked:  # ticked here: the runs Live, Compare and Inspect open on
        session.remember_selection(picked)
    return picked


def _actions(root: Path, picked: list[str]) -> None:
    row = st.container(horizontal=True)
    if row.button("Watch live", disabled=not picked, icon=":material/monitoring:", help="Open the ticked runs on Live"):
        session.remember_selection(picked)
        navigation.go("live")
    if row.button("Compare", disabled=len(picked) < 2, icon=":material/compare_arrows:",
                 help="Overlay the ticked runs on Compare"):
        session.remember_selection(picked)
        navigation.go("compare")
    if row.button("Stop", disabled=not picked, icon=":material/stop_circle:",
                 help="Send SIGTERM: the trainer saves a checkpoint and marks the run stopped. A run of the demo "
                      "or of an ablation stops its whole launch: no further run of it starts."):
        for line in launch.stop_runs(root, picked):
            (st.warning if line.startswith("cannot stop") else st.toast)(line)


def _groups(root: Path) -> None:
    """Each group's study and verdict (analysis.study, cached per state of its runs)."""
    frame = studies.groups_frame(root)
    if frame.empty:
        return
    st.subheader("Groups", divider="gray", help="Each group's verdict against the paper's finding, computed from "
                 "its runs by the study's rules; the claims and spreads are on Compare.")
    st.dataframe(frame, hide_index=True, width="stretch", key="groups_table", column_config={
        "why": st.column_config.TextColumn("why", width="large")})


def start_forms(root: Path) -> None:
    """Start a run, the demo, or a study."""
    with st.expander("Start a run", icon=":material/play_arrow:"):
        with st.form("start_run", border=False):
            c1, c2, c3, c4, c5 = st.columns(5)
            method = c1.selectbox("Method", METHODS)
            preset = c2.selectbox("Recipe", ["", "dinov2", "dinov3"], format_func=lambda p: p or "none",
                                  help="DINO recipes: dinov2 = DINO + the iBOT patch loss; dinov3 = dinov2 on a "
                                       "DINOv3 backbone with Gram anchoring. The overrides below still win.")
            data = c3.selectbox("Data", DATASETS)
            steps = c4.number_input("Steps", min_value=1, max_value=1_000_000, value=300, step=50)
            name = c5.text_input("Name", placeholder="automatic", help="letters, digits, '-', '_', '.'")
            sets = st.text_area("Overrides, one `section.field=value` per line", height=80,
                                placeholder="dino.out_dim=64\ndino.koleo_weight=0.1",
                                help="Any config field; see `python -m trainer train --help`.")
            if st.form_submit_button("Start", type="primary"):
                try:
                    argv = launch.train_argv(root, method, data, int(steps), name.strip(), sets.splitlines(),
                                             preset=preset)
                    started = launch.start(root, argv, name.strip() or method)
                    st.success(f"Started `{' '.join(started.argv[1:])}` (pid {started.pid}); "
                               f"it appears in the table within seconds.")
                except launch.LaunchError as e:
                    st.error(str(e))
    with st.expander("Start the demo or an ablation", icon=":material/science:"):
        c1, c2 = st.columns(2)
        c1.markdown("**Demo**: short DINO, MAE and I-JEPA runs and the centering/sharpening grid on `shapes`.")
        if c1.button("Start the demo", key="demo"):
            started = launch.start(root, launch.demo_argv(root), "demo")
            st.success(f"Demo started (pid {started.pid}).")
        c2.markdown("**A study**: a classic ablation as one group, with seeds; its verdict beside the paper's "
                    "finding appears on Compare (`python -m trainer ablate --list`).")
        names = [n for n, s in STUDIES.items() if not missing_fields(s)]
        study = c2.selectbox("Study", names, key="ablate_study",
                             format_func=lambda n: f"{n}: {STUDIES[n].title}")
        st_def = STUDIES[study]
        c2.caption(st_def.finding)
        s1, s2, s3 = c2.columns(3)
        steps = s1.number_input("Steps per run", min_value=10, max_value=100_000, value=st_def.steps, step=50,
                                key="ablate_steps")
        seeds = s2.number_input("Seeds", min_value=1, max_value=10, value=st_def.seeds, key="ablate_seeds")
        parallel = s3.number_input("At once", min_value=1, max_value=64, value=2, key="ablate_parallel",
                                   help="runs trained side by side, each on cores / this many threads")
        if c2.button("Start the study", key="ablate"):
            try:
                argv = launch.ablate_argv(root, int(steps), study, int(seeds), int(parallel))
                started = launch.start(root, argv, f"ablate-{study}")
                st.success(f"Study started (pid {started.pid}); its verdict builds up on Compare.")
            except launch.LaunchError as e:
                st.error(str(e))


def _launch_logs(root: Path) -> None:
    logs = launch.recent_logs(root)
    if not logs:
        return
    launch.reap()
    with st.expander("Output of runs started here", icon=":material/terminal:"):
        for log in logs:
            st.caption(log.name)
            st.code(launch.tail(log) or "(no output yet)", language=None)


def render() -> None:
    root = session.runs_dir()
    st.title("Runs")
    st.caption(f"Every run in `{root}`. Tick runs to watch them live, compare them or stop them. "
               f"What the columns mean: {guide_link()}.")
    df = runs_frame(root) if root.is_dir() else pd.DataFrame()
    if df.empty:
        st.info(f"No runs in `{root}` yet. Start the demo below, or from a terminal: "
                f"`python -m trainer demo --runs-dir {root}`.", icon=":material/info:")
    else:
        shown = _filters(df)
        picked = _table(shown)
        st.caption(f"{len(shown)} of {len(df)} runs" + (f", {len(picked)} ticked" if picked else ""))
        _actions(root, picked)
        _groups(root)
    start_forms(root)
    _launch_logs(root)
