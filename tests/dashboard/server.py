"""Start ``streamlit run streamlit_app.py`` headless on loopback for the browser tests and the
speed benchmark, and open pages in Debian's Chromium through playwright."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
ERROR_SELECTOR = '[data-testid="stException"], [data-testid="stAlertContentError"]'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(runs_dir: Path, timeout: float = 60) -> Iterator[str]:
    """The app on http://127.0.0.1:<free port>, reading ``runs_dir``; stopped on exit."""
    port = free_port()
    env = {**os.environ, "SSLSCOPE_RUNS": str(runs_dir), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless=true",
           f"--server.port={port}", "--server.address=127.0.0.1", "--browser.gatherUsageStats=false",
           "--server.fileWatcherType=none"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                raise RuntimeError(f"streamlit did not start: {out[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1000):
    """A fresh Chromium page (playwright sync API, Debian's chromium binary)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


# The app writes this caption into the sidebar after the page has run (streamlit_app.run):
# once it is there and not stale, the script run, inline fragments included, is over.
END_MARKER = "trained and inspected"
_STATE_JS = """(marker) => {
    const main = document.querySelector('[data-testid="stMain"]');
    const side = document.querySelector('[data-testid="stSidebar"]');
    if (!main || !main.querySelector('h1') || !side || !side.innerText.includes(marker)) return null;
    const busy = document.querySelector('[data-testid="stSkeleton"], [data-stale="true"]')
              || Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]'))
                      .some(c => !c.querySelector('.main-svg'));
    if (busy) return null;
    return main.innerText.length + ':' + main.querySelectorAll('[data-testid="stElementContainer"]').length
           + ':' + document.querySelectorAll('.main-svg').length + ':' + document.querySelectorAll('img').length;
}"""


def wait_rendered(page, timeout_s: float = 60, settle_s: float = 0.5) -> float:
    """Wait until the page is drawn and stays unchanged for ``settle_s`` (a title, no loading
    skeleton or stale element, every plotly chart drawn). Returns the seconds from the call to
    the last change, i.e. the time to the fully rendered page."""
    t0 = time.perf_counter()
    last_state, last_change = None, t0
    while True:
        now = time.perf_counter()
        state = page.evaluate(_STATE_JS, END_MARKER)
        if state != last_state:
            last_state, last_change = state, now
        elif state is not None and now - last_change >= settle_s:
            return last_change - t0
        if now - t0 > timeout_s:
            raise TimeoutError(f"page not rendered within {timeout_s} s (state {last_state})")
        time.sleep(0.05)


def full_screenshot(page, path: Path, max_height: int = 7000) -> None:
    """Screenshot of the whole page: Streamlit scrolls inside its main block, so the viewport
    is first grown to the content's height."""
    width = page.viewport_size["width"]
    height = page.evaluate("""() => {
        const m = document.querySelector('[data-testid="stMain"]');
        return Math.max(m ? m.scrollHeight : 0, document.body.scrollHeight);
    }""")
    page.set_viewport_size({"width": width, "height": min(max(int(height) + 40, 600), max_height)})
    wait_rendered(page, settle_s=0.3)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": width, "height": 1000})
