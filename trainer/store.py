"""The run store: the one thing the trainer and the dashboard share (DESIGN.md, "Run store").

    runs/<run_id>/
      run.json                 config, method, group, status (+ reason), pid, pid_start, boot_id,
                               host, times, versions
      writer.lock              held by the one process writing the run (trainer/lock.py)
      heartbeat                the writer's wall time, rewritten every few seconds (trainer/liveness.py)
      metrics.sqlite           WAL: scalars, events (trainer/metrics_db.py)
      checkpoints/step_<N>.safetensors + step_<N>.json (+ step_<N>.optim.pt)
      probes/step_<N>.npz
      analysis/

One writer per run: :meth:`RunWriter.create` takes the folder with an atomic ``mkdir`` and
both it and :meth:`RunWriter.reopen` hold the run's lock until :meth:`RunWriter.close`.
Every file is written to a temporary name, flushed to disk and renamed, so a reader sees a
whole file or none; a checkpoint counts only once its JSON sidecar (written last) exists. A
write that fails (full disk, read-only store) removes its temporary file and raises
:class:`StoreWriteError` with one line; leftovers of a killed writer (temporary files,
checkpoint files without a sidecar) are removed when the run is next opened for writing.
Readers open the database read-only and never block the writer.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from trainer import liveness
from trainer.lock import LockError, RunLock
from trainer.metrics_db import (  # noqa: F401 - the read side is part of the store's interface
    DB_NAME,
    ScalarCursor,
    delete_after,
    insert_event,
    insert_scalars,
    last_values,
    metrics_problem,
    open_writer_db,
    read_events,
    read_metric,
    read_new_scalars,
    read_scalars,
)
from trainer.run_info import DAMAGED, STATUSES, check_info

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
MIN_FREE_BYTES = 64 << 20  # a new run is refused before its data loads when its disk has less free


class StoreError(RuntimeError):
    """A run folder or file that cannot be read; the message says which and what to do."""


class StoreWriteError(StoreError):
    """The store could not be written (disk full, read-only, gone); nothing half-written is left."""


def default_runs_dir() -> Path:
    """``$SSLSCOPE_RUNS`` or ``runs``."""
    return Path(os.environ.get("SSLSCOPE_RUNS", "runs"))


def _file_mode() -> int:
    """The mode ``open()`` gives new files (0644 under the usual umask 022)."""
    try:
        with open("/proc/self/status") as f:
            umask = int(f.read().split("Umask:")[1].split()[0], 8)
    except (OSError, IndexError, ValueError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


_MODE = _file_mode()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to ``path`` so that readers see the old file or the new one, never a part; on
    failure the temporary file is removed and the ``OSError`` raised."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, default=str).encode())


def _why(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


def _disk_full(where: Path | None) -> bool:
    """Whether the file system of ``where`` has (almost) no room left: some writers (torch's zip
    writer) report a short write as their own error instead of ENOSPC."""
    try:
        st = os.statvfs(where) if where is not None else None
    except OSError:
        return False
    return st is not None and st.f_bavail * st.f_frsize < (64 << 10)


def _write_error(what: str, e: BaseException, where: Path | None = None) -> StoreWriteError:
    full = (isinstance(e, OSError) and e.errno in _FULL) or "full" in str(e)
    why = _why(e)
    if not full and not isinstance(e, OSError) and _disk_full(where):
        full, why = True, f"No space left on device: {why}"
    hint = "free some space" if full else "make it writable"
    return StoreWriteError(f"cannot write {what} ({why}); {hint}, then resume the run (or move it to "
                           "another runs directory)")


def _taken(run_dir: Path) -> StoreError:
    if (run_dir / "run.json").exists():
        return StoreError(f"run '{run_dir}' already exists; pick another --name, or continue it with "
                          f"'python -m trainer resume {run_dir}'")
    return StoreError(f"'{run_dir}' already exists (not a run, or one being created right now); "
                      "pick another --name or remove that folder")


def check_new_run(root: Path | str, run_id: str) -> Path:
    """Before any data loads: the runs directory can be written and ``run_id`` is free there.
    (:meth:`RunWriter.create` checks the name again, atomically.)"""
    run_dir = check_runs_root(root) / run_id
    if os.path.lexists(run_dir):
        raise _taken(run_dir)
    return run_dir


def check_runs_root(root: Path | str) -> Path:
    """Create ``root`` if needed and prove a file can be written in it, before any data is
    loaded; :class:`StoreError` says why not (not a folder, read-only, /proc, a full disk)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise StoreError(f"runs directory '{root}' is not a folder; pass --runs-dir with a folder you can write")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test.tmp{os.getpid()}"
        with open(probe, "wb") as f:
            f.write(b"x")
        probe.unlink()
        free = os.statvfs(root).f_bavail * os.statvfs(root).f_frsize
    except OSError as e:
        raise StoreError(f"runs directory '{root}' is not writable ({_why(e)}); "
                         "pass --runs-dir with a folder you can write") from None
    if free < MIN_FREE_BYTES:
        raise StoreError(f"runs directory '{root}' has only {free >> 20} MB free; free some space or pass "
                         "another --runs-dir")
    return root


