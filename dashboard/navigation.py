"""The page list of the app, shared by ``streamlit_app.py`` and pages that send the user on
(e.g. the first-start page switches to Live once the demo starts)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import streamlit as st

# url path -> (title, material icon)
PAGES: dict[str, tuple[str, str]] = {
    "welcome": ("Welcome", ":material/rocket_launch:"),
    "runs": ("Runs", ":material/table_rows:"),
    "live": ("Live", ":material/monitoring:"),
    "compare": ("Compare", ":material/compare_arrows:"),
    "inspect": ("Inspect", ":material/biotech:"),
    "guide": ("Guide", ":material/menu_book:"),
}


# url path -> the module under dashboard/ that draws the page (no page imports another page)
PAGE_MODULES: dict[str, str] = {name: {"welcome": "first_start"}.get(name, name) for name in PAGES}


def _render(name: str) -> Callable[[], None]:
    """Runs the page module's ``render``, imported when the page is first shown (the Inspect
    page's torch and analysis imports cost nothing until it is opened)."""
    module = PAGE_MODULES[name]

    def render() -> None:
        importlib.import_module(f"dashboard.{module}").render()

    render.__name__ = render.__qualname__ = f"render_{module}"
    return render


def page(name: str, default: bool = False) -> st.Page:
    title, icon = PAGES[name]
    return st.Page(_render(name), title=title, icon=icon, url_path=name, default=default)


def build(has_runs: bool) -> list[st.Page]:
    """All pages; the Welcome page opens first while the runs directory holds no run."""
    order = ["runs", "live", "compare", "inspect", "guide"]
    pages = [page(n, default=(n == "runs" and has_runs)) for n in order]
    return [page("welcome", default=not has_runs), *pages] if not has_runs else [*pages, page("welcome")]


def go(name: str) -> None:
    """Switch to another page (only inside the full app, where the navigation exists)."""
    st.switch_page(page(name))
