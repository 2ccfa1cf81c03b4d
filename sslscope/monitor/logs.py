"""Logs that other trainers already wrote, read into a run of the SSLScope store, so the
dashboard shows them beside our runs.

- JSON lines: the official DINO's and MAE's ``log.txt`` (one object per epoch: ``train_loss``,
  ``train_lr``, ``train_wd``, ``epoch``) and DINOv2's ``training_metrics.json`` (one object
  per logged iteration: ``iteration``, ``total_loss``, ``lr``, ``wd``, ``mom``, the
  ``dino_*`` / ``ibot_*`` / ``koleo_loss`` terms, times);
- TensorBoard event files (``events.out.tfevents.*``), read with the ``tensorboard`` package's
  own reader when it is installed: every scalar tag, with its step and wall time.

Names go through ``names.our_name``: a name SSLScope declares stays, a known alias (``loss``,
``lr``, ``wd``, ``mom``, ``train_loss``, ...) is mapped onto ours, anything else is kept under
``imported/``. An epoch log is placed at the end of each epoch: step = (epoch + 1) x
``steps_per_epoch`` (1 when not given), epoch axis = epoch + 1.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sslscope.monitor.names import EPOCH_KEYS, STEP_KEYS, our_name
from trainer.store import RunWriter, StoreError, check_runs_root, default_runs_dir

Row = tuple[int, float, float, str, float]  # step, epoch, wall time, name, value
JSON_NAMES = ("log.txt", "training_metrics.json")
EVENTS_GLOB = "events.out.tfevents.*"
_CHUNK = 20000  # rows per transaction


class ImportLogError(ValueError):
    """A log that cannot be imported; the message names the file, the problem and the fix."""


@dataclass
class ImportedLog:
    """What a log held, in store rows, and what was left out."""

    rows: list[Row]
    format: str  # "json-lines" | "tensorboard"
    files: list[Path]
    skipped: list[str] = field(default_factory=list)  # "file:line: why" or keys that hold no number

    @property
    def names(self) -> list[str]:
        return sorted({r[3] for r in self.rows})


def find_logs(path: Path) -> tuple[str, list[Path]]:
    """(format, files) of ``path``: an event file, a JSON-lines file, or a folder holding either
    (event files are read when both are there: they carry wall times)."""
    if not path.exists():
        raise ImportLogError(f"'{path}' does not exist; pass a log.txt, a training_metrics.json, a TensorBoard "
                             "event file or the folder that holds them")
    if path.is_file():
        return ("tensorboard" if path.name.startswith("events.out.tfevents") else "json-lines"), [path]
    events = sorted(path.rglob(EVENTS_GLOB))
    if events:
        return "tensorboard", events
    found = [path / n for n in JSON_NAMES if (path / n).is_file()]
    if found:
        return "json-lines", found
    raise ImportLogError(f"'{path}' holds no {', '.join(JSON_NAMES)} and no TensorBoard event file "
                         f"({EVENTS_GLOB}); pass the file itself")


def _number(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def read_json_lines(path: Path, steps_per_epoch: int | None = None, wall_time: float | None = None) -> ImportedLog:
    """Rows of a JSON-lines log (one JSON object per line, official DINO / MAE / DINOv2).
    A torn last line (a trainer writing right now) is skipped; a bad line elsewhere is an
    error naming it."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise ImportLogError(f"cannot read '{path}' ({e.strerror or e})") from None
    now = time.time() if wall_time is None else wall_time
    rows: list[Row] = []
    skipped: list[str] = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines):
                skipped.append(f"{path.name}:{i}: unfinished last line")
                continue
            raise ImportLogError(f"line {i} of '{path}' is not JSON ({e.msg}); a JSON-lines log holds one "
                                 "object per line: fix or remove that line") from None
        if not isinstance(obj, dict):
            raise ImportLogError(f"line {i} of '{path}' holds {type(obj).__name__}, not one JSON object")
        step, epoch = _place(obj, i, steps_per_epoch)
        for key, value in obj.items():
            if key in STEP_KEYS or key in EPOCH_KEYS:
                continue
            v = _number(value)
            if v is None:
                if f"key '{key}'" not in " ".join(skipped):
                    skipped.append(f"{path.name}: key '{key}' holds no number")
                continue
            rows.append((step, epoch, now, our_name(key), v))
    return ImportedLog(rows, "json-lines", [path], skipped)


def _place(obj: dict, line: int, steps_per_epoch: int | None) -> tuple[int, float]:
    """(step, epoch) of one log object: its iteration, else the end of its epoch, else its line."""
    spe = steps_per_epoch or 0
    it = next((obj[k] for k in STEP_KEYS if _number(obj.get(k)) is not None), None)
    ep = next((obj[k] for k in EPOCH_KEYS if _number(obj.get(k)) is not None), None)
    if it is not None:
        epoch = float(ep) if ep is not None else (it / spe if spe else 0.0)
        return int(it), epoch
    if ep is not None:
        return int((ep + 1) * (spe or 1)), float(ep) + 1.0
    return line, line / spe if spe else 0.0


