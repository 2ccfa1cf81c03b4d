"""Live page: curves by metric family that refresh on their own while runs train, the DINO
collapse panel, a banner when a run collapses, and the probe images at any logged step."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from core import metrics as M
from core.metrics import FAMILIES, IMPORTED, METRICS, OTHER, Family, family_names, metric
from dashboard import charts, dense_view, diagnosis, loaders, session
from dashboard.glossary import guide_link
from trainer.store import read_events

# the Guide entry each alarm's banner links to
_ALARM_GUIDE = {"dimensional collapse": M.COLLAPSE_RANKME, "not learning": M.EVAL_KNN_TOP1}
_INTERVALS = {"every 1 s": 1.0, "every 2 s": 2.0, "every 5 s": 5.0, "every 15 s": 15.0, "paused": None}


@dataclass(frozen=True)
class View:
    """How the curves are drawn (the controls above the charts)."""

    smoothing: float = 0.6
    x_axis: str = "step"
    log_y: bool = False


def collapse_panel(runs: list[tuple[dict, object]], colors: dict[str, str], view: View):
    """The DINO collapse figure for the given runs (None when no run logs DINO stats)."""
    per_metric = {name: loaders.curves(runs, name, colors, view.x_axis) for name in charts.COLLAPSE_PANELS}
    if not any(per_metric.values()):
        return None
    ks = [k for info, frame in runs if (k := loaders.log_k(info, frame)) is not None]
    return charts.collapse_figure(per_metric, ks[0] if ks else None, x_title=loaders.X_AXES[view.x_axis],
                                  smoothing=view.smoothing)


def _family(family: Family, names: tuple[str, ...], runs, colors, view: View) -> None:
    present = [n for n in names if metric(n).curve and any(n in set(f["name"]) for _, f in runs if not f.empty)]
    if not present:
        return
    st.subheader(family.title, help=f"{family.help.capitalize()}. {guide_link()}", divider="gray")
    if family.figure == "collapse":
        fig = collapse_panel(runs, colors, view)
        if fig is not None:
            st.plotly_chart(fig, key="collapse_panel", config={"displaylogo": False})
            st.caption("Healthy: entropy between the two dashed lines with KL above 0. Entropy on ln K with KL "
                       "at 0 is uniform collapse; entropy near 0 is one-hot collapse. "
                       + guide_link(M.DINO_TEACHER_ENTROPY))
        present = [n for n in present if n not in charts.COLLAPSE_PANELS]
    if not present:
        return
    panels = [(f"{metric(n).label} <span style='color:#888'>{n}</span>", loaders.curves(runs, n, colors, view.x_axis))
              for n in present]
    hlines = {}
    if family.figure == "ibot" and M.IBOT_TEACHER_ENTROPY in present:  # the patch head's collapse lines
        ks = [k for _, frame in runs if (k := loaders.last_value(frame, M.IBOT_LOG_K)) is not None]
        if ks:
            hlines[present.index(M.IBOT_TEACHER_ENTROPY)] = [(ks[0], f"ln K = {ks[0]:.2f}: uniform"),
                                                              (0.0, "0: one-hot")]
    fig = charts.family_figure(panels, x_title=loaders.X_AXES[view.x_axis], smoothing=view.smoothing,
                               log_y=view.log_y, hlines=hlines)
    st.plotly_chart(fig, key=f"family_{family.title}", config={"displaylogo": False})


def _status_line(runs) -> None:
    """Last-updated indicator: when the page last read, the newest step and its age per run."""
    now = time.time()
    parts = []
    for info, frame in runs:
        step, wrote = loaders.last_step(frame), loaders.last_write(frame)
        age = f"{now - wrote:.0f} s ago" if wrote else "no rows yet"
        parts.append(f"**{info['run_id']}** ({info.get('status')}) step {step if step is not None else '-'}, "
                     f"newest row {age}")
    st.caption(f"Updated {time.strftime('%H:%M:%S')} · " + " · ".join(parts))


def _banners(runs) -> None:
    for info, _ in runs:
        if info.get("status") == "failed":
            st.error(f"**{info['run_id']}** failed: {info.get('reason') or 'no reason recorded'}",
                     icon=":material/error:")
        shown = ("warning",) if info.get("status") == "failed" else ("warning", "error")  # failure shown above
        for ev in [e for e in read_events(info["dir"]) if e["level"] in shown][-3:]:
            st.warning(f"**{info['run_id']}**, step {ev['step']}: {ev['message']}", icon=":material/report:")
        diag = diagnosis.of_run(info["dir"])
        if diag is not None and diag.alarm:
            st.warning(f"**{info['run_id']}: {diag.label}** (rule `{diag.rule}`, first flagged at step "
                       f"{diag.first_step}). {diag.evidence} **Try:** {diag.advice} "
                       f"{guide_link(_ALARM_GUIDE.get(diag.label, M.DINO_TEACHER_ENTROPY))}",
                       icon=":material/warning:")
        elif diag is not None and diag.warming_up:
            st.caption(f"**{info['run_id']}**: warming up, no verdict yet. {diag.evidence}")


def live_panels(root: Path, run_ids: list[str], colors: dict[str, str], view: View) -> None:
    """Everything that refreshes: status line, banners, the metric families."""
    runs = []
    for run_id in run_ids:
        info = loaders.run_info(root / run_id)
        if info is None:
            st.warning(f"Run '{run_id}' is gone from `{root}` (deleted or moved); pick another run.")
            continue
        runs.append((info, loaders.metrics(root / run_id)))
    if not runs:
        return
    _status_line(runs)
    _banners(runs)
    if all(f.empty for _, f in runs):
        st.info("No metrics logged yet; the first rows appear after `run.log_every` steps.")
        return
    st.html(charts.color_key_html({i["run_id"]: colors.get(i["run_id"], charts.PALETTE[0]) for i, _ in runs}))
    for family in FAMILIES:
        _family(family, family_names(family), runs, colors, view)
    others = sorted({n for _, f in runs for n in loaders.metric_names(f)} - set(METRICS))
    for family in (IMPORTED, OTHER):  # names no declaration knows: an imported log's, a user's own
        _family(family, tuple(n for n in others if metric(n).family == family), runs, colors, view)


def probe_panel(root: Path, run_ids: list[str]) -> None:
    """The probe batch (attention maps, reconstructions, predictions) at a chosen step."""
    st.subheader("Probe images", divider="gray",
                 help="A fixed batch the trainer renders at each evaluation: DINO's [CLS] attention, MAE's "
                      "reconstructions, I-JEPA's blocks and similarity maps. " + guide_link())
    if not run_ids:
        return
    run_id = st.selectbox("Run", run_ids, key="probe_run") if len(run_ids) > 1 else run_ids[0]
    steps = loaders.probe_steps(root / run_id)
    if not steps:
        st.caption(f"'{run_id}' has saved no probe yet (one per `run.eval_every` steps).")
        return
    follow = st.toggle("Follow the latest step", value=True, key="probe_follow")
    if follow or len(steps) == 1:
        step = steps[-1]
    else:
        step = st.select_slider("Step", options=steps, value=steps[-1], key="probe_step")
    probe = loaders.probe(str(root / run_id), step)
    if isinstance(probe, str):
        st.warning(probe)
        return
    fig, skipped = charts.probe_figure(probe)
    st.caption(f"{run_id}, step {step} of {steps[-1]} ({len(steps)} probes saved)")
    if fig is None:
        keys = f" (keys: {', '.join(skipped)})." if skipped else "."
        st.caption("This probe holds no arrays its layout draws" + keys)
    else:
        st.plotly_chart(fig, key="probe_fig", config={"displaylogo": False})
    for entry in probe.dense():
        dense_view.dense_panel(probe.arrays[entry.name], probe.base_image(), key=f"probe_{run_id}_{entry.name}")


def _wait_for_runs(root: Path) -> None:
    """Rerun the page once the first run appears (e.g. seconds after the demo was started)."""
    if root.is_dir() and loaders.runs(str(root)):
        st.rerun()


def render() -> None:
    root = session.runs_dir()
    st.title("Live")
    st.caption("Curves refresh on their own while runs train, reading only the rows written since the last "
               f"refresh. Raw curves are faint, smoothed ones solid. {guide_link()}")
    all_runs = loaders.runs(str(root)) if root.is_dir() else []
    if not all_runs:
        st.info(f"No runs in `{root}` yet; start one on the Runs page or with `python -m trainer demo`.")
        st.fragment(run_every=2.0)(_wait_for_runs)(root)
        return
    ids = [r["run_id"] for r in all_runs]
    running = [r["run_id"] for r in all_runs if r.get("status") == "running"]
    for gone in [r for r in st.session_state.get(session.SELECTED_KEY, []) if r not in ids]:
        st.warning(f"Run '{gone}' is gone from `{root}` (deleted or moved); pick another run.")
    default = session.remembered_selection(ids, fallback=0) or running[:4] or ids[:1]
    picked = st.multiselect("Runs", ids, default=default, key="live_runs", placeholder="pick runs to watch")
    session.remember_selection(picked)
    c1, c2, c3, c4 = st.columns([1, 2, 2, 1])
    every = c1.selectbox("Refresh", list(_INTERVALS), index=1, key="live_every")
    smoothing = c2.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key="live_smoothing",
                          help="Debiased exponential moving average, as in TensorBoard; 0 = raw.")
    x_axis = c3.segmented_control("x axis", list(loaders.X_AXES), default="step", key="live_x") or "step"
    log_y = c4.toggle("Log scale", key="live_log")
    if not picked:
        st.info("Pick one or more runs above.")
        return
    colors = charts.run_colors(loaders.oldest_first(all_runs))
    view = View(smoothing, x_axis, log_y)
    # finished runs do not change: refresh only while one of the picked runs trains
    active = any((loaders.run_info(root / r) or {}).get("status") == "running" for r in picked)
    interval = _INTERVALS[every] if active else None
    if not active:
        st.caption("None of these runs is training, so the page does not refresh.")
    st.fragment(run_every=interval)(live_panels)(root, picked, colors, view)
    st.fragment(run_every=interval)(probe_panel)(root, picked)
