"""The real app in Chromium: every page renders without an error element (screenshots kept
in docs/screenshots/ when SSLSCOPE_SCREENSHOTS=1), and the Live page shows new steps of a
run being written within seconds, without a reload."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.dashboard.server import (
    ERROR_SELECTOR,
    REPO,
    browser_page,
    full_screenshot,
    live_delays,
    page_paths,
    shown_step,
    streamlit_server,
    wait_rendered,
    writing_run,
)

pytestmark = pytest.mark.slow

def _shots(tmp_path: Path) -> Path:
    return REPO / "docs" / "screenshots" if os.environ.get("SSLSCOPE_SCREENSHOTS") == "1" else tmp_path


def test_every_page_renders_without_errors(request, tmp_path):
    # SSLSCOPE_SCREENSHOT_RUNS: take the README's pictures of longer runs than the fixture's
    custom = os.environ.get("SSLSCOPE_SCREENSHOT_RUNS")
    store = Path(custom) if custom else request.getfixturevalue("real_store")
    shots = _shots(tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with streamlit_server(store) as url, browser_page() as page:
        for name, path in page_paths(store):
            page.goto(f"{url}/{path}")
            wait_rendered(page, timeout_s=120)
            errors = page.locator(ERROR_SELECTOR)
            assert errors.count() == 0, f"{name}: {errors.first.inner_text()}"
            assert page.locator("h1").first.inner_text().startswith(name.split("-")[0].capitalize())
            full_screenshot(page, shots / f"{name}.png")
            assert (shots / f"{name}.png").stat().st_size > 10_000


def test_welcome_page_when_the_runs_directory_is_empty(tmp_path):
    with streamlit_server(tmp_path / "empty") as url, browser_page() as page:
        page.goto(url)
        wait_rendered(page)
        assert page.locator(ERROR_SELECTOR).count() == 0
        assert "Welcome to SSLScope" in page.locator("h1").first.inner_text()
        full_screenshot(page, _shots(tmp_path) / "welcome.png")


def test_live_page_shows_new_steps_while_a_trainer_writes(tmp_path):
    root = tmp_path / "runs"
    with writing_run(root) as run_dir, streamlit_server(root) as url, browser_page() as page:
        page.goto(f"{url}/live?run=writing")
        wait_rendered(page, timeout_s=120)
        deadline = time.time() + 30
        while shown_step(page) is None and time.time() < deadline:  # first rows
            time.sleep(0.1)
        first = shown_step(page)
        assert first is not None, page.locator('[data-testid="stMain"]').inner_text()
        loads = page.evaluate("performance.getEntriesByType('navigation').length")
        delays = live_delays(page, run_dir, refreshes=4)
        print(f"delays from a step written to shown: {', '.join(f'{d:.2f}' for d in delays)} s")
        assert len(delays) == 4, "the page stopped showing new steps"
        assert max(delays) < 5.0  # refresh every 2 s plus drawing, on 2 shared cores
        assert shown_step(page) > first
        assert page.evaluate("performance.getEntriesByType('navigation').length") == loads  # no reload


def test_lasso_on_the_embedding_shows_the_selected_images(request, tmp_path):
    custom = os.environ.get("SSLSCOPE_SCREENSHOT_RUNS")
    store = Path(custom) if custom else request.getfixturevalue("real_store")
    inspect = dict(page_paths(store))["inspect"]
    with streamlit_server(store) as url, browser_page() as page:
        page.goto(f"{url}/{inspect}")
        wait_rendered(page, timeout_s=120)
        assert page.locator('[data-testid="stImage"]').count() == 0
        box = page.locator('[data-testid="stPlotlyChart"] .nsewdrag').first.bounding_box()
        corners = [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9), (0.1, 0.11)]  # the figure's drag mode is lasso
        page.mouse.move(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.1)
        page.mouse.down()
        for fx, fy in corners:
            page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy, steps=6)
        page.mouse.up()
        page.wait_for_selector('[data-testid="stImage"]', timeout=60000)
        wait_rendered(page, timeout_s=60)
        assert page.locator(ERROR_SELECTOR).count() == 0
        assert " selected" in page.locator('[data-testid="stMain"]').inner_text()
        assert page.locator('[data-testid="stImage"]').count() > 0
        full_screenshot(page, _shots(tmp_path) / "inspect-selection.png")
