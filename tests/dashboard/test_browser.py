"""The real app in Chromium: every page renders without an error element (screenshots kept
in docs/screenshots/ when SSLSCOPE_SCREENSHOTS=1), and the Live page shows new steps of a
run being written within seconds, without a reload."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import pytest

from tests.dashboard.server import (ERROR_SELECTOR, REPO, browser_page, full_screenshot, streamlit_server,
                                    wait_rendered)
from trainer.store import RunWriter

pytestmark = pytest.mark.slow

# (file name, URL path); the default page (Runs, as the store has runs) lives at "/"
PAGES = [("runs", ""), ("live", "live?run=dino"), ("compare", "compare"), ("inspect", "inspect?run=dino"),
         ("guide", "guide")]


def _shots(tmp_path: Path) -> Path:
    return REPO / "docs" / "screenshots" if os.environ.get("SSLSCOPE_SCREENSHOTS") == "1" else tmp_path


def test_every_page_renders_without_errors(real_store, tmp_path):
    store = Path(os.environ.get("SSLSCOPE_SCREENSHOT_RUNS", real_store))
    shots = _shots(tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with streamlit_server(store) as url, browser_page() as page:
        for name, path in PAGES:
            page.goto(f"{url}/{path}")
            wait_rendered(page, timeout_s=120)
            errors = page.locator(ERROR_SELECTOR)
            assert errors.count() == 0, f"{name}: {errors.first.inner_text()}"
            assert page.locator("h1").first.inner_text().startswith(name.capitalize())
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
    writer = RunWriter.create(root, "writing", {}, "dino")  # status running, our pid: alive
    stop = threading.Event()
    written: dict[int, float] = {}

    def write() -> None:
        step = 0
        while not stop.is_set():
            writer.log_scalars(step, step / 100, {"train/loss": 2.0 / (1 + step), "dino/teacher_entropy": 3.0,
                                                  "dino/log_k": 3.4657})
            written[step] = time.time()
            step += 1
            time.sleep(0.25)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        with streamlit_server(root) as url, browser_page() as page:
            page.goto(f"{url}/live?run=writing")
            wait_rendered(page, timeout_s=120)
            pattern = re.compile(r"writing \(running\) step (\d+)")
            first = int(pattern.search(page.locator('[data-testid="stMain"]').inner_text()).group(1))
            page_loads = page.evaluate("performance.getEntriesByType('navigation').length")
            deadline, seen = time.time() + 15, first
            while seen <= first + 4 and time.time() < deadline:
                m = pattern.search(page.locator('[data-testid="stMain"]').inner_text())
                seen = int(m.group(1)) if m else seen
                time.sleep(0.1)
            shown_at = time.time()
            assert seen > first + 4, f"the page stayed at step {first}"
            delay = shown_at - written[seen]
            print(f"step {seen} shown {delay:.2f} s after it was written")
            assert delay < 5.0
            assert page.evaluate("performance.getEntriesByType('navigation').length") == page_loads  # no reload
    finally:
        stop.set()
        thread.join()
        writer.close()
