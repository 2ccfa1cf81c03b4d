"""The child process of the SIGKILL test: trains or resumes a run and, when armed, SIGKILLs
itself at an exact point inside a write (a checkpoint file half-written, just before a rename,
between the unlinks of a prune, inside an uncommitted metrics transaction, ...).

Imported by the forkserver once (with torch and the trainer), so each child starts in
milliseconds instead of an interpreter start-up."""

from __future__ import annotations

import os
import pathlib
import signal
from pathlib import Path

import torch

from trainer import store
from trainer.config import Config
from trainer.loop import resume, train

POINTS = ("rename", "unlink", "torch.save", "safetensors", "fsync", "sqlite")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str, nth: int) -> None:
    """SIGKILL this process at the ``nth`` time it reaches ``point`` (one of ``POINTS``)."""
    count = [0]

    def hit() -> bool:
        count[0] += 1
        return count[0] == nth

    if point == "rename":  # just before a file is renamed into checkpoints/
        real_replace = os.replace

        def replace(src, dst, *a, **k):
            if "checkpoints" in str(dst) and hit():
                _die()
            return real_replace(src, dst, *a, **k)

        os.replace = replace
    elif point == "unlink":  # between the unlinks of a prune or a truncation
        real_unlink = pathlib.Path.unlink

        def unlink(self, *a, **k):
            if "checkpoints" in str(self) and self.exists() and hit():
                _die()
            return real_unlink(self, *a, **k)

        pathlib.Path.unlink = unlink
    elif point == "torch.save":  # the optimiser state half-written
        real_save = torch.save

        def save(obj, f, *a, **k):
            real_save(obj, f, *a, **k)
            if hit():
                f.flush()
                f.truncate(f.tell() // 2)
                _die()

        store.torch.save = save
    elif point == "safetensors":  # the weights half-written
        real_file = store.save_file

        def save_file(tensors, path, *a, **k):
            real_file(tensors, path, *a, **k)
            if hit():
                os.truncate(path, os.path.getsize(path) // 2)
                _die()

        store.save_file = save_file
    elif point == "fsync":  # a temporary file written, not yet renamed (run.json, sidecars, probes)
        real_fsync = os.fsync

        def fsync(fd):
            real_fsync(fd)
            if hit():
                _die()

        os.fsync = fsync
    elif point == "sqlite":  # rows inserted, the transaction not committed
        def insert_scalars(db, rows):
            db.execute("BEGIN")
            db.executemany("INSERT INTO scalars (step, epoch, wall_time, name, value) VALUES (?,?,?,?,?)", rows)
            if hit():
                _die()
            db.execute("COMMIT")

        store.insert_scalars = insert_scalars
    else:
        raise ValueError(point)


def run(root: str, name: str, overrides: list[str], kill: tuple[str, int] | None) -> None:
    """Train ``root/name`` (or resume it when it exists), killed at ``kill`` if given."""
    torch.set_num_threads(1)
    if kill is not None:
        arm(*kill)
    run_dir = Path(root) / name
    if (run_dir / "run.json").exists():
        resume(run_dir)
    else:
        train(Config().with_overrides(overrides))
