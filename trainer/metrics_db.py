"""A run's ``metrics.sqlite``: the schema, the writer's connection, and read-only readers.

    scalars(seq, step, epoch, wall_time, name, value)   seq: AUTOINCREMENT, never reused
    events(seq, step, wall_time, level, message)
    store_meta(key, value)                               'generation': +1 at each truncation

Readers page through scalars by ``seq`` (the rowid). AUTOINCREMENT keeps a deleted seq from
ever coming back, so a cursor cannot skip rows written after a truncation; the generation
tells a reader that rows it already holds were deleted (a resume rewrote the tail), and is
read in the same snapshot as the rows.

Flush policy: every ``log_scalars`` / ``log_event`` call is one committed transaction (WAL,
``synchronous=NORMAL``). Once it returns, its rows survive the trainer being killed at any
moment; only an OS crash or power cut can lose the last few commits. Readers never write:
they open the file read-only, and where its folder is read-only (a copied run, a read-only
mount) they fall back to reading a private copy, so the rows still show.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

DB_NAME = "metrics.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS scalars (seq INTEGER PRIMARY KEY AUTOINCREMENT, step INTEGER, epoch REAL,
                                    wall_time REAL, name TEXT, value REAL);
CREATE INDEX IF NOT EXISTS scalars_name_step ON scalars(name, step);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, step INTEGER, wall_time REAL,
                                   level TEXT, message TEXT);
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value INTEGER);
"""
_COLUMNS = {"scalars": "step, epoch, wall_time, name, value", "events": "step, wall_time, level, message"}


# ----------------------------------------------------------------------------------------
# Write side
# ----------------------------------------------------------------------------------------
def open_writer_db(path: Path) -> sqlite3.Connection:
    """The writer's connection: WAL, autocommit (transactions are explicit), schema created,
    and tables of older stores (rowid without AUTOINCREMENT) rebuilt in one transaction."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    old = [t for t in _COLUMNS if _columns(db, t) and "seq" not in _columns(db, t)]
    if old:
        db.execute("BEGIN IMMEDIATE")
        for t in old:
            db.execute(f"ALTER TABLE {t} RENAME TO {t}_v0")
            db.execute(f"DROP INDEX IF EXISTS {t}_name_step")  # the index moved with the old table
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        for t in old:
            db.execute(f"INSERT INTO {t} ({_COLUMNS[t]}) SELECT {_COLUMNS[t]} FROM {t}_v0 ORDER BY rowid")
            db.execute(f"DROP TABLE {t}_v0")
        _bump_generation(db)  # every seq changed: readers must read again from the start
        db.execute("COMMIT")
    db.executescript(_SCHEMA)
    return db


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]


def _bump_generation(db: sqlite3.Connection) -> None:
    db.execute("INSERT INTO store_meta VALUES ('generation', 1) "
               "ON CONFLICT(key) DO UPDATE SET value = value + 1")


def insert_scalars(db: sqlite3.Connection, rows: list[tuple[int, float, float, str, float]]) -> None:
    db.execute("BEGIN")  # one transaction: a reader sees all of a step's rows or none
    try:
        db.executemany("INSERT INTO scalars (step, epoch, wall_time, name, value) VALUES (?,?,?,?,?)", rows)
    except BaseException:
        if db.in_transaction:  # SQLite may have rolled back itself (disk full)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def insert_event(db: sqlite3.Connection, row: tuple[int, float, str, str]) -> None:
    db.execute("INSERT INTO events (step, wall_time, level, message) VALUES (?,?,?,?)", row)


def delete_after(db: sqlite3.Connection, step: int) -> None:
    """Drop scalars and events after ``step`` and bump the generation, in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("DELETE FROM scalars WHERE step > ?", (step,))
        db.execute("DELETE FROM events WHERE step > ?", (step,))
        _bump_generation(db)
    except BaseException:
        if db.in_transaction:  # SQLite may have rolled back itself (disk full)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


# ----------------------------------------------------------------------------------------
# Read side: never blocks or alters the writer
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScalarCursor:
    """Where a reader stands: the store's generation and the last seq it has read."""

    generation: int = 0
    seq: int = 0


_COPIES: dict[str, tuple[tuple[int, ...], Path]] = {}  # db path -> (stat signature, private copy)
_COPY_DIR: list[Path] = []


def _uri(path: Path, **params: str) -> str:
    return f"file:{quote(str(path.resolve()))}?" + "&".join(f"{k}={v}" for k, v in params.items())


def connect_ro(run_dir: Path | str) -> sqlite3.Connection | None:
    """A read-only connection to the run's database, or None when it has none yet.

    If the folder is read-only, SQLite cannot create the ``-shm`` file that WAL readers need:
    without a ``-wal`` file the main file holds every row and is opened ``immutable``;
    with one, the pair is copied to a private folder (once per change) and read there.
    Raises ``sqlite3.Error`` when the file cannot be read at all (not a database)."""
    db = Path(run_dir) / DB_NAME
    if not db.is_file():
        return None
    try:
        con = sqlite3.connect(_uri(db, mode="ro"), uri=True, timeout=10, isolation_level=None)
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return con
    except sqlite3.OperationalError:
        if os.access(db.parent, os.W_OK) and not _read_only_fs(db.parent):
            raise
    wal = db.with_name(DB_NAME + "-wal")
    if not wal.is_file() or wal.stat().st_size == 0:
        con = sqlite3.connect(_uri(db, mode="ro", immutable="1"), uri=True, isolation_level=None)
    else:
        con = sqlite3.connect(_uri(_private_copy(db, wal), mode="ro"), uri=True, isolation_level=None)
    con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return con


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _private_copy(db: Path, wal: Path) -> Path:
    sig = tuple(v for p in (db, wal) for v in (p.stat().st_mtime_ns, p.stat().st_size))
    key = str(db.resolve())
    hit = _COPIES.get(key)
    if hit and hit[0] == sig:
        return hit[1]
    if not _COPY_DIR:
        _COPY_DIR.append(Path(tempfile.mkdtemp(prefix="sslscope-dbcopy-")))
        atexit.register(shutil.rmtree, _COPY_DIR[0], True)
    target = _COPY_DIR[0] / str(len(_COPIES) if not hit else hit[1].parent.name)
    target.mkdir(exist_ok=True)
    for name in (DB_NAME + "-shm", DB_NAME + "-wal", DB_NAME):
        (target / name).unlink(missing_ok=True)
    shutil.copyfile(db, target / DB_NAME)
    shutil.copyfile(wal, target / (DB_NAME + "-wal"))
    _COPIES[key] = (sig, target / DB_NAME)
    return target / DB_NAME


