"""What every page shares in one browser session: the runs directory and the runs picked.

The runs directory defaults to ``trainer.store.default_runs_dir()`` (``$SSLSCOPE_RUNS`` or
``runs``) and can be changed in the sidebar; pages read it with :func:`runs_dir`.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from trainer.store import default_runs_dir

RUNS_DIR_KEY = "runs_dir"
SELECTED_KEY = "selected_runs"  # run ids picked on one page, offered first on the others


def runs_dir() -> Path:
    """The runs directory this session looks at."""
    value = st.session_state.get(RUNS_DIR_KEY)
    return Path(value).expanduser() if value else default_runs_dir()


def sidebar_runs_dir() -> Path:
    """Sidebar text box for the runs directory; says so when the folder does not exist."""
    if RUNS_DIR_KEY not in st.session_state:
        st.session_state[RUNS_DIR_KEY] = str(default_runs_dir())
    st.sidebar.text_input("Runs directory", key=RUNS_DIR_KEY,
                          help="Folder holding one sub-folder per run. Default: $SSLSCOPE_RUNS or `runs`.")
    root = runs_dir()
    if root.exists() and not root.is_dir():
        st.sidebar.error(f"'{root}' is a file, not a folder; enter a folder.")
    elif not root.exists():
        st.sidebar.caption(f"'{root}' does not exist yet; starting a run creates it.")
    return root


def remember_selection(run_ids: list[str]) -> None:
    st.session_state[SELECTED_KEY] = list(run_ids)


def choose(run_id: str) -> None:
    """One run picked (e.g. on Inspect): it comes first on the other pages, the earlier picks
    after it; the URL's ``?run=`` names it, so a copied link opens it too."""
    before = st.session_state.get(SELECTED_KEY, [])
    remember_selection([run_id, *(r for r in before if r != run_id)])
    st.query_params["run"] = run_id


def remembered_selection(available: list[str], fallback: int = 1) -> list[str]:
    """Runs picked earlier in this session that still exist, else those named in the URL
    (``?run=a&run=b``: links to a page with its runs open), else the newest ``fallback``."""
    if SELECTED_KEY in st.session_state:
        kept = [r for r in st.session_state[SELECTED_KEY] if r in available]
    else:
        kept = [r for r in st.query_params.get_all("run") if r in available]
    return kept or available[:fallback]
