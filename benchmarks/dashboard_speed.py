"""Dashboard speed, measured in the browser (Chromium through playwright).

1. Time to a fully rendered page, for each page, with the analysis cached (each page is
   opened once to warm the caches, then timed ``--repeats`` times): from navigation to the
   last change of the page (title, no skeleton or stale element, every plotly chart drawn).
   Printed beside a bare Streamlit page (a title and a caption) in the same browser -- the
   floor that Streamlit itself costs -- and against the aim of 2 s.
2. Delay from a metric written to it shown on the Live page, while a separate process writes
   a step every 0.25 s: for each refresh, seconds from the commit of the oldest newly shown
   step to the page showing it. Aim: under 3 s.

    python benchmarks/dashboard_speed.py                 # trains a tiny store first (1-2 min)
    python benchmarks/dashboard_speed.py --runs runs     # or time your own runs
    python benchmarks/dashboard_speed.py --live-cpu 60 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.dashboard.server import (  # noqa: E402
    browser_page,
    live_delays,
    page_paths,
    shown_step,
    streamlit_server,
    wait_rendered,
    writing_run,
)

PAGE_AIM_S, LIVE_AIM_S = 2.0, 3.0
_BARE = "import streamlit as st\nst.title('Bare')\nst.sidebar.caption('trained and inspected')\n"


def time_to_rendered(page, url: str) -> float:
    """Seconds from navigating to ``url`` to its last change on screen."""
    page.goto("about:blank")
    t0 = time.perf_counter()
    page.goto(url, wait_until="commit")
    navigated = time.perf_counter() - t0
    return navigated + wait_rendered(page, timeout_s=120)


def measure(url: str, paths: list[tuple[str, str]], repeats: int) -> dict[str, float]:
    """Median time to a rendered page per (name, path), after one warm-up visit each."""
    out = {}
    with browser_page() as page:
        for name, path in paths:
            page.goto(f"{url}/{path}")
            wait_rendered(page, timeout_s=300)  # warm-up: analysis computed and cached once
            out[name] = statistics.median(time_to_rendered(page, f"{url}/{path}") for _ in range(repeats))
    return out


def bare_page_time(repeats: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        app = Path(d) / "bare.py"
        app.write_text(_BARE)
        with streamlit_server(Path(d), script=app) as url:
            return measure(url, [("bare", "")], repeats)["bare"]


def live_delay(tmp: Path, refreshes: int) -> list[float]:
    root = tmp / "live-runs"
    with writing_run(root) as run_dir, streamlit_server(root) as url, browser_page() as page:
        page.goto(f"{url}/live?run={run_dir.name}")
        wait_rendered(page, timeout_s=300)
        deadline = time.time() + 60
        while shown_step(page, run_dir.name) is None and time.time() < deadline:
            time.sleep(0.1)
        return live_delays(page, run_dir, refreshes)


def _descendants_cpu_s(needle: str) -> float:
    """CPU seconds (user + system) of this process's descendants whose command line holds ``needle``."""
    tick = os.sysconf("SC_CLK_TCK")
    procs: dict[int, tuple[int, float, str]] = {}  # pid -> (parent, cpu s, command line)
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        procs[int(d.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, cmd)
    mine, grew = {os.getpid()}, True
    while grew:
        new = {pid for pid, (parent, _, _) in procs.items() if parent in mine} - mine
        mine |= new
        grew = bool(new)
    return sum(cpu for pid, (_, cpu, cmd) in procs.items() if pid in mine and needle in cmd)


def live_server_cpu(tmp: Path, seconds: float) -> dict[str, float]:
    """The server's CPU share of one core while the Live page follows a writing run."""
    root = tmp / "cpu-runs"
    with writing_run(root) as run_dir, streamlit_server(root) as url, browser_page() as page:
        page.goto(f"{url}/live?run={run_dir.name}")
        wait_rendered(page, timeout_s=300)
        deadline = time.time() + 60
        while shown_step(page, run_dir.name) is None and time.time() < deadline:
            time.sleep(0.1)
        first, c0, t0 = shown_step(page, run_dir.name), _descendants_cpu_s("streamlit"), time.time()
        time.sleep(seconds)  # the page refreshes itself (its fragments); the user only watches
        c1, t1, last = _descendants_cpu_s("streamlit"), time.time(), shown_step(page, run_dir.name)
    return {"server_cpu_share": (c1 - c0) / (t1 - t0), "seconds": t1 - t0,
            "steps_followed": float((last or 0) - (first or 0))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, help="runs directory to time (default: train a tiny one)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--refreshes", type=int, default=8)
    p.add_argument("--live-cpu", type=float, metavar="S", help="only: server CPU while Live follows a run S s")
    p.add_argument("--json", type=Path, help="with --live-cpu: write the figures here")
    args = p.parse_args()
    if args.live_cpu:
        with tempfile.TemporaryDirectory() as tmp:
            r = live_server_cpu(Path(tmp), args.live_cpu)
        print(f"Live page following a run for {r['seconds']:.0f} s ({r['steps_followed']:.0f} steps shown): "
              f"server CPU {r['server_cpu_share']:.1%} of one core (aim under 15%)")
        if args.json:
            args.json.write_text(json.dumps(r, indent=2))
        return
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs
        if runs is None:
            from tests.dashboard.fixture_runs import train_store

            t = time.perf_counter()
            runs = train_store(Path(tmp) / "runs", steps=10, arm_steps=6)
            print(f"trained a tiny store (7 runs) in {time.perf_counter() - t:.0f} s")
        bare = bare_page_time(args.repeats)
        with streamlit_server(runs) as url:
            times = measure(url, page_paths(runs), args.repeats)
        print(f"\ntime to a fully rendered page (median of {args.repeats}, caches warm); "
              f"bare Streamlit page: {bare:.2f} s")
        print(f"{'page':22s} {'seconds':>8s} {'x bare':>8s} {'x aim 2 s':>10s}")
        for name, s in times.items():
            print(f"{name:22s} {s:8.2f} {s / bare:8.2f} {s / PAGE_AIM_S:10.2f}")
        delays = live_delay(Path(tmp), args.refreshes)
    if delays:
        print(f"\nLive page, metric written -> shown over {len(delays)} refreshes: "
              f"mean {statistics.mean(delays):.2f} s, "
              f"max {max(delays):.2f} s (x aim 3 s: {max(delays) / LIVE_AIM_S:.2f})")
    else:
        print("\nLive page showed no new step within a minute")


if __name__ == "__main__":
    main()