def metrics_problem(run_dir: Path | str) -> str:
    """Why the run's metrics cannot be read, in one line; "" when they can (or none exist yet)."""
    try:
        con = connect_ro(run_dir)
    except (sqlite3.Error, OSError) as e:
        return f"{DB_NAME} is unreadable ({e}); the metrics of this run cannot be shown"
    if con is not None:
        con.close()
    return ""


def _empty() -> dict[str, np.ndarray]:
    return {k: np.empty(0) for k in ("step", "epoch", "wall_time", "value")} | {"name": np.empty(0, object)}


def _columns_of(rows: list[tuple]) -> dict[str, np.ndarray]:
    cols = list(zip(*rows))
    return {
        "step": np.asarray(cols[1], np.int64), "epoch": np.asarray(cols[2], np.float64),
        "wall_time": np.asarray(cols[3], np.float64), "name": np.asarray(cols[4], object),
        "value": np.asarray(cols[5], np.float64),
    }


def _select_scalars(con: sqlite3.Connection, after: int, names: list[str] | None) -> list[tuple]:
    q = "SELECT rowid, step, epoch, wall_time, name, value FROM scalars WHERE rowid > ?"
    args: list[Any] = [after]
    if names:
        q += f" AND name IN ({','.join('?' * len(names))})"
        args += list(names)
    return con.execute(q + " ORDER BY rowid", args).fetchall()


def read_new_scalars(run_dir: Path | str, cursor: ScalarCursor = ScalarCursor(), names: list[str] | None = None
                     ) -> tuple[dict[str, np.ndarray], ScalarCursor, bool]:
    """Scalars after ``cursor`` as columns {step, epoch, wall_time, name, value}, the new
    cursor, and ``reset``: True when rows the caller holds were deleted since (its buffer must
    be replaced by these columns, which then hold every row from the start)."""
    try:
        con = connect_ro(run_dir)
    except (sqlite3.Error, OSError):
        con = None
    if con is None:
        return _empty(), cursor, False
    try:
        con.execute("BEGIN")  # one snapshot: the generation and the rows agree
        try:
            row = con.execute("SELECT value FROM store_meta WHERE key = 'generation'").fetchone()
            generation = int(row[0]) if row else 0
        except sqlite3.OperationalError:  # a store from before generations
            generation = 0
        reset = generation != cursor.generation
        rows = _select_scalars(con, 0 if reset else cursor.seq, names)
        con.execute("COMMIT")
    except sqlite3.Error:  # table not created yet, or a damaged file
        return _empty(), cursor, False
    finally:
        con.close()
    seq = int(rows[-1][0]) if rows else (0 if reset else cursor.seq)
    return (_columns_of(rows) if rows else _empty()), ScalarCursor(generation, seq), reset


def read_scalars(run_dir: Path | str, after_rowid: int = 0,
                 names: list[str] | None = None) -> tuple[dict[str, np.ndarray], int]:
    """Scalars logged after ``after_rowid`` (0 = all), as columns {step, epoch, wall_time,
    name, value} of equal length, and the last rowid seen. A reader that keeps rows between
    calls should use :func:`read_new_scalars`, which also says when held rows were deleted."""
    try:
        con = connect_ro(run_dir)
    except (sqlite3.Error, OSError):
        con = None
    if con is None:
        return _empty(), after_rowid
    try:
        rows = _select_scalars(con, after_rowid, names)
    except sqlite3.Error:  # table not created yet, or a damaged file
        return _empty(), after_rowid
    finally:
        con.close()
    if not rows:
        return _empty(), after_rowid
    return _columns_of(rows), int(rows[-1][0])


def read_metric(run_dir: Path | str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one scalar, in step order."""
    cols, _ = read_scalars(run_dir, names=[name])
    order = np.argsort(cols["step"], kind="stable")
    return cols["step"][order], cols["value"][order]


def last_values(run_dir: Path | str) -> dict[str, float]:
    """The latest value of every scalar."""
    with contextlib.suppress(sqlite3.Error, OSError):
        con = connect_ro(run_dir)
        if con is None:
            return {}
        try:
            rows = con.execute(
                "SELECT name, value FROM scalars WHERE rowid IN (SELECT MAX(rowid) FROM scalars GROUP BY name)"
            ).fetchall()
        finally:
            con.close()
        return {n: float(v) for n, v in rows}
    return {}


def read_events(run_dir: Path | str) -> list[dict[str, Any]]:
    with contextlib.suppress(sqlite3.Error, OSError):
        con = connect_ro(run_dir)
        if con is None:
            return []
        try:
            rows = con.execute("SELECT step, wall_time, level, message FROM events ORDER BY rowid").fetchall()
        finally:
            con.close()
        return [dict(step=s, wall_time=t, level=lv, message=m) for s, t, lv, m in rows]
    return []
