"""SSLScope dashboard: ``python -m dashboard`` (loopback from any folder) or ``streamlit run streamlit_app.py``.

Thin on purpose: the runs-directory box in the sidebar and the page navigation; each page
lives in its own module under ``dashboard/``.
"""

from __future__ import annotations

import streamlit as st


def run() -> None:
    from dashboard import loaders, navigation, session
    from dashboard.binding import exposure_warning

    st.set_page_config(page_title="SSLScope", page_icon=":material/visibility:", layout="wide")
    if warning := exposure_warning(st.get_option("server.address")):
        st.sidebar.warning(warning, icon=":material/public:")
    root = session.sidebar_runs_dir()
    has_runs = bool(loaders.runs(str(root))) if root.is_dir() else False
    st.navigation(navigation.build(has_runs)).run()
    st.sidebar.caption("SSLScope: DINO, MAE and I-JEPA, trained and inspected. "
                       "Every chart's help links to the Guide.")


if __name__ == "__main__":
    run()
