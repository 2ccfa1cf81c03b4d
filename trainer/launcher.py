"""Several runs from one command (``python -m trainer demo | ablate``), in turn or side by side.

One SIGTERM or Ctrl-C stops the whole launch: the runs in progress checkpoint and are marked
``stopped`` (in this process, or forwarded to each child process), and the runs not yet started
never start -- no folder is created for them, and the launcher names them on stderr.

Side by side, each run is a child ``python -m trainer train`` with ``cores / parallel`` threads
(at least one): small CPU models use one core each better than two cores one run, so a 2-core
machine trains the four arms of the centering x sharpening grid together.

The launch is described in ``<runs dir>/.launches/<name>.plan.json`` (its pid, the runs in
order with their steps, when it ended, which runs it never started), so the dashboard can say
how far a launch has got, including the runs still waiting, and stop the launch as a whole.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from trainer.config import Config
from trainer.liveness import identity, is_same_process
from trainer.stopping import StopFlag, stop_signals

LAUNCH_DIR = ".launches"  # beside the runs; no run.json inside, so it is never taken for a run
POLL_S = 0.2  # how often the launcher looks at its children


def usable_cores() -> int:
    """Cores this process may run on (``taskset`` and container CPU sets count, unlike cpu_count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_run(parallel: int) -> int:
    """Intra-op threads of each of ``parallel`` runs sharing this machine's cores."""
    return max(1, usable_cores() // max(parallel, 1))


def train_argv(cfg: Config) -> list[str]:
    """argv that trains ``cfg`` in a fresh process (every field passed, so nothing depends on defaults)."""
    sets = [f"{sec}.{k}={v}" for sec, d in cfg.to_dict().items() for k, v in d.items()]
    return [sys.executable, "-m", "trainer", "train"] + [x for s in sets for x in ("--set", s)]


def run_dir_of(cfg: Config) -> Path:
    return Path(cfg.run.runs_dir or os.environ.get("SSLSCOPE_RUNS", "runs")) / cfg.run.name


def resume_argv(cfg: Config) -> list[str]:
    """argv that resumes the existing run of ``cfg`` from its newest checkpoint, in a fresh process."""
    return [sys.executable, "-m", "trainer", "resume", str(run_dir_of(cfg))]


class Plan:
    """The plan file of one launch, written once the launch has started, again when it ends."""

    def __init__(self, cfgs: list[Config], name: str, command: str, parallel: int,
                 resume: frozenset[str] = frozenset()):
        root = Path(cfgs[0].run.runs_dir or os.environ.get("SSLSCOPE_RUNS", "runs")) if cfgs else Path("runs")
        self.path = root / LAUNCH_DIR / f"{name}.plan.json"
        self.info: dict[str, Any] = {
            "name": name, "command": command, **identity(),  # pid, pid_start, boot_id, host
            "parallel": parallel, "threads": threads_per_run(parallel) if parallel > 1 else None,
            "started": time.time(), "ended": None, "stop_reason": "", "not_started": [],
            "runs": [{"run_id": c.run.name, "method": c.run.method, "steps": c.optim.steps,
                      "resume": c.run.name in resume} for c in cfgs],
        }

    def write(self) -> None:
        from trainer.store import atomic_write_json  # imports torch: after the first runs have started

        try:
            atomic_write_json(self.path, self.info)
        except OSError:  # the plan only informs the dashboard; training goes on without it
            pass

    def end(self, stop: StopFlag, not_started: list[Config]) -> None:
        self.info.update(ended=time.time(), stop_reason=stop.reason, not_started=[c.run.name for c in not_started])
        self.write()


def read_plans(root: Path | str) -> list[dict[str, Any]]:
    """Every readable launch plan under ``root``, newest first, with ``alive``: whether its
    launcher still runs (on this host; a plan from elsewhere counts as ended)."""
    d = Path(root) / LAUNCH_DIR
    plans = []
    for p in d.glob("*.plan.json") if d.is_dir() else []:
        try:
            info = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(info, dict) or not isinstance(info.get("runs"), list):
            continue
        info["alive"] = info.get("ended") is None and is_same_process(info)
        info["path"] = str(p)
        plans.append(info)
    return sorted(plans, key=lambda i: i.get("started") or 0, reverse=True)


def _not_started(cfgs: list[Config], stop: StopFlag) -> list[Config]:
    if cfgs:
        print(f"== {stop.reason}: not started: {', '.join(c.run.name for c in cfgs)}", file=sys.stderr, flush=True)
    return cfgs


def run_many(cfgs: list[Config], parallel: int, name: str = "", command: str = "",
             resume: Collection[str] = ()) -> int:
    """Train ``cfgs`` in list order, ``parallel`` at a time (1: in this process); returns the
    exit code of the launch: 0 when every run finished, 1 when one failed, 128 + signal (130,
    143) when a signal stopped every run in progress and started no other. ``name`` (e.g. the
    group) names the plan file; none is written without it. Runs named in ``resume`` exist
    already (an interrupted study): they continue from their newest checkpoint instead."""
    stop = StopFlag()
    resume = frozenset(resume)
    with stop_signals(stop):
        plan = Plan(cfgs, name, command, parallel, resume) if name else None
        not_started: list[Config] = []
        try:
            if parallel <= 1:
                if plan is not None:
                    plan.write()
                failures = _in_turn(cfgs, stop, not_started, resume)
            else:
                failures = _side_by_side(cfgs, parallel, stop, not_started, plan, resume)
        finally:
            if plan is not None:
                plan.end(stop, not_started)
        return stop.exit_code if stop.reason else int(failures > 0)


def _in_turn(cfgs: list[Config], stop: StopFlag, not_started: list[Config], resume: frozenset[str]) -> int:
    from trainer.loop import RunStopped, train
    from trainer.loop import resume as resume_run

    failures = 0
    for i, cfg in enumerate(cfgs):
        if stop.reason:
            not_started += _not_started(cfgs[i:], stop)
            break
        again = cfg.run.name in resume
        print(f"== {cfg.run.name}" + (" (resumed)" if again else ""), flush=True)
        try:
            if again:
                resume_run(run_dir_of(cfg), progress=True, stop=stop)
            else:
                train(cfg, progress=True, stop=stop)  # the same flag: a signal mid-run ends the launch too
        except RunStopped as e:
            print(str(e), file=sys.stderr)
            not_started += _not_started(cfgs[i + 1:], stop)
            break
        except FloatingPointError as e:
            print(f"run {cfg.run.name} failed: {e}", file=sys.stderr)
            failures += 1
    return failures


def _side_by_side(cfgs: list[Config], parallel: int, stop: StopFlag, not_started: list[Config],
                  plan: Plan | None, resume: frozenset[str]) -> int:
    threads = str(threads_per_run(parallel))
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONUNBUFFERED="1")
    pending, running, told, failures = list(cfgs), [], set(), 0
    try:
        while pending or running:
            if stop.reason and pending:
                not_started += _not_started(pending, stop)
                pending = []
            while pending and len(running) < parallel:
                cfg = pending.pop(0)
                again = cfg.run.name in resume
                print(f"== {'resumed' if again else 'started'} {cfg.run.name} "
                      f"({threads} thread{'s' * (threads != '1')})", flush=True)
                # own process group: a terminal's Ctrl-C reaches the launcher alone, which
                # forwards SIGTERM; a child still importing dies before it has made a folder
                argv = resume_argv(cfg) if again else train_argv(cfg)
                running.append((cfg, subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, process_group=0)))
            if plan is not None and not plan.path.exists():
                plan.write()
            time.sleep(POLL_S)
            for cfg, proc in list(running):
                if stop.reason and proc.pid not in told:  # it checkpoints and marks its run stopped
                    proc.send_signal(signal.SIGTERM)
                    told.add(proc.pid)
                code = proc.poll()
                if code is not None:
                    running.remove((cfg, proc))
                    # a child stopped by the forwarded signal exits 128 + SIGTERM (or dies of it)
                    failures += code != 0 and not (stop.reason and code in (-signal.SIGTERM, 128 + signal.SIGTERM))
                    print(f"== finished {cfg.run.name} (exit {code})", flush=True)
    finally:  # an error in the launcher itself must not leave children training unwatched
        for _, proc in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait()
    return failures
