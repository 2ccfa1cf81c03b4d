"""How soon the demo shows something: start it as the dashboard's "Start the demo" does and time,
from the click, the first logged row, the first loss curve point, all four arms of the grid with
loss rows (what Compare needs), and the end of the whole demo.

    python benchmarks/demo_timing.py [--runs-dir DIR] [--peer]

Prints the machine's load (``os.getloadavg``) before and after, since other work on the cores
stretches every figure, and each time as a ratio to the target of issue 13 (first curves 20 s,
four arms 60 s, the whole demo 180 s on an idle 2-core machine). ``--peer`` first times the
demo as it was before (one run after another in one process, 200 steps, a row every 10 steps;
197 s on an idle 2-core machine), so that on a busy machine the ratio of the two still tells.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard import launch  # noqa: E402
from trainer.launcher import read_plans, usable_cores  # noqa: E402
from trainer.store import list_runs, read_scalars  # noqa: E402

TARGETS = {"first curve point": 20.0, "four arms in Compare": 60.0, "whole demo": 180.0}
PEER = ["--parallel", "1", "--steps", "200", "--set", "run.log_every=10"]  # the demo before issue 13
PEER_IDLE_S = 197.0  # its whole time on an idle 2-core machine (issue 13)


def _has_rows(run_dir: str, name: str | None = None) -> bool:
    try:
        cols, _ = read_scalars(run_dir, names=[name] if name else None)
    except Exception:  # noqa: BLE001 - a database being created reads as "not yet"
        return False
    return len(cols["step"]) > 0


def _children_cpu() -> float:
    """CPU seconds (user + system) of every finished child process so far, grandchildren included."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_demo(root: Path, extra: list[str]) -> dict[str, float]:
    """Seconds from the start to each milestone, and the runs' final statuses."""
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    started = launch.start(root, launch.validate(["demo", "--runs-dir", str(root), *extra]), "demo")
    marks: dict[str, float] = {}
    while True:
        now = time.perf_counter() - t0
        runs = list_runs(root)
        if "first row" not in marks and any(_has_rows(r["dir"]) for r in runs):
            marks["first row"] = now
        if "first curve point" not in marks and any(_has_rows(r["dir"], "train/loss") for r in runs):
            marks["first curve point"] = now
        arms = [r for r in runs if (r.get("group") or "").startswith("demo-ablation-")]
        if "four arms in Compare" not in marks and len(arms) == 4 and all(_has_rows(r["dir"], "train/loss")
                                                                         for r in arms):
            marks["four arms in Compare"] = now
        if started.pid in launch.reap():
            marks["whole demo"] = now
            break
        time.sleep(0.25)
    marks["cpu"] = _children_cpu() - cpu0
    statuses = sorted(r.get("status", "?") for r in list_runs(root))
    plan = read_plans(root)[0]
    print(f"  {len(statuses)} runs: {', '.join(statuses)}; {plan['parallel']} at a time, "
          f"{plan['threads'] or 'all'} thread(s) each")
    return marks


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs-dir", help="where the demo writes (default: a temporary folder, removed after)")
    p.add_argument("--peer", action="store_true", help="first time the demo as it was before, as the peer")
    args = p.parse_args()
    print(f"{usable_cores()} cores; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    variants = ([("before: one after another, 200 steps", PEER)] if args.peer else []) + [("side by side (now)", [])]
    results = {}
    for label, extra in variants:
        tmp = Path(args.runs_dir) if args.runs_dir else Path(tempfile.mkdtemp(prefix="demo-timing-"))
        root = tmp / label.split()[0].strip(":")
        print(f"{label}: python -m trainer demo {' '.join(extra)} -> {root}")
        results[label] = marks = time_demo(root, extra)
        cpu = marks.pop("cpu")
        for k, v in marks.items():
            target = TARGETS.get(k)
            print(f"  {k:22s} {v:6.1f} s" + (f"  ({v / target:.2f} x the {target:.0f} s target)" if target else ""))
        print(f"  CPU time of the demo    {cpu:6.1f} s: on {usable_cores()} idle cores it needs at least "
              f"{cpu / usable_cores():.1f} s")
        if not args.runs_dir:
            shutil.rmtree(tmp, ignore_errors=True)
    if len(results) == 2:
        before, now = results.values()
        for k in ("first curve point", "whole demo"):  # the peer runs the arms first too: no "before" for them
            if k in before and k in now:
                print(f"{k}: now {now[k]:.1f} s, before {before[k]:.1f} s: {before[k] / now[k]:.2f} x faster")
        ratio = now["whole demo"] / before["whole demo"]
        print(f"whole demo: {ratio:.2f} x the old demo's time, i.e. ~{ratio * PEER_IDLE_S:.0f} s on an idle 2-core "
              f"machine, where the old one took {PEER_IDLE_S:.0f} s")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
