"""Compare page: runs or an ablation group overlaid with stable colours; for a study's group its
verdict beside the paper's finding and each arm's final metrics with their spread over seeds
(``dashboard.studies``, computed by ``analysis.study``); the DINO collapse study (teacher
entropy and KL, one curve per run), final metrics, CSV and HTML downloads."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core import metrics as M
from core.metrics import metric
from dashboard import charts, diagnosis, loaders, session, studies
from dashboard.glossary import guide_link

_DEFAULT_METRICS = (M.TRAIN_LOSS, M.EVAL_KNN_TOP1, M.COLLAPSE_RANKME, M.COLLAPSE_STD_L2)
_IGNORED_KEYS = {"run.name", "run.group", "run.runs_dir", "run.device", "run.study", "run.arm"}
# "not reproduced" is a finding, not a failure of the app: a warning box (red error boxes mean
# something broke, and the browser test treats them so)
_VERDICT_BOX = {"reproduced": st.success, "not reproduced": st.warning, "inconclusive": st.warning,
                "pending": st.info}
_FINAL = (("k-NN", M.EVAL_KNN_TOP1), ("entropy", M.DINO_TEACHER_ENTROPY), ("KL", M.DINO_KL_TEACHER_STUDENT),
          ("batch entropy", M.DINO_TEACHER_BATCH_ENTROPY), ("RankMe", M.COLLAPSE_RANKME),
          ("std l2", M.COLLAPSE_STD_L2), ("loss", M.TRAIN_LOSS))


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    return {f"{s}.{k}": v for s, fields in (config or {}).items() if isinstance(fields, dict)
            for k, v in fields.items()}


def _words(key: str, value: Any) -> str:
    """A config difference in words (the centering/sharpening arms read as in the paper)."""
    if key == "dino.centering":
        return "no centering" if value == "none" else ("centering" if value == "mean" else f"{value} centering")
    if key == "dino.sharpening":
        return "sharpening" if value else "no sharpening"
    return f"{key.split('.', 1)[1]}={value}"


def arm_labels(infos: list[dict[str, Any]]) -> dict[str, str]:
    """Run id -> what sets it apart from the others (the config fields that differ)."""
    flats = {i["run_id"]: _flat(i.get("config", {})) for i in infos}
    keys = sorted({k for f in flats.values() for k in f} - _IGNORED_KEYS)
    differing = [k for k in keys if len({repr(f.get(k)) for f in flats.values()}) > 1]
    out = {}
    for run_id, f in flats.items():
        words = [_words(k, f.get(k)) for k in differing]
        out[run_id] = ", ".join(words) if words and len(infos) > 1 else run_id
    if len(set(out.values())) < len(out):  # identical configs (e.g. seeds): fall back to ids
        return {r: r for r in out}
    return out


def final_table(runs: list[tuple[dict, pd.DataFrame]], labels: dict[str, str]) -> pd.DataFrame:
    rows = []
    for info, frame in runs:
        diag = diagnosis.of_run(info["dir"])
        k = loaders.log_k(info, frame)
        row = {"run": info["run_id"], "arm": labels.get(info["run_id"], ""), "method": info.get("method"),
               "status": info.get("status"), "step": loaders.last_step(frame)}
        values = {name: loaders.last_value(frame, name) for _, name in _FINAL}
        row.update({col: values[name] for col, name in _FINAL})
        row["H / ln K"] = loaders.entropy_ratio(values, k)
        row["diagnosis"] = diag.headline if diag else ""
        rows.append(row)
    return pd.DataFrame(rows)


def _pick(all_runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    """The runs to compare and, when a whole group was picked, its name."""
    groups = sorted({r.get("group") for r in all_runs if r.get("group")})
    mode = st.segmented_control("Compare", ["an ablation group", "runs"], key="cmp_mode",
                                default="an ablation group" if groups else "runs") or "runs"
    if mode == "an ablation group":
        if not groups:
            st.info("No ablation group yet: start one on the Runs page "
                    "(`python -m trainer ablate centering-sharpening`).")
            return [], None
        group = st.selectbox("Group", groups, key="cmp_group")
        return sorted([r for r in all_runs if r.get("group") == group], key=lambda r: r.get("started") or 0), group
    ids = [r["run_id"] for r in all_runs]
    picked = st.multiselect("Runs", ids, default=session.remembered_selection(ids, fallback=2), key="cmp_runs")
    session.remember_selection(picked)
    return [r for r in all_runs if r["run_id"] in picked], None


def _study(root, group: str) -> None:
    """The group's verdict beside the paper's finding, per claim, and each arm's spread."""
    result = studies.of_group(root, group)
    if isinstance(result, str):
        st.warning(result)
        return
    st.subheader("Study verdict" if result.verdict else "Arms over seeds", divider="gray",
                 help="Computed from the figures by the rules in the study's definition (python -m trainer ablate "
                      "--list): reproduced when a claim holds for every seed, not reproduced when for none, "
                      "inconclusive when the seeds disagree.")
    if result.study is not None:
        st.markdown(f"**{result.study.title}**: {result.study.finding}  \n*{result.study.paper}*")
    if result.verdict is not None:
        _VERDICT_BOX[result.verdict.verdict](f"**{result.verdict.verdict}**: {result.verdict.why}")
        st.dataframe(studies.claims_frame(result), hide_index=True, width="stretch", key="cmp_claims")
    for note in result.notes:
        st.caption(note)
    st.dataframe(studies.spreads_frame(result), hide_index=True, width="stretch", key="cmp_spreads")
    waiting = studies.pending_measures(result)
    row = st.container(horizontal=True)
    if waiting and row.button(f"Compute {', '.join(waiting).lower()} (slow)", icon=":material/calculate:",
                              help="From each finished run's last checkpoint; cached beside the run."):
        with st.spinner("Computing from the checkpoints..."):
            problem = studies.compute_measures(root, group)
        if problem:
            st.error(problem)
        else:
            st.rerun()
    row.download_button("Report (HTML)", lambda: studies.report_html(root, group), f"{group}-report.html",
                        "text/html", icon=":material/download:", on_click="ignore")


