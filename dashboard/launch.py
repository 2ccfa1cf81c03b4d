"""Start and stop training runs from the dashboard.

A run is the same ``python -m trainer ...`` a user would type: an argument list (never a
shell string) whose values are validated through ``Config.validate()`` first, started
detached (its own session, so it outlives a browser tab and the app's reruns) with its output
in ``<runs dir>/.launches/<name>.log``. Stopping sends SIGTERM to the trainer that run.json
names (pid and process start time); the trainer checkpoints, marks the run ``stopped`` and
exits with 143.
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

import trainer
from trainer.config import METHODS, ConfigError
from trainer.liveness import is_same_process
from trainer.store import StoreError, read_run_info

LAUNCH_DIR = ".launches"  # no run.json inside, so list_runs never mistakes it for a run
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
    from trainer.__main__ import build_parser, config_from_args

    try:
        args = build_parser().parse_args(argv)
    except SystemExit:  # argparse exits on a bad flag; its message went to the server log
        raise LaunchError(f"the trainer refuses these arguments: {' '.join(argv)}") from None
    try:
        config_from_args(args, method="dino" if args.command == "ablate" else None)
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


def ablate_argv(root: Path, steps: int) -> list[str]:
    """``python -m trainer ablate centering-sharpening``: the 2 x 2 grid as one group."""
    return validate(["ablate", "centering-sharpening", "--steps", str(int(steps)), "--runs-dir", str(root)])


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
