"""Break 5 (store): a run on a read-only mount showed 0 metrics, because the WAL database could
not create its ``-shm`` file and the reader swallowed the error, although the rows were there.
Promise: such a run shows all its metrics (immutable read, or a private copy when a ``-wal``
holds rows), and a database that cannot be read at all shows why on the Runs page."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.faults.helpers import REPO, env, read_only_view
from trainer.store import (
    RunWriter,
    last_values,
    metrics_problem,
    read_events,
    read_new_scalars,
    read_run_info,
    read_scalars,
)

_KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from trainer.store import RunWriter
    root, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    w = RunWriter.create(root, "killed", {}, "dino") if first == 1 else RunWriter.reopen(Path(root) / "killed")
    for step in range(first, last + 1):
        w.log_scalars(step, 0.0, {"train/loss": float(step)})
    if first == 1:
        w.log_event(50, "info", "fifty")
    print("ready", flush=True)
    time.sleep(60)
""")


def _killed_run(root, first: int = 1, last: int = 50) -> None:
    """A run whose trainer was SIGKILLed: its rows still sit in metrics.sqlite-wal."""
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(root), str(first), str(last)], cwd=REPO,
                            env=env(), stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _closed_run(root) -> None:
    w = RunWriter.create(root, "closed", {}, "dino")
    for step in range(1, 51):
        w.log_scalars(step, 0.0, {"train/loss": float(step)})
    w.log_event(50, "info", "fifty")
    w.set_status("finished")
    w.close()


@pytest.mark.parametrize("case", ["killed, -wal without -shm", "killed, -wal and -shm", "closed cleanly"])
def test_a_run_on_a_read_only_mount_shows_all_its_metrics(tmp_path, case):
    root = tmp_path / "runs"
    root.mkdir()
    if case.startswith("killed"):
        _killed_run(root)
        run_name = "killed"
        assert (root / "killed" / "metrics.sqlite-wal").stat().st_size > 0  # the rows are in the WAL
        if "without" in case:  # e.g. copied without it, or the share dropped it
            (root / "killed" / "metrics.sqlite-shm").unlink(missing_ok=True)
    else:
        _closed_run(root)
        run_name = "closed"
    with read_only_view(root) as ro:
        run = ro / run_name
        cols, _ = read_scalars(run)
        assert cols["value"].tolist() == [float(s) for s in range(1, 51)]
        held, cursor, _ = read_new_scalars(run)
        assert len(held["step"]) == 50 and cursor.seq == 50
        assert last_values(run) == {"train/loss": 50.0}
        assert [e["message"] for e in read_events(run)] == ["fifty"]
        assert metrics_problem(run) == ""
        assert read_run_info(run)["status"] in ("stopped", "finished")


def test_a_private_copy_follows_a_database_that_changed(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    _killed_run(root)
    (root / "killed" / "metrics.sqlite-shm").unlink(missing_ok=True)
    with read_only_view(root) as ro:
        assert len(read_scalars(ro / "killed")[0]["step"]) == 50
    # the run goes on elsewhere (resumed, killed again: more rows in the WAL), then is read again
    _killed_run(root, 51, 60)
    (root / "killed" / "metrics.sqlite-shm").unlink(missing_ok=True)
    with read_only_view(root) as ro:
        assert read_scalars(ro / "killed")[0]["step"].tolist() == list(range(1, 61))


def test_an_unreadable_database_shows_its_reason_on_the_runs_page(tmp_path):
    from dashboard.runs import runs_frame

    root = tmp_path / "runs"
    _closed_run(root)
    shutil.copytree(root / "closed", root / "garbled")
    (root / "garbled" / "metrics.sqlite").write_bytes(b"this is not a database" * 100)
    assert "metrics.sqlite is unreadable (file is not a database)" in metrics_problem(root / "garbled")
    assert metrics_problem(root / "closed") == ""
    df = runs_frame(root).set_index("run")
    assert "file is not a database" in df.loc["garbled", "reason"]
    assert df.loc["closed", "reason"] == "" and df.loc["closed", "loss"] == 50.0