def render() -> None:
    root = session.runs_dir()
    st.title("Compare")
    st.caption(f"Overlay runs or the arms of an ablation; each run keeps its colour on every page. {guide_link()}")
    all_runs = loaders.runs(str(root)) if root.is_dir() else []
    if not all_runs:
        st.info(f"No runs in `{root}` yet; start the demo on the Runs page.")
        return
    chosen, group = _pick(all_runs)
    if not chosen:
        return
    if group:
        _study(root, group)
    runs = []
    for info in chosen:
        if loaders.run_info(info["dir"]) is None:
            st.warning(f"Run '{info['run_id']}' is gone from `{root}` (deleted or moved).")
            continue
        runs.append((info, loaders.metrics(info["dir"])))
    colors = charts.run_colors(loaders.oldest_first(all_runs))
    labels = arm_labels([i for i, _ in runs])
    c1, c2, c3 = st.columns([2, 2, 1])
    smoothing = c1.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key="cmp_smoothing")
    x_axis = c2.segmented_control("x axis", list(loaders.X_AXES), default="step", key="cmp_x") or "step"
    log_y = c3.toggle("Log scale", key="cmp_log")
    arms = [(dict(i, run_id=labels[i["run_id"]]), f) for i, f in runs]  # curves labelled by arm
    arm_colors = {labels[r]: c for r, c in colors.items() if r in labels}
    _collapse_study(arms, arm_colors, smoothing, x_axis)
    _curves(runs, arms, arm_colors, smoothing, x_axis, log_y)
    st.subheader("Final metrics", divider="gray", help="Last logged value of each metric. " + guide_link())
    table = final_table(runs, labels)
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "k-NN": st.column_config.NumberColumn(format="percent"),
        **{c: st.column_config.NumberColumn(format="%.4f") for c in ("entropy", "KL", "batch entropy", "loss")},
        "H / ln K": st.column_config.NumberColumn(format="%.2f"),
        "RankMe": st.column_config.NumberColumn(format="%.1f"),
        "std l2": st.column_config.NumberColumn(format="%.3f")})
    c1, c2 = st.columns(2)
    c1.download_button("Final metrics (CSV)", table.to_csv(index=False), "final_metrics.csv", "text/csv",
                       icon=":material/download:", on_click="ignore")
    c2.download_button("All curves (CSV)", lambda: _curves_csv(runs), "curves.csv", "text/csv",
                       icon=":material/download:", on_click="ignore")


def _collapse_study(arms, colors, smoothing: float, x_axis: str) -> None:
    dino = [(i, f) for i, f in arms if i.get("method") == "dino"]
    if not dino:
        return
    st.subheader("DINO collapse study", divider="gray",
                 help="As in Fig. 7 of the DINO paper: centering alone drifts to ln K (uniform), sharpening alone "
                      "to 0 (one-hot); both keep the entropy between and KL above 0. "
                      + guide_link(M.DINO_TEACHER_ENTROPY))
    ks = [k for i, f in dino if (k := loaders.log_k(i, f)) is not None]
    fig = charts.collapse_study_figure(
        loaders.curves(dino, M.DINO_TEACHER_ENTROPY, colors, x_axis),
        loaders.curves(dino, M.DINO_KL_TEACHER_STUDENT, colors, x_axis),
        ks[0] if ks else None, x_title=loaders.X_AXES[x_axis], smoothing=smoothing)
    st.plotly_chart(fig, key="collapse_study", config={"displaylogo": False})
    st.download_button("Figure (HTML)", lambda: fig.to_html(include_plotlyjs=True), "collapse_study.html",
                       "text/html", icon=":material/download:", on_click="ignore")


def _curves(runs, arms, colors, smoothing: float, x_axis: str, log_y: bool) -> None:
    names = sorted(n for n in {n for _, f in runs for n in loaders.metric_names(f)} if metric(n).curve)
    if not names:
        st.info("These runs have logged no metrics yet.")
        return
    st.subheader("Curves", divider="gray", help="Pick any logged metric. " + guide_link())
    default = [n for n in _DEFAULT_METRICS if n in names] or names[:2]
    picked = st.multiselect("Metrics", names, default=default, key="cmp_metrics")
    st.html(charts.color_key_html({label: colors[label] for label in (i["run_id"] for i, _ in arms)}))
    if picked:
        panels = [(f"{metric(n).label} <span style='color:#888'>{n}</span>", loaders.curves(arms, n, colors, x_axis))
                  for n in picked]
        fig = charts.family_figure(panels, x_title=loaders.X_AXES[x_axis], smoothing=smoothing, log_y=log_y, cols=2,
                                   panel_height=300)
        st.plotly_chart(fig, key="cmp_curves", config={"displaylogo": False})


def _curves_csv(runs) -> str:
    frames = [f.assign(run=i["run_id"]) for i, f in runs if not f.empty]
    return pd.concat(frames).to_csv(index=False) if frames else "run,step,epoch,wall_time,name,value\n"
