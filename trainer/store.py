"""The run store: the one thing the trainer and the dashboard share (DESIGN.md, "Run store").

    runs/<run_id>/
      run.json                 config, method, group, status (+ reason), pid, host, times, versions
      metrics.sqlite           WAL: scalars(step, epoch, wall_time, name, value), events(...)
      checkpoints/step_<N>.safetensors + step_<N>.json (+ step_<N>.optim.pt)
      probes/step_<N>.npz
      analysis/

Every file is written to a temporary name and renamed, so a reader sees a whole file or none;
a checkpoint counts only once its JSON sidecar (written last) exists. SQLite in WAL mode lets
readers query while the trainer writes; readers open the database read-only.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

STATUSES = ("running", "finished", "failed", "stopped")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS scalars (step INTEGER, epoch REAL, wall_time REAL, name TEXT, value REAL);
CREATE INDEX IF NOT EXISTS scalars_name_step ON scalars(name, step);
CREATE TABLE IF NOT EXISTS events (step INTEGER, wall_time REAL, level TEXT, message TEXT);
"""


class StoreError(RuntimeError):
    """A run folder or file that cannot be read; the message says which and what to do."""


def default_runs_dir() -> Path:
    """``$SSLSCOPE_RUNS`` or ``runs``."""
    return Path(os.environ.get("SSLSCOPE_RUNS", "runs"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to ``path`` so that readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, default=str).encode())


