"""Is a run's trainer still alive? Answered from any host, without signalling anything.

The writer records who it is in run.json: ``pid``, ``pid_start`` (the process's start time in
clock ticks since boot, field 22 of ``/proc/<pid>/stat``), ``boot_id`` and ``host``. A pid
is recycled; the pair (pid, start time) within one boot is not, so on the writer's host a
reader knows for sure whether that very process still runs, and the dashboard's Stop can
never signal another program that inherited the pid.

From another host no process table can be read, so the writer also beats: a thread rewrites
``<run>/heartbeat`` (its wall time) every ``HEARTBEAT_EVERY_S`` seconds. A running run whose
newest sign of life is older than ``LOST_AFTER_S`` reads as stopped ("lost").
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

HEARTBEAT_NAME = "heartbeat"
HEARTBEAT_EVERY_S = 10.0  # how often the writer beats
LOST_AFTER_S = 120.0  # no beat for this long (clock skew and slow shared disks included): lost
_HAS_PROC = os.path.exists("/proc/self/stat")


def process_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None if there is no such process
    (or it is a zombie: exited, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()  # the name in (...) may hold spaces
    if not fields or fields[0] == b"Z":
        return None
    return int(fields[19])  # field 22 of the whole line: starttime


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def identity() -> dict[str, Any]:
    """The run.json fields that name this process: pid, pid_start, boot_id, host."""
    pid = os.getpid()
    return {"pid": pid, "pid_start": process_start(pid), "boot_id": boot_id(), "host": socket.gethostname()}


def is_same_process(info: dict[str, Any]) -> bool:
    """True only if the process that ``info`` (run.json) names runs now on this host: same
    host, same boot, same pid and the same start time. Runs written before ``pid_start`` was
    recorded fall back to "the pid exists and runs ``-m trainer``"."""
    pid = info.get("pid")
    if info.get("host") != socket.gethostname() or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if info.get("boot_id") and info.get("boot_id") != boot_id():
        return False  # the host rebooted since: that process is gone whatever its pid now is
    if not _HAS_PROC:  # no process table to read (not Linux): the pid existing is all we know
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # it exists, owned by someone else
        return True
    start = process_start(pid)
    if start is None:
        return False
    if isinstance(info.get("pid_start"), int):
        return start == info["pid_start"]
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(a == b"-m" and b == b"trainer" for a, b in zip(argv, argv[1:]))


def last_sign_of_life(run_dir: Path | str) -> float | None:
    """Newest wall time at which the writer showed activity: its heartbeat, or failing that the
    modification time of run.json or the metrics database (runs written before heartbeats)."""
    d = Path(run_dir)
    times = []
    try:
        times.append(float(json.loads((d / HEARTBEAT_NAME).read_text())["time"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    for name in (HEARTBEAT_NAME, "run.json", "metrics.sqlite", "metrics.sqlite-wal"):
        try:
            times.append(os.stat(d / name).st_mtime)
        except OSError:
            pass
    return max(times) if times else None


def running_status(info: dict[str, Any], run_dir: Path | str, now: float | None = None) -> tuple[str, str]:
    """(status, reason) of a run whose run.json says ``running``: still ``running``, or
    ``stopped`` with why, judged by the process table on its host and the heartbeat elsewhere."""
    if info.get("host") == socket.gethostname():
        if is_same_process(info):
            return "running", ""
        return "stopped", "the training process is gone (killed?); resume it to continue"
    seen = last_sign_of_life(run_dir)
    age = (now if now is not None else time.time()) - seen if seen is not None else None
    if age is not None and age <= LOST_AFTER_S:
        return "running", ""
    since = f"for {age / 60:.0f} min" if age is not None else "ever"
    return "stopped", (f"lost: no heartbeat from host {info.get('host')} {since}; the trainer died or its host "
                       "is unreachable. Resume it to continue")


class Heartbeat:
    """A daemon thread that rewrites ``<run>/heartbeat`` every ``every_s`` seconds until
    :meth:`stop`. Write errors (a full disk) are ignored: the trainer reports those itself."""

    def __init__(self, run_dir: Path, every_s: float | None = None):
        self.path = Path(run_dir) / HEARTBEAT_NAME
        self.every_s = HEARTBEAT_EVERY_S if every_s is None else every_s
        self._stop = threading.Event()
        self.beat()
        self._thread = threading.Thread(target=self._run, name="sslscope-heartbeat", daemon=True)
        self._thread.start()

    def beat(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        try:
            tmp.write_text(json.dumps({"time": time.time(), "pid": os.getpid(), "host": socket.gethostname()}))
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.beat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
