"""One writer per run: an OS lock on ``<run>/writer.lock``, held for the writer's lifetime.

A POSIX record lock (``fcntl.lockf``) rather than ``flock``: it belongs to the process that
took it, so the DataLoader workers a trainer forks do not inherit it, and the kernel drops it
the moment that process ends, however it ends (SIGKILL included). Two rules follow from
POSIX locks and are kept here: no other code opens the lock file (closing any descriptor of
it would release the lock), and a second lock of the same run inside one process is refused
by a registry, since the kernel would grant it to the same owner.

The file also records who holds it (pid, host, since) so that a refusal can name the writer.
Readers never touch it; they tell a live run from a dead one by ``trainer.liveness``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = "writer.lock"
_HELD: dict[str, RunLock] = {}  # realpath of the lock file -> the lock this process holds


class LockError(RuntimeError):
    """The run is being written by another process; the message names it."""


class RunLock:
    """The single-writer lock of one run folder. Use :meth:`acquire`; release with
    :meth:`release` (idempotent) or by exiting the process."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, run_dir: Path | str) -> RunLock:
        """Take the lock of ``run_dir`` without waiting; :class:`LockError` if another writer
        holds it, ``OSError`` if the folder cannot hold a lock file (read-only, missing)."""
        path = Path(run_dir) / LOCK_NAME
        key = os.path.realpath(path)
        if key in _HELD:
            raise LockError(f"run '{run_dir}' is already being written by this process; close that writer first")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _holder(fd)
            os.close(fd)
            if e.errno in (errno.EACCES, errno.EAGAIN):
                raise LockError(f"run '{run_dir}' is still being written by {holder}; stop that process "
                                "first (dashboard Stop, or kill -TERM its pid) or wait for it to end") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode(), 0)
        lock = cls(path, fd)
        _HELD[key] = lock
        return lock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        _HELD.pop(os.path.realpath(self.path), None)
        fd, self._fd = self._fd, None
        os.close(fd)  # closing drops the POSIX lock


def _holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it (best effort: it may be mid-write)."""
    try:
        d = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"process {int(d['pid'])} on host {d['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