# ----------------------------------------------------------------------------------------
# Write side (rank 0 only)
# ----------------------------------------------------------------------------------------
class RunWriter:
    """Writes one run folder. Create with :meth:`create` or reopen with :meth:`reopen`."""

    def __init__(self, run_dir: Path, info: dict[str, Any]):
        self.dir = Path(run_dir)
        self.info = info
        (self.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (self.dir / "probes").mkdir(exist_ok=True)
        (self.dir / "analysis").mkdir(exist_ok=True)
        self._db = sqlite3.connect(self.dir / "metrics.sqlite", timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def create(cls, root: Path | str, run_id: str, config: dict[str, Any], method: str,
               group: str = "") -> RunWriter:
        run_dir = Path(root) / run_id
        if (run_dir / "run.json").exists():
            raise StoreError(f"run '{run_dir}' already exists; pick another --name, or continue it with "
                             f"'python -m trainer resume {run_dir}'")
        info = {
            "run_id": run_id, "method": method, "group": group, "config": config,
            "status": "running", "reason": "", "pid": os.getpid(), "host": socket.gethostname(),
            "started": time.time(), "ended": None, "step": 0, "versions": _versions(),
        }
        w = cls(run_dir, info)
        w._write_info()
        return w

    @classmethod
    def reopen(cls, run_dir: Path | str) -> RunWriter:
        """Continue writing an existing run (resume): status back to running, new pid."""
        info = read_run_info(run_dir)
        info.update(status="running", reason="", pid=os.getpid(), host=socket.gethostname(), ended=None)
        w = cls(Path(run_dir), info)
        w._write_info()
        return w

    def _write_info(self) -> None:
        atomic_write_json(self.dir / "run.json", self.info)

    def log_scalars(self, step: int, epoch: float, values: dict[str, float]) -> None:
        now = time.time()
        # NaN means "not measured" (e.g. k-NN without labels); SQLite would store it as NULL
        rows = [(step, epoch, now, k, float(v)) for k, v in values.items() if float(v) == float(v)]
        with self._db:  # one transaction: a reader sees all of a step's rows or none
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO scalars VALUES (?,?,?,?,?)", rows)

    def log_event(self, step: int, level: str, message: str) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT INTO events VALUES (?,?,?,?)", (step, time.time(), level, message))

    def truncate_after(self, step: int) -> None:
        """On resume: drop rows logged after the checkpoint we restart from (no duplicate curves)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM scalars WHERE step > ?", (step,))

    def set_progress(self, step: int) -> None:
        self.info["step"] = step
        self._write_info()

    def set_status(self, status: str, reason: str = "") -> None:
        assert status in STATUSES, status
        self.info.update(status=status, reason=reason)
        if status != "running":
            self.info["ended"] = time.time()
        self._write_info()

    def save_checkpoint(self, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                        optim_state: dict[str, Any] | None = None, keep: int = 0) -> Path:
        """Weights (safetensors) + optimiser state + JSON sidecar, each written atomically;
        the sidecar comes last, so its presence means the checkpoint is whole."""
        ck = self.dir / "checkpoints"
        base = ck / f"step_{step}"
        tmp = ck / f".step_{step}.safetensors.tmp"
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, base.with_suffix(".safetensors"))
        if optim_state is not None:
            tmp = ck / f".step_{step}.optim.pt.tmp"
            torch.save(optim_state, tmp)
            os.replace(tmp, ck / f"step_{step}.optim.pt")
        atomic_write_json(base.with_suffix(".json"), {"step": step, "time": time.time(), **meta})
        if keep:
            self._prune(keep)
        return base.with_suffix(".safetensors")

    def _prune(self, keep: int) -> None:
        steps = [c.step for c in list_checkpoints(self.dir)]
        for s in steps[:-keep]:
            for suffix in (".json", ".safetensors", ".optim.pt"):  # sidecar first: never half-listed
                (self.dir / "checkpoints" / f"step_{s}{suffix}").unlink(missing_ok=True)

    def save_probe(self, step: int, arrays: dict[str, np.ndarray]) -> None:
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(self.dir / "probes" / f"step_{step}.npz", buf.getvalue())

    def close(self) -> None:
        self._db.close()


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
    """run.json, with ``status`` corrected to ``stopped`` if its process died on this host."""
    p = Path(run_dir) / "run.json"
    if not p.is_file():
        raise StoreError(f"'{run_dir}' is not a run folder (no run.json); pick a folder under the runs directory")
    try:
        info = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise StoreError(f"'{p}' is unreadable ({e}); the run folder is damaged") from None
    info["dir"] = str(Path(run_dir))
    if info.get("status") == "running" and info.get("host") == socket.gethostname() and not _alive(info.get("pid")):
        info["status"], info["reason"] = "stopped", "the training process is gone (killed?); resume it to continue"
    return info


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def list_runs(root: Path | str | None = None) -> list[dict[str, Any]]:
    """Every readable run under ``root``, newest first. Damaged folders are skipped."""
    root = Path(root) if root is not None else default_runs_dir()
    if not root.is_dir():
        return []
    runs = []
    for d in root.iterdir():
        if (d / "run.json").is_file():
            try:
                runs.append(read_run_info(d))
            except StoreError:
                continue
    return sorted(runs, key=lambda r: r.get("started") or 0, reverse=True)


def _connect_ro(run_dir: Path | str) -> sqlite3.Connection | None:
    db = Path(run_dir) / "metrics.sqlite"
    if not db.is_file():
        return None
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    return con


def read_scalars(run_dir: Path | str, after_rowid: int = 0,
                 names: list[str] | None = None) -> tuple[dict[str, np.ndarray], int]:
    """Scalars logged after ``after_rowid`` (0 = all), as columns
    {step, epoch, wall_time, name, value} of equal length, and the last rowid seen, so a live
    view reads only the new rows on its next call."""
    con = _connect_ro(run_dir)
    empty = {k: np.empty(0) for k in ("step", "epoch", "wall_time", "value")} | {"name": np.empty(0, object)}
    if con is None:
        return empty, after_rowid
    try:
        q = "SELECT rowid, step, epoch, wall_time, name, value FROM scalars WHERE rowid > ?"
        args: list[Any] = [after_rowid]
        if names:
            q += f" AND name IN ({','.join('?' * len(names))})"
            args += list(names)
        rows = con.execute(q + " ORDER BY rowid", args).fetchall()
    except sqlite3.OperationalError:  # table not created yet
        return empty, after_rowid
    finally:
        con.close()
    if not rows:
        return empty, after_rowid
    cols = list(zip(*rows))
    return {
        "step": np.asarray(cols[1], np.int64), "epoch": np.asarray(cols[2], np.float64),
        "wall_time": np.asarray(cols[3], np.float64), "name": np.asarray(cols[4], object),
        "value": np.asarray(cols[5], np.float64),
    }, int(cols[0][-1])


def read_metric(run_dir: Path | str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one scalar, in step order."""
    cols, _ = read_scalars(run_dir, names=[name])
    order = np.argsort(cols["step"], kind="stable")
    return cols["step"][order], cols["value"][order]


def last_values(run_dir: Path | str) -> dict[str, float]:
    """The latest value of every scalar."""
    con = _connect_ro(run_dir)
    if con is None:
        return {}
    try:
        rows = con.execute(
            "SELECT name, value FROM scalars WHERE rowid IN (SELECT MAX(rowid) FROM scalars GROUP BY name)"
        ).fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()
    return {n: float(v) for n, v in rows}


def read_events(run_dir: Path | str) -> list[dict[str, Any]]:
    con = _connect_ro(run_dir)
    if con is None:
        return []
    try:
        rows = con.execute("SELECT step, wall_time, level, message FROM events ORDER BY rowid").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()
    return [dict(step=s, wall_time=t, level=lv, message=m) for s, t, lv, m in rows]


def list_checkpoints(run_dir: Path | str) -> list[CheckpointInfo]:
    """Whole checkpoints (sidecar present and parsable), in step order."""
    out = []
    for side in (Path(run_dir) / "checkpoints").glob("step_*.json"):
        try:
            meta = json.loads(side.read_text())
            step = int(side.stem.split("_")[1])
        except (OSError, ValueError, json.JSONDecodeError):
            continue
        st = side.with_suffix(".safetensors")
        if st.is_file():
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
    p = ckpt.path.with_name(f"step_{ckpt.step}.optim.pt")
    if not p.is_file():
        return None
    return torch.load(p, map_location="cpu", weights_only=True)


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