# ----------------------------------------------------------------------------------------
# Write side (rank 0 only)
# ----------------------------------------------------------------------------------------
class RunWriter:
    """Writes one run folder, holding its lock. Create with :meth:`create` or reopen with
    :meth:`reopen`; :meth:`close` releases the lock."""

    def __init__(self, run_dir: Path, info: dict[str, Any], lock: RunLock):
        self.dir = Path(run_dir)
        self.info = info
        self._lock = lock
        try:
            for sub in ("checkpoints", "probes", "analysis"):
                (self.dir / sub).mkdir(exist_ok=True)
            remove_leftovers(self.dir)
            self._db = open_writer_db(self.dir / DB_NAME)
        except (OSError, sqlite3.Error) as e:
            lock.release()
            raise _write_error(f"the run folder '{self.dir}'", e) from None
        self._heartbeat = liveness.Heartbeat(self.dir)

    @classmethod
    def create(cls, root: Path | str, run_id: str, config: dict[str, Any], method: str,
               group: str = "") -> RunWriter:
        """A new run ``root/run_id``. The folder is made with one ``mkdir``, so of two
        processes creating the same run exactly one succeeds."""
        root, run_dir = Path(root), Path(root) / run_id
        try:
            root.mkdir(parents=True, exist_ok=True)
            os.mkdir(run_dir)
        except FileExistsError:
            raise _taken(run_dir) from None
        except OSError as e:
            raise _write_error(f"the run folder '{run_dir}'", e) from None
        lock = lock_run(run_dir)
        info = {
            "run_id": run_id, "method": method, "group": group, "config": config,
            "status": "running", "reason": "", **liveness.identity(),
            "started": time.time(), "ended": None, "step": 0, "versions": _versions(),
        }
        try:  # run.json first: a reader never sees run files without it
            atomic_write_json(run_dir / "run.json", info)
            return cls(run_dir, info, lock)
        except (OSError, StoreWriteError) as e:
            shutil.rmtree(run_dir, ignore_errors=True)  # ours, just made: leave nothing behind
            lock.release()
            raise e if isinstance(e, StoreWriteError) else _write_error(f"'{run_dir / 'run.json'}'", e) from None

    @classmethod
    def reopen(cls, run_dir: Path | str, lock: RunLock | None = None) -> RunWriter:
        """Continue writing an existing run (resume): status back to running, this process's
        identity. Refused while another process writes it. ``lock``: one already taken."""
        lock = lock if lock is not None and lock.held else lock_run(run_dir)
        try:
            info = read_run_info(run_dir)
        except StoreError:
            lock.release()
            raise
        info.pop("dir", None)
        info.update(status="running", reason="", ended=None, **liveness.identity())
        w = cls(Path(run_dir), info, lock)
        w._write_info()
        return w

    def _write_info(self, last_resort: bool = False) -> None:
        try:
            atomic_write_json(self.dir / "run.json", self.info)
        except OSError as e:
            if not (last_resort and e.errno in _FULL):
                raise _write_error(f"'{self.dir / 'run.json'}'", e) from None
            try:  # no room for a second copy: overwrite in place, so the final status is recorded
                with open(self.dir / "run.json", "r+b") as f:
                    f.write(json.dumps(self.info, default=str).encode())
                    f.truncate()
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e2:
                raise _write_error(f"'{self.dir / 'run.json'}'", e2) from None

    def log_scalars(self, step: int, epoch: float, values: dict[str, float]) -> None:
        now = time.time()
        # NaN means "not measured" (e.g. k-NN without labels); SQLite would store it as NULL
        rows = [(step, epoch, now, k, float(v)) for k, v in values.items() if float(v) == float(v)]
        try:
            insert_scalars(self._db, rows)
        except sqlite3.Error as e:
            raise _write_error(f"metrics to '{self.dir / DB_NAME}'", e) from None

    def log_rows(self, rows: list[tuple[int, float, float, str, float]]) -> None:
        """Rows (step, epoch, wall_time, name, value) of any number of steps in one transaction:
        logs written by another trainer, imported with their own times. NaN rows are skipped."""
        rows = [(int(s), float(e), float(t), str(k), float(v)) for s, e, t, k, v in rows if float(v) == float(v)]
        try:
            insert_scalars(self._db, rows)
        except sqlite3.Error as e:
            raise _write_error(f"metrics to '{self.dir / DB_NAME}'", e) from None

    def log_event(self, step: int, level: str, message: str) -> None:
        try:
            insert_event(self._db, (step, time.time(), level, message))
        except sqlite3.Error as e:
            raise _write_error(f"an event to '{self.dir / DB_NAME}'", e) from None

    def truncate_after(self, step: int) -> None:
        """On resume from ``step``: drop what the abandoned timeline wrote after it -- metric
        rows and events (no duplicate curves), checkpoints and probes -- so that nothing of it
        mixes with what the resumed run writes."""
        for ck in list_checkpoints(self.dir):
            if ck.step > step:
                self._remove_checkpoint(ck.step)
        for s in list_probes(self.dir):
            if s > step:
                (self.dir / "probes" / f"step_{s}.npz").unlink(missing_ok=True)
        try:
            delete_after(self._db, step)
        except sqlite3.Error as e:
            raise _write_error(f"'{self.dir / DB_NAME}'", e) from None

    def set_progress(self, step: int) -> None:
        self.info["step"] = step
        self._write_info()

    def set_status(self, status: str, reason: str = "") -> None:
        """Record the final (or running) status; on a full disk still written, in place."""
        assert status in STATUSES, status
        self.info.update(status=status, reason=reason)
        if status != "running":
            self.info["ended"] = time.time()
        self._write_info(last_resort=status != "running")

    def save_checkpoint(self, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                        optim_state: dict[str, Any] | None = None, keep: int = 0) -> Path:
        """Weights (safetensors) + optimiser state + JSON sidecar, each written to a temporary
        file, flushed and renamed; the sidecar comes last, so its presence means the checkpoint
        is whole. ``keep``: checkpoints kept besides the newest (0 = all)."""
        ck = self.dir / "checkpoints"
        base = ck / f"step_{step}"
        tmps = [_tmp_name(base.with_suffix(".safetensors")), _tmp_name(ck / f"step_{step}.optim.pt")]
        try:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmps[0]))
            os.chmod(tmps[0], _MODE)  # safetensors creates 0600; every other store file is 0644
            _fsync(tmps[0])
            os.replace(tmps[0], base.with_suffix(".safetensors"))
            if optim_state is not None:
                with open(tmps[1], "wb") as f:
                    torch.save(optim_state, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmps[1], ck / f"step_{step}.optim.pt")
            atomic_write_json(base.with_suffix(".json"), {"step": step, "time": time.time(), **meta})
        except (OSError, RuntimeError, SafetensorError) as e:
            for tmp in tmps:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            raise _write_error(f"checkpoint step {step} to '{ck}'", e, ck) from None
        if keep:
            self._prune(keep)
        return base.with_suffix(".safetensors")

    def _prune(self, keep: int) -> None:
        """Keep the newest checkpoint and ``keep`` more (the config's "kept besides the last")."""
        for c in list_checkpoints(self.dir)[:-(keep + 1)]:
            self._remove_checkpoint(c.step)

    def _remove_checkpoint(self, step: int) -> None:
        for suffix in (".json", ".safetensors", ".optim.pt"):  # sidecar first: never half-listed
            (self.dir / "checkpoints" / f"step_{step}{suffix}").unlink(missing_ok=True)

    def save_probe(self, step: int, arrays: dict[str, np.ndarray]) -> None:
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        try:
            atomic_write_bytes(self.dir / "probes" / f"step_{step}.npz", buf.getvalue())
        except OSError as e:
            raise _write_error(f"probe step {step} to '{self.dir / 'probes'}'", e, self.dir) from None

    def close(self) -> None:
        """Stop the heartbeat, close the database and release the run's lock."""
        self._heartbeat.stop()
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        self._lock.release()


