"""Run-store reads for the pages: cached tables, and metric buffers that grow incrementally.

Live views keep, per run, the rows read so far and a cursor in session state, and ask the
store only for rows after it (``trainer.store.read_new_scalars(run_dir, cursor)``), so a
refresh costs the new rows, not the whole history. When a resume has cut the tail of the
curves, the store's generation has moved and the reader replaces what it holds (the store
says so in the same snapshot as the rows, so no row is skipped or kept twice).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import streamlit as st

from core import metrics as M
from core.probes import Probe, read_probe
from trainer import store
from trainer.store import (
    ScalarCursor,
    StoreError,
    list_probes,
    list_runs,
    load_probe,
    read_new_scalars,
    read_run_info,
    read_scalars,
    scan_runs,
)

if TYPE_CHECKING:
    from dashboard.charts import Curve

_BUFFERS_KEY = "_metric_buffers"
COLUMNS = ("step", "epoch", "wall_time", "name", "value")
X_AXES = {"step": "step", "epoch": "epoch", "wall time": "wall time (min)"}


@st.cache_data(ttl=2, show_spinner=False)
def runs(root: str) -> list[dict[str, Any]]:
    """Every readable run under ``root``, newest first (run.json contents plus ``dir``)."""
    return list_runs(Path(root))


@st.cache_data(ttl=2, show_spinner=False)
def damaged_runs(root: str) -> list[dict[str, Any]]:
    """Run folders under ``root`` whose run.json cannot be used: ``run_id``, ``dir``,
    ``status`` = "damaged" and the ``reason``."""
    return scan_runs(Path(root))[1]


@st.cache_data(ttl=2, show_spinner=False)
def metrics_problem(run_dir: str) -> str:
    """Why a run's metrics cannot be read ("" when they can)."""
    return store.metrics_problem(run_dir)


@st.cache_data(ttl=2, show_spinner=False)
def last_values(run_dir: str) -> dict[str, float]:
    """The latest value of every scalar of a run (one query)."""
    return store.last_values(run_dir)


@st.cache_data(ttl=2, show_spinner=False)
def logged_step(run_dir: str) -> int | None:
    """The newest step with a logged training loss (run.json's ``step`` moves only at
    checkpoints), or None before the first log."""
    cols, _ = read_scalars(run_dir, names=["train/loss"])
    return int(cols["step"].max()) if len(cols["step"]) else None


def run_info(run_dir: Path | str) -> dict[str, Any] | None:
    """run.json of one run, or None when the folder is gone or damaged (the page says so)."""
    try:
        return read_run_info(run_dir)
    except StoreError:
        return None


def oldest_first(run_list: list[dict[str, Any]]) -> list[str]:
    """Run ids oldest first: the order that gives each run its stable colour."""
    return [r["run_id"] for r in sorted(run_list, key=lambda r: r.get("started") or 0)]


def config_value(info: dict[str, Any], key: str, default: Any = None) -> Any:
    """``section.field`` of a run's saved config (run.json's types are checked by the store)."""
    section, field = key.split(".")
    values = (info.get("config") or {}).get(section)
    return values.get(field, default) if isinstance(values, dict) else default


def metrics(run_dir: Path | str) -> pd.DataFrame:
    """All scalars of a run (long format: step, epoch, wall_time, name, value), reading only the
    rows written since this session's last call for the same run."""
    key = str(run_dir)
    buffers: dict[str, dict[str, Any]] = st.session_state.setdefault(_BUFFERS_KEY, {})
    buf = buffers.get(key)
    if buf is None:
        buf = buffers[key] = {"cursor": ScalarCursor(), "frame": pd.DataFrame(columns=list(COLUMNS)), "read_at": 0.0}
    cols, buf["cursor"], reset = read_new_scalars(run_dir, buf["cursor"])
    if reset:  # rows were deleted since the last read (a resume): these columns hold them all
        buf["frame"] = pd.DataFrame(columns=list(COLUMNS))
    if len(cols["step"]):
        new = pd.DataFrame({c: cols[c] for c in COLUMNS})
        buf["frame"] = new if buf["frame"].empty else pd.concat([buf["frame"], new], ignore_index=True)
    buf["read_at"] = time.time()
    return buf["frame"]


def series(frame: pd.DataFrame, name: str, x_axis: str = "step") -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of one metric in step order; ``x_axis``: step | epoch | wall time (minutes since
    the run's first logged row)."""
    if frame.empty:
        return np.empty(0), np.empty(0)
    rows = frame[frame["name"] == name].sort_values("step", kind="stable")
    y = rows["value"].to_numpy(np.float64)
    if x_axis == "epoch":
        x = rows["epoch"].to_numpy(np.float64)
    elif x_axis == "wall time":
        x = (rows["wall_time"].to_numpy(np.float64) - float(frame["wall_time"].min())) / 60.0
    else:
        x = rows["step"].to_numpy(np.int64)
    return x, y


def last_value(frame: pd.DataFrame, name: str) -> float | None:
    """The latest value of one metric, or None."""
    if frame.empty:
        return None
    rows = frame[frame["name"] == name]
    return None if rows.empty else float(rows["value"].iloc[-1])


def metric_names(frame: pd.DataFrame) -> list[str]:
    return [] if frame.empty else sorted(frame["name"].unique().tolist())


def last_step(frame: pd.DataFrame) -> int | None:
    return None if frame.empty else int(frame["step"].max())


def last_write(frame: pd.DataFrame) -> float | None:
    """Wall time of the newest row (seconds since the epoch)."""
    return None if frame.empty else float(frame["wall_time"].max())


def probe_steps(run_dir: Path | str) -> list[int]:
    return list_probes(run_dir)


@st.cache_data(max_entries=64, show_spinner=False)
def probe(run_dir: str, step: int) -> Probe | str:
    """The probe saved at ``step`` with its layout (the file's own, else the run's method's),
    or a one-line reason it cannot be read."""
    from trainer.methods import probe_layout  # imports timm: only once a probe is shown

    try:
        arrays = load_probe(run_dir, step)
        method = (run_info(run_dir) or {}).get("method", "")
        return read_probe(arrays, probe_layout(method))
    except (StoreError, ValueError, KeyError) as e:
        return str(e)


def log_k(info: dict[str, Any], frame: pd.DataFrame) -> float | None:
    """ln K of a DINO run: the logged ``dino/log_k``, else from the config's K."""
    v = last_value(frame, M.DINO_LOG_K)
    if v is not None:
        return v
    k = config_value(info, "dino.out_dim")
    return math.log(k) if info.get("method") == "dino" and k else None


def entropy_ratio(values: dict[str, float | None], k: float | None) -> float | None:
    """Teacher entropy over ln K (1 = uniform collapse, 0 = one-hot), None without both."""
    h = values.get(M.DINO_TEACHER_ENTROPY)
    return h / k if h is not None and k else None


def curves(runs: list[tuple[dict[str, Any], pd.DataFrame]], name: str, colors: dict[str, str],
           x_axis: str) -> list[Curve]:
    """One curve of metric ``name`` per run that logged it, in the run's colour."""
    from dashboard.charts import PALETTE, Curve  # plotly: only for the pages that draw curves

    out = []
    for info, frame in runs:
        x, y = series(frame, name, x_axis)
        if len(x):
            out.append(Curve(info["run_id"], colors.get(info["run_id"], PALETTE[0]), x, y))
    return out
