"""Start and stop training runs from the dashboard.

A run is the same ``python -m trainer ...`` a user would type: an argument list (never a
shell string) whose values are validated through ``Config.validate()`` first, started
detached (its own session, so it outlives a browser tab and the app's reruns) with its output
in ``<runs dir>/.launches/<name>.log``. Stopping sends SIGTERM to the trainer that run.json
names (pid and process start time); the trainer checkpoints, marks the run ``stopped`` and
exits with 143. A run that belongs to a launch still in progress (the demo, an ablation:
``trainer.launcher``'s plan file, which names its launcher the same way) is stopped by stopping
its launcher, so that the whole launch ends and no further run of it starts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

import trainer
from trainer.config import METHODS, ConfigError
from trainer.launcher import LAUNCH_DIR, read_plans
from trainer.liveness import is_same_process
from trainer.store import StoreError, read_run_info, read_scalars

_REPO = Path(trainer.__file__).resolve().parents[1]
_PROCS: dict[int, subprocess.Popen] = {}  # our children, polled so that none stays a zombie


class LaunchError(ValueError):
    """Arguments refused before anything starts; the message says what to change."""


@dataclass(frozen=True)
class Launch:
    """A started command: its pid, argv and log file."""

    pid: int
    argv: list[str]
    log: Path


def validate(argv: list[str]) -> list[str]:
    """Check ``argv`` exactly as the trainer's CLI will (its parser, then the config built
    from it and validated), so a bad value is refused here, in the page, before any start."""
    from trainer.__main__ import ablate_base, build_parser, config_from_args

    try:
        args = build_parser().parse_args(argv)
    except SystemExit:  # argparse exits on a bad flag; its message went to the server log
        raise LaunchError(f"the trainer refuses these arguments: {' '.join(argv)}") from None
    try:
        if args.command == "ablate":
            ablate_base(args)  # the study's own method and scale, and whether this trainer can run it
        else:
            config_from_args(args)
    except ConfigError as e:
        raise LaunchError(str(e)) from None
    return argv


def train_argv(root: Path, method: str, data: str, steps: int, name: str, overrides: list[str],
               preset: str = "") -> list[str]:
    """The validated ``python -m trainer train`` argument list for one run (``preset``: a
    ``--preset`` recipe, "" for none)."""
    if method not in METHODS:
        raise LaunchError(f"method '{method}' is not one of {', '.join(METHODS)}")
    if name and (root / name / "run.json").exists():
        raise LaunchError(f"a run named '{name}' already exists in {root}; pick another name")
    argv = ["train", "--method", method, "--data", data, "--steps", str(int(steps)), "--runs-dir", str(root)]
    if name:
        argv += ["--name", name]
    if preset:
        argv += ["--preset", preset]
    for s in (s.strip() for s in overrides):
        if s:
            argv += ["--set", s]
    return validate(argv)


def demo_argv(root: Path) -> list[str]:
    """``python -m trainer demo``: short DINO, MAE, I-JEPA runs and the centering/sharpening grid."""
    return validate(["demo", "--runs-dir", str(root)])


def ablate_argv(root: Path, steps: int | None, study: str = "centering-sharpening", seeds: int | None = None,
                parallel: int | None = None) -> list[str]:
    """``python -m trainer ablate STUDY``: one study as one group (``steps`` None: the study's default)."""
    argv = ["ablate", study, "--runs-dir", str(root)]
    for flag, v in (("--steps", steps), ("--seeds", seeds), ("--parallel", parallel)):
        if v is not None:
            argv += [flag, str(int(v))]
    return validate(argv)


def start(root: Path, argv: list[str], label: str) -> Launch:
    """Start ``python -m trainer <argv>`` detached, output to a log file under ``root``."""
    logs = root / LAUNCH_DIR
    try:
        logs.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LaunchError(f"cannot create '{logs}' ({e.strerror}); choose a writable runs directory") from None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label) or "run"
    log = logs / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}.log"
    cmd = [sys.executable, "-m", "trainer", *argv]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=_REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    _PROCS[proc.pid] = proc
    reap()
    return Launch(proc.pid, cmd, log)


def reap() -> dict[int, int]:
    """Collect the exit codes of finished children (pid -> code) so none stays a zombie."""
    done = {}
    for pid, proc in list(_PROCS.items()):
        code = proc.poll()
        if code is not None:
            done[pid] = code
            del _PROCS[pid]
    return done


def recent_logs(root: Path, limit: int = 5) -> list[Path]:
    """The newest launch logs, newest first."""
    d = root / LAUNCH_DIR
    if not d.is_dir():
        return []
    return sorted(d.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True)[:limit]


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log (progress bars' carriage returns become line breaks)."""
    try:
        text = path.read_bytes()[-20000:].decode(errors="replace")
    except OSError as e:
        return f"(log unreadable: {e.strerror})"
    return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])


def latest_launch(root: Path) -> dict[str, Any] | None:
    """The newest launch plan (demo or ablation) under ``root``, or None."""
    plans = read_plans(root)
    return plans[0] if plans else None


