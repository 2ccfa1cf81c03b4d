"""Break 2: nothing stopped a second writer. ``resume`` of a run still training was accepted
(255 of 400 steps logged twice), two ``train --name same`` started together both ran, and after
``truncate_after`` SQLite reused rowids, so a reader's cursor skipped the rewritten rows.
Promise: one writer per run (an OS lock that dies with its process), an atomic create, and
cursors that cannot skip rows."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from tests.faults.helpers import cli, forkserver, one_line, start_cli, tiny_argv
from trainer.store import (
    RunWriter,
    ScalarCursor,
    StoreError,
    list_checkpoints,
    read_new_scalars,
    read_run_info,
    read_scalars,
)


@pytest.mark.slow
def test_resume_of_a_run_still_training_is_refused_in_one_line(tmp_path):
    log = tmp_path / "live.log"
    trainer = start_cli(*tiny_argv(tmp_path, "live", "optim.steps=100000", "run.ckpt_every=10"), log=log)
    run = tmp_path / "live"
    try:
        deadline = time.time() + 120
        while not list_checkpoints(run) and time.time() < deadline and trainer.poll() is None:
            time.sleep(0.05)
        assert list_checkpoints(run), log.read_text()[-2000:]
        r = cli("resume", str(run))
        assert r.returncode == 2
        line = one_line(r.stderr)
        assert f"still being written by process {trainer.pid}" in line and "stop that process first" in line
        assert trainer.poll() is None, "the trainer ended before the second writer came; the test proved nothing"
        trainer.send_signal(signal.SIGTERM)
        assert trainer.wait(60) == 143
    finally:
        trainer.kill()
        trainer.wait()
    info = read_run_info(run)
    assert (info["status"], info["reason"]) == ("stopped", "stopped by signal SIGTERM")
    cols, _ = read_scalars(run, names=["train/loss"])
    steps = cols["step"].tolist()
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 10  # every step logged exactly once
    assert list_checkpoints(run)[-1].step == steps[-1]  # the stop saved the last step


def test_a_second_writer_in_the_same_process_is_refused_and_the_lock_frees_on_close(tmp_path):
    w = RunWriter.create(tmp_path, "r", {}, "dino")
    with pytest.raises(StoreError, match="already being written by this process"):
        RunWriter.reopen(tmp_path / "r")
    w.close()
    RunWriter.reopen(tmp_path / "r").close()


def _create(root: str, name: str, barrier, results) -> None:
    barrier.wait()
    try:
        RunWriter.create(root, name, {}, "dino").close()
        results.put("won")
    except StoreError as e:
        results.put(str(e))


def test_runs_created_together_under_one_name_exactly_one_wins(tmp_path):
    ctx = forkserver()
    n = 6
    for attempt in range(4):
        barrier, results = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_create, args=(str(tmp_path), f"same{attempt}", barrier, results))
                 for _ in range(n)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
        assert outcomes.count("won") == 1, outcomes
        assert all("already exists" in o for o in outcomes if o != "won"), outcomes


@pytest.mark.slow
def test_two_trainers_with_one_name_started_together_only_one_runs(tmp_path):
    argv = tiny_argv(tmp_path / "runs", "same", "optim.steps=3")
    logs = [tmp_path / f"{i}.log" for i in range(2)]
    procs = [start_cli(*argv, log=log) for log in logs]
    codes = [p.wait(180) for p in procs]
    assert sorted(codes) == [0, 2], [log.read_text()[-2000:] for log in logs]
    loser = logs[codes.index(2)].read_text()
    assert "already exists" in one_line(loser)
    cols, _ = read_scalars(tmp_path / "runs" / "same", names=["train/loss"])
    assert cols["step"].tolist() == [1, 2, 3]


def test_a_cursor_sees_every_row_written_after_a_truncation(tmp_path):
    w = RunWriter.create(tmp_path, "r", {}, "dino")
    for step in range(1, 11):
        w.log_scalars(step, 0.0, {"loss": float(step)})
    cols, rowid = read_scalars(tmp_path / "r")
    assert len(cols["step"]) == 10
    held, cursor, _ = read_new_scalars(tmp_path / "r")
    w.truncate_after(5)  # a resume from step 5 rewrites steps 6..
    for step in range(6, 9):
        w.log_scalars(step, 0.0, {"loss": 100.0 + step})
    # the plain cursor no longer skips: the new rows come after every row it has seen
    new, _ = read_scalars(tmp_path / "r", after_rowid=rowid)
    assert new["step"].tolist() == [6, 7, 8] and new["value"].tolist() == [106.0, 107.0, 108.0]
    # the generation cursor also says that rows it holds were deleted, and hands all rows back
    cols, cursor, reset = read_new_scalars(tmp_path / "r", cursor)
    assert reset
    assert cols["step"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert cols["value"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 106.0, 107.0, 108.0]
    w.log_scalars(9, 0.0, {"loss": 109.0})
    cols, cursor, reset = read_new_scalars(tmp_path / "r", cursor)
    assert not reset and cols["step"].tolist() == [9]
    w.close()


def test_the_dashboard_buffer_replaces_rows_a_resume_deleted(tmp_path, monkeypatch):
    from dashboard import loaders

    monkeypatch.setattr(loaders.st, "session_state", {})
    w = RunWriter.create(tmp_path, "r", {}, "dino")
    for step in range(1, 11):
        w.log_scalars(step, 0.0, {"loss": float(step)})
    assert len(loaders.metrics(tmp_path / "r")) == 10
    w.truncate_after(5)
    for step in range(6, 9):
        w.log_scalars(step, 0.0, {"loss": 100.0 + step})
    frame = loaders.metrics(tmp_path / "r")
    np.testing.assert_array_equal(frame["step"].to_numpy(int), np.arange(1, 9))
    np.testing.assert_array_equal(frame["value"].to_numpy(float), [1, 2, 3, 4, 5, 106, 107, 108])
    w.close()


def test_an_old_store_without_seq_columns_is_migrated_in_place(tmp_path):
    import sqlite3

    w = RunWriter.create(tmp_path, "old", {}, "dino")
    w.close()
    db = sqlite3.connect(tmp_path / "old" / "metrics.sqlite")
    db.executescript("DROP TABLE scalars; DROP TABLE events; DROP TABLE store_meta;"
                     "CREATE TABLE scalars (step INTEGER, epoch REAL, wall_time REAL, name TEXT, value REAL);"
                     "CREATE TABLE events (step INTEGER, wall_time REAL, level TEXT, message TEXT);"
                     "INSERT INTO scalars VALUES (1, 0, 0, 'loss', 3.0), (2, 0, 0, 'loss', 2.0);")
    db.close()
    held, cursor, _ = read_new_scalars(tmp_path / "old", ScalarCursor())
    assert held["value"].tolist() == [3.0, 2.0]
    w = RunWriter.reopen(tmp_path / "old")
    w.log_scalars(3, 0, {"loss": 1.0})
    cols, cursor, reset = read_new_scalars(tmp_path / "old", cursor)
    assert reset and cols["value"].tolist() == [3.0, 2.0, 1.0]
    w.close()
