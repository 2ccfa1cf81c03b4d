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
from collections.abc import Iterator
from pathlib import Path

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
def streamlit_server(runs_dir: Path, timeout: float = 60, script: Path | None = None) -> Iterator[str]:
    """The app (or ``script``) on http://127.0.0.1:<free port>, reading ``runs_dir``; stopped on exit."""
    port = free_port()
    env = {**os.environ, "SSLSCOPE_RUNS": str(runs_dir), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "streamlit", "run", str(script or "streamlit_app.py"), "--server.headless=true",
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
        _stop(proc)


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


_WRITER = """
import signal, sys, time
from trainer.store import RunWriter
w = RunWriter.create(sys.argv[1], sys.argv[2], {}, "dino")
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
step = 0
while not stop:
    w.log_scalars(step, step / 100, {"train/loss": 2.0 / (1 + step), "dino/teacher_entropy": 3.0,
                                     "dino/kl_teacher_student": 0.1, "dino/log_k": 3.4657})
    step += 1
    time.sleep(float(sys.argv[3]))
w.set_status("stopped", "stopped by signal SIGTERM")
w.close()
"""


@contextlib.contextmanager
def writing_run(root: Path, name: str = "writing", every_s: float = 0.25) -> Iterator[Path]:
    """A separate process that logs a step every ``every_s`` seconds into ``root/name`` (status
    running) until the context ends: a trainer as the dashboard sees it."""
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(root), name, str(every_s)], cwd=REPO)
    try:
        deadline = time.time() + 60
        while not (root / name / "metrics.sqlite").exists():
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("the writer process did not start")
            time.sleep(0.1)
        yield root / name
    finally:
        _stop(proc)


def step_written_at(run_dir: Path, step: int) -> float:
    """Wall time at which the writer committed ``step``."""
    from trainer.store import read_scalars

    cols, _ = read_scalars(run_dir, names=["train/loss"])
    return float(cols["wall_time"][cols["step"] == step][0])


LIVE_STEP = r"{name} \(running\) step (\d+)"


def shown_step(page, name: str = "writing") -> int | None:
    """The newest step the Live page's status line shows for run ``name``."""
    import re

    m = re.search(LIVE_STEP.format(name=name), page.locator('[data-testid="stMain"]').inner_text())
    return int(m.group(1)) if m else None


def live_delays(page, run_dir: Path, refreshes: int = 5, timeout_s: float = 60) -> list[float]:
    """Watch the Live page's status line for ``refreshes`` changes of the shown step; for each,
    the delay of the oldest step it newly shows: seconds from that step's commit to the page."""
    delays: list[float] = []
    last = shown_step(page, run_dir.name)
    deadline = time.time() + timeout_s
    while len(delays) < refreshes and time.time() < deadline:
        now_step = shown_step(page, run_dir.name)
        now = time.time()
        if now_step is not None and (last is None or now_step > last):
            if last is not None:
                delays.append(now - step_written_at(run_dir, last + 1))
            last = now_step
        time.sleep(0.05)
    return delays


def page_paths(runs: Path) -> list[tuple[str, str]]:
    """(name, URL path) of every page for a store, opened on its newest DINO run with a
    checkpoint (outside ablation groups if there is one); the default page (Runs, when there are runs) lives at "/"."""
    from trainer.store import list_checkpoints, list_runs

    infos = sorted(list_runs(runs), key=lambda r: bool(r.get("group")))  # a run of its own first
    dino = next((r["run_id"] for r in infos if r.get("method") == "dino" and list_checkpoints(r["dir"])),
                infos[0]["run_id"] if infos else "")
    return [("runs", ""), ("live", f"live?run={dino}"), ("compare", "compare"),
            ("inspect", f"inspect?run={dino}&tab=Embeddings"),
            ("inspect-attention", f"inspect?run={dino}&tab=Attention"),
            ("inspect-scores", f"inspect?run={dino}&tab=Scores"), ("guide", "guide")]


def _stop(proc: subprocess.Popen) -> None:
    """Terminate a helper process, killing it if it does not exit within 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