def launch_of(root: Path, run_id: str) -> dict[str, Any] | None:
    """The launch still in progress that planned ``run_id``, or None."""
    return next((p for p in read_plans(root) if p["alive"] and run_id in {r["run_id"] for r in p["runs"]}), None)


def launch_progress(root: Path, plan: dict[str, Any]) -> pd.DataFrame:
    """One row per planned run, in launch order: status (a run without a folder is
    ``waiting`` while its launcher runs, else ``not started``), step, steps, progress."""
    rows = []
    for r in plan["runs"]:
        steps = int(r.get("steps") or 0)
        try:
            info = read_run_info(root / r["run_id"])
        except StoreError:
            info = None
        if info is None:
            status, step = ("waiting" if plan["alive"] else "not started"), 0
        else:
            logged = read_scalars(info["dir"], names=["train/loss"])[0]["step"]
            status = info.get("status", "?")
            step = max(int(info.get("step") or 0), int(logged.max()) if len(logged) else 0)
        rows.append({"run": r["run_id"], "method": r.get("method", "?"), "status": status, "step": step,
                     "steps": steps, "progress": step / steps if steps else None})
    return pd.DataFrame(rows, columns=["run", "method", "status", "step", "steps", "progress"])


def progress_summary(plan: dict[str, Any], table: pd.DataFrame) -> str:
    """One line: how far the launch has got, e.g. '4 of 7 runs training (step 60 of 150 on
    average), 0 finished, 3 waiting; started 40 s ago'."""
    counts = table["status"].value_counts().to_dict()
    training = table[table["status"] == "running"]
    head = f"{len(training)} of {len(table)} runs training"
    if len(training):
        head += f" (step {training['step'].mean():.0f} of {training['steps'].max()} on average)"
    parts = [head] + [f"{counts[s]} {s}" for s in ("finished", "stopped", "failed", "waiting", "not started")
                      if counts.get(s)]
    started = float(plan.get("started") or time.time())
    if plan["alive"]:
        when = f"started {time.time() - started:.0f} s ago"
    else:
        when = f"ended after {float(plan.get('ended') or started) - started:.0f} s"
    return f"{', '.join(parts)}; {when}"


def stop_launch(plan: dict[str, Any]) -> str:
    """SIGTERM to a launch's launcher: its runs in progress checkpoint and are marked stopped,
    the runs not yet started never start."""
    pid = plan.get("pid")
    if not plan.get("alive") or not isinstance(pid, int):
        raise LaunchError(f"the {plan.get('command') or 'launch'} '{plan.get('name')}' has already ended")
    if not is_same_process(plan):
        raise LaunchError(f"process {pid} of launch '{plan.get('name')}' is not its launcher any more")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return f"the {plan.get('command') or 'launch'} '{plan['name']}' had already ended"
    except PermissionError:
        raise LaunchError(f"no permission to stop process {pid}; stop it as its owner") from None
    reap()
    return (f"asked the {plan.get('command') or 'launch'} '{plan['name']}' (pid {pid}) to stop: its runs in "
            "progress save a checkpoint, the ones not started yet will not start")


def stop_runs(root: Path, run_ids: list[str]) -> list[str]:
    """Stop each run, or the launch it belongs to (once per launch); one line per action.
    Raises nothing: refusals come back as lines too, prefixed 'cannot stop'."""
    done: set[str] = set()
    lines = []
    for run_id in run_ids:
        plan = launch_of(root, run_id)
        try:
            if plan is not None:
                if plan["name"] not in done:
                    done.add(plan["name"])
                    lines.append(stop_launch(plan))
            else:
                lines.append(stop(root / run_id))
        except LaunchError as e:
            lines.append(f"cannot stop '{run_id}': {e}")
    return lines


def stop(run_dir: Path | str) -> str:
    """Ask a running trainer to stop (SIGTERM; it checkpoints and marks the run stopped).
    Returns what happened in one line. Only the very process that run.json names is signalled
    (same host and boot, same pid and process start time: ``trainer.liveness``), never a
    program that inherited a recycled pid; runs of other hosts are refused."""
    try:
        info = read_run_info(run_dir)
    except StoreError as e:
        raise LaunchError(str(e)) from None
    if info.get("status") != "running":
        raise LaunchError(f"run '{info.get('run_id')}' is {info.get('status')}, not running")
    if info.get("host") != socket.gethostname():
        raise LaunchError(f"run '{info.get('run_id')}' runs on host {info.get('host')}; stop it there")
    pid = info.get("pid")
    if not is_same_process(info):
        raise LaunchError(f"process {pid} of run '{info.get('run_id')}' is not its trainer any more")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return f"run '{info['run_id']}' had already ended"
    except PermissionError:
        raise LaunchError(f"no permission to stop process {pid}; stop it as its owner") from None
    reap()
    return f"asked run '{info['run_id']}' (pid {pid}) to stop; it saves a checkpoint first"