def lock_run(run_dir: Path | str) -> RunLock:
    """Take the single-writer lock of ``run_dir``; :class:`StoreError` naming the process that
    writes it, or saying the folder cannot be written."""
    try:
        return RunLock.acquire(run_dir)
    except LockError as e:
        raise StoreError(str(e)) from None
    except OSError as e:
        raise _write_error(f"the lock of run '{run_dir}'", e) from None


def remove_leftovers(run_dir: Path | str) -> list[Path]:
    """Delete what a killed writer left behind: temporary files (``.<name>.tmp<pid>``) and
    checkpoint files without a sidecar. Only call while holding the run's lock."""
    d = Path(run_dir)
    gone = [p for sub in ("", "checkpoints", "probes") for p in (d / sub).glob(".*.tmp*") if p.is_file()]
    for p in (d / "checkpoints").glob("step_*"):
        if p.suffix != ".json" and not (d / "checkpoints" / f"{p.name.split('.')[0]}.json").exists():
            gone.append(p)
    for p in gone:
        with contextlib.suppress(OSError):
            p.unlink()
    return gone


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "timm", "numpy", "sslscope"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


# ----------------------------------------------------------------------------------------
# Read side (dashboard, analysis): never blocks or alters the writer
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckpointInfo:
    step: int
    path: Path  # the .safetensors file
    meta: dict[str, Any]


