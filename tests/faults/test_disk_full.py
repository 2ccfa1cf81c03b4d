"""Break 4 (disk half): a full disk ended in a traceback; when it struck during the first
checkpoint a partial ``.optim.pt.tmp`` was left and run.json stayed "running". Promise: one
clear line, the run marked failed with the reason, nothing half-written left looking valid;
a disk already (nearly) full is refused before any data loads."""

from __future__ import annotations

import errno

import pytest

from tests.faults.helpers import main_in_process, one_line, tiny_argv, tmpfs
from trainer import store
from trainer.store import list_checkpoints, read_events, read_run_info, scan_runs

NO_DATA = ["--data", "folder", "--data-path", "/nonexistent/images"]


def _fill(where, leave_bytes: int) -> None:
    """Fill the file system of ``where`` until ``leave_bytes`` remain free."""
    import os

    st = os.statvfs(where)
    with open(where / "filler", "wb") as f:
        f.write(b"\0" * max(st.f_bavail * st.f_frsize - leave_bytes, 0))


def _assert_failed_cleanly(run, line: str) -> None:
    assert "No space left on device" in line and "free some space" in line, line
    info = read_run_info(run)
    assert info["status"] == "failed" and "No space left on device" in info["reason"]
    assert list(run.rglob(".*.tmp*")) == []  # no partial file left behind
    for ck in list_checkpoints(run):  # whatever lists as a checkpoint is whole
        store.load_checkpoint(ck.path)
        store.load_optim_state(ck)


def test_a_disk_that_fills_during_the_first_checkpoint(capsys, monkeypatch):
    monkeypatch.setattr(store, "MIN_FREE_BYTES", 0)
    with tmpfs("2m") as disk:
        _fill(disk, 400 << 10)  # room for run.json, metrics and the weights, not the optimiser state
        code, err = main_in_process(tiny_argv(disk / "runs", "full", "optim.steps=6", "run.ckpt_every=2"), capsys)
        assert code == 1
        _assert_failed_cleanly(disk / "runs" / "full", one_line(err))
        assert list_checkpoints(disk / "runs" / "full") == []


def test_a_write_failing_with_enospc_mid_checkpoint(tmp_path, capsys, monkeypatch):
    """The same without a tmpfs (no root needed): the optimiser state's write fails half-way."""
    import torch

    real_save = torch.save

    def half_then_full(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        f.truncate(f.tell() // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.torch, "save", half_then_full)
    code, err = main_in_process(tiny_argv(tmp_path, "full", "optim.steps=6", "run.ckpt_every=2"), capsys)
    assert code == 1
    _assert_failed_cleanly(tmp_path / "full", one_line(err))
    assert list_checkpoints(tmp_path / "full") == []
    assert any("No space left" in e["message"] for e in read_events(tmp_path / "full"))


def test_a_nearly_full_disk_is_refused_before_the_data_loads(capsys):
    with tmpfs("2m") as disk:
        code, err = main_in_process(["train", "--runs-dir", str(disk / "runs"), *NO_DATA], capsys)
        assert code == 2
        line = one_line(err)
        assert "MB free; free some space or pass another --runs-dir" in line and "nonexistent" not in line
        assert scan_runs(disk / "runs") == ([], [])


@pytest.mark.parametrize("fails", ["metrics", "run.json"])
def test_metrics_or_status_writes_that_fail_end_the_run_in_one_line(tmp_path, capsys, monkeypatch, fails):
    import sqlite3

    from trainer import metrics_db

    calls = {"n": 0}
    if fails == "metrics":
        def insert(db, rows):
            calls["n"] += 1
            if calls["n"] == 3:
                raise sqlite3.OperationalError("database or disk is full")
            real(db, rows)

        real = metrics_db.insert_scalars
        monkeypatch.setattr(store, "insert_scalars", insert)
    else:
        real_write = store.atomic_write_json

        def write(path, obj):
            if path.name == "run.json" and isinstance(obj, dict) and obj.get("step") == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_write(path, obj)

        monkeypatch.setattr(store, "atomic_write_json", write)
    code, err = main_in_process(tiny_argv(tmp_path, "r", "optim.steps=6", "run.ckpt_every=2"), capsys)
    assert code == 1
    line = one_line(err)
    assert ("full" in line or "No space left" in line) and "free some space" in line
    assert read_run_info(tmp_path / "r")["status"] == "failed"