def read_tensorboard(files: Iterable[Path], steps_per_epoch: int | None = None) -> ImportedLog:
    """Rows of every scalar tag in TensorBoard event files (a scalar tag ``epoch``, as
    Lightning writes it, fills the epoch axis instead of becoming a curve)."""
    try:
        from tensorboard.backend.event_processing import event_accumulator as ea
        from tensorboard.util import tensor_util
    except ImportError:
        raise ImportLogError("reading TensorBoard event files needs the tensorboard package: pip install "
                             "tensorboard (JSON-lines logs such as log.txt need nothing)") from None
    files = list(files)
    points: dict[str, list[tuple[int, float, float]]] = {}
    skipped: list[str] = []
    for f in files:
        acc = ea.EventAccumulator(str(f), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
        try:
            acc.Reload()
        except Exception as e:  # noqa: BLE001 - the reader raises several types on damaged files
            raise ImportLogError(f"TensorBoard file '{f}' cannot be read ({e}); is it an event file?") from None
        tags = acc.Tags()
        for tag in tags.get("scalars", []):
            points.setdefault(tag, []).extend((e.step, e.wall_time, float(e.value)) for e in acc.Scalars(tag))
        for tag in tags.get("tensors", []):  # TF2's tf.summary.scalar writes tensors
            for e in acc.Tensors(tag):
                arr = tensor_util.make_ndarray(e.tensor_proto)
                if arr.size == 1 and arr.dtype.kind in "fiu":
                    points.setdefault(tag, []).append((e.step, e.wall_time, float(arr.reshape(()))))
                elif f"'{tag}'" not in " ".join(skipped):
                    skipped.append(f"{f.name}: tag '{tag}' is not a scalar")
    epochs = {step: value for step, _, value in points.pop("epoch", [])}
    spe = steps_per_epoch or 0
    rows = [(int(step), epochs.get(step, step / spe if spe else 0.0), wall, our_name(tag), value)
            for tag, pts in points.items() for step, wall, value in pts]
    return ImportedLog(rows, "tensorboard", files, skipped)


def guess_method(names: Iterable[str]) -> str:
    """"dino" for logs with DINO / iBOT / KoLeo terms, "mae" / "ijepa" for theirs, else "imported"."""
    text = " ".join(names).lower()
    for method, words in (("dino", ("dino", "ibot", "koleo")), ("mae", ("mae",)), ("ijepa", ("jepa",))):
        if any(w in text for w in words):
            return method
    return "imported"


def import_log(path: Path | str, runs_dir: Path | str | None = None, name: str | None = None,
               method: str | None = None, steps_per_epoch: int | None = None) -> Path:
    """Read the log(s) at ``path`` into a new finished run ``runs_dir/name`` (name: the log's
    folder); returns the run folder. ``method``: default guessed from the metric names."""
    path = Path(path)
    fmt, files = find_logs(path)
    if fmt == "tensorboard":
        log = read_tensorboard(files, steps_per_epoch)
    else:
        parts = [read_json_lines(f, steps_per_epoch) for f in files]
        log = ImportedLog([r for p in parts for r in p.rows], fmt, files, [s for p in parts for s in p.skipped])
    if not any(math.isfinite(r[4]) for r in log.rows):
        raise ImportLogError(f"'{path}' holds no numbers to import ({'; '.join(log.skipped) or 'empty'})")
    finite = [r for r in log.rows if math.isfinite(r[4])]  # inf / NaN: nothing to draw
    bad = len(log.rows) - len(finite)
    name = name or (path.parent.name if path.is_file() else path.name) or "imported"
    root = check_runs_root(Path(runs_dir) if runs_dir is not None else default_runs_dir())
    if (root / name).exists():
        raise StoreError(f"run '{root / name}' already exists; pass --name with another name")
    config = {"imported": {"source": str(path.resolve()), "format": log.format, "files": len(log.files),
                           "steps_per_epoch": steps_per_epoch or 0}}
    w = RunWriter.create(root, name, config, method or guess_method(log.names))
    try:
        rows = sorted(finite)
        for i in range(0, len(rows), _CHUNK):
            w.log_rows(rows[i:i + _CHUNK])
        last = max(r[0] for r in rows)
        w.info["started"] = min(r[2] for r in rows)  # TensorBoard's own wall times
        w.set_progress(last)
        note = f"imported {len(rows)} values of {len(log.names)} metrics from {path} ({log.format})"
        w.log_event(last, "info", note + (f"; {bad} non-finite values left out" if bad else ""))
        for s in log.skipped[:20]:
            w.log_event(last, "info", f"left out: {s}")
        w.set_status("finished")
    except BaseException as e:
        w.set_status("failed", f"import stopped: {e}"[:300])
        raise
    finally:
        w.close()
    return root / name