def read_run_info(run_dir: Path | str) -> dict[str, Any]:
    """run.json checked field by field (``trainer.run_info``), plus ``dir``; a ``running``
    status is corrected to ``stopped`` when its trainer is gone (``trainer.liveness``).
    :class:`StoreError` if the file is missing or damaged, naming what is wrong."""
    p = Path(run_dir) / "run.json"
    if not p.is_file():
        raise StoreError(f"'{run_dir}' is not a run folder (no run.json); pick a folder under the runs directory")
    try:
        info = check_info(json.loads(p.read_bytes().decode("utf-8")), Path(run_dir).name)
    except (OSError, ValueError) as e:  # unreadable, not UTF-8, not JSON, or wrong fields
        raise StoreError(f"'{p}' is damaged or unreadable ({e}); the run cannot be shown or resumed") from None
    info["dir"] = str(Path(run_dir))
    if info["status"] == "running":
        info["status"], info["reason"] = liveness.running_status(info, run_dir)
    return info


def scan_runs(root: Path | str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(readable runs newest first, damaged run folders by name). A damaged entry holds
    ``run_id``, ``dir``, ``status`` = "damaged" and the ``reason``."""
    root = Path(root) if root is not None else default_runs_dir()
    try:
        folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError:
        return [], []
    runs, damaged = [], []
    for d in folders:
        if (d / "run.json").exists():
            try:
                runs.append(read_run_info(d))
            except StoreError as e:
                damaged.append(_damaged(d, str(e)))
        elif (d / DB_NAME).exists() or (d / "checkpoints").is_dir():
            damaged.append(_damaged(d, f"'{d}' has run files but no run.json (its writer was killed while "
                                       "creating it); remove the folder"))
    return sorted(runs, key=lambda r: r.get("started") or 0, reverse=True), damaged


def _damaged(d: Path, reason: str) -> dict[str, Any]:
    return {"run_id": d.name, "dir": str(d), "status": DAMAGED, "reason": reason, "method": "?", "group": "",
            "config": {}, "started": None, "step": 0}


def list_runs(root: Path | str | None = None) -> list[dict[str, Any]]:
    """Every readable run under ``root``, newest first. Damaged folders are left out (see
    :func:`scan_runs` for them and their reasons)."""
    return scan_runs(root)[0]


def list_checkpoints(run_dir: Path | str) -> list[CheckpointInfo]:
    """Whole checkpoints (sidecar present and parsable), in step order."""
    out = []
    for side in (Path(run_dir) / "checkpoints").glob("step_*.json"):
        try:
            meta = json.loads(side.read_text())
            step = int(side.stem.split("_")[1])
        except (OSError, ValueError):
            continue
        st = side.with_suffix(".safetensors")
        if isinstance(meta, dict) and st.is_file():
            out.append(CheckpointInfo(step, st, meta))
    return sorted(out, key=lambda c: c.step)


def load_checkpoint(path: Path | str) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors checkpoint, with a clear error if the file is damaged."""
    p = Path(path)
    if not p.is_file():
        raise StoreError(f"checkpoint '{p}' does not exist")
    try:
        return load_file(str(p))
    except Exception as e:  # noqa: BLE001 - safetensors raises several types on corrupt files
        raise StoreError(f"checkpoint '{p}' is corrupt or not a safetensors file ({e}); "
                         "pick another checkpoint or re-train") from None


def load_optim_state(ckpt: CheckpointInfo) -> dict[str, Any] | None:
    """The optimiser state saved with ``ckpt``, None if there is none; :class:`StoreError`
    if the file is truncated or not a plain-tensor pickle."""
    p = ckpt.path.with_name(f"step_{ckpt.step}.optim.pt")
    if not p.is_file():
        return None
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch.load raises several types on damaged files
        raise StoreError(f"optimiser state '{p}' is damaged ({_why(e)})") from None
    if not isinstance(state, dict):
        raise StoreError(f"optimiser state '{p}' holds {type(state).__name__}, not a state dict")
    return state


def list_probes(run_dir: Path | str) -> list[int]:
    steps = []
    for p in (Path(run_dir) / "probes").glob("step_*.npz"):
        try:
            steps.append(int(p.stem.split("_")[1]))
        except ValueError:
            continue
    return sorted(steps)


def load_probe(run_dir: Path | str, step: int) -> dict[str, np.ndarray]:
    p = Path(run_dir) / "probes" / f"step_{step}.npz"
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise StoreError(f"probe file '{p}' is unreadable ({e})") from None
