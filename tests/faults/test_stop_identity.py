"""Break 3: the dashboard's Stop accepted any process whose name starts with "python", so it
sent SIGTERM to an unrelated python process that had inherited a recycled pid; a run started
on another host stayed "running" forever. Promise: the trainer is identified for sure (pid and
process start time in run.json), and a heartbeat tells a live run from a dead one anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from dashboard import launch
from tests.faults.helpers import REPO, env
from trainer import liveness
from trainer.store import RunWriter, read_run_info


def _run_json(run_dir, **fields) -> None:
    info = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**info, **fields}))


@pytest.mark.parametrize("record_start", [True, False], ids=["pid+start", "pid only (older run.json)"])
def test_stop_never_signals_a_python_process_that_inherited_the_pid(tmp_path, record_start):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        RunWriter.create(tmp_path, "r", {}, "dino").close()
        # the trainer died and its pid now belongs to another python program
        fields = {"status": "running", "pid": bystander.pid}
        if not record_start:
            fields.update(pid_start=None, boot_id="")
        _run_json(tmp_path / "r", **fields)
        assert read_run_info(tmp_path / "r")["status"] == "stopped"
        with pytest.raises(launch.LaunchError, match="not running"):
            launch.stop(tmp_path / "r")
        time.sleep(0.2)
        assert bystander.poll() is None, "the bystander was signalled"
    finally:
        bystander.kill()
        bystander.wait()


_TRAINER = textwrap.dedent("""
    import signal, sys, time
    from trainer.store import RunWriter
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    w = RunWriter.create(sys.argv[1], "live", {}, "dino")
    while not stop:
        time.sleep(0.02)
    w.set_status("stopped", "stopped by signal SIGTERM"); w.close()
""")


def test_stop_reaches_the_process_run_json_names(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _TRAINER, str(tmp_path)], cwd=REPO, env=env())
    try:
        deadline = time.time() + 60
        while not (tmp_path / "live" / "run.json").exists() and time.time() < deadline:
            time.sleep(0.05)
        info = read_run_info(tmp_path / "live")
        assert info["pid"] == proc.pid and info["pid_start"] == liveness.process_start(proc.pid)
        assert info["status"] == "running" and liveness.is_same_process(info)
        launch.stop(tmp_path / "live")
        assert proc.wait(30) == 0
        assert read_run_info(tmp_path / "live")["status"] == "stopped"
    finally:
        proc.kill()
        proc.wait()


def test_a_run_of_another_host_reads_as_lost_once_its_heartbeat_is_stale(tmp_path):
    RunWriter.create(tmp_path, "far", {}, "dino").close()
    run = tmp_path / "far"
    _run_json(run, status="running", host="gpu-box-7", pid=4242, pid_start=1)
    now = time.time()
    (run / "heartbeat").write_text(json.dumps({"time": now - 30}))
    for name in ("heartbeat", "run.json", "metrics.sqlite", "metrics.sqlite-wal"):
        if (run / name).exists():
            os.utime(run / name, (now - 30, now - 30))
    assert read_run_info(run)["status"] == "running"  # beat 30 s ago: alive
    old = now - liveness.LOST_AFTER_S - 60
    (run / "heartbeat").write_text(json.dumps({"time": old}))
    for name in ("heartbeat", "run.json", "metrics.sqlite", "metrics.sqlite-wal"):
        if (run / name).exists():
            os.utime(run / name, (old, old))
    info = read_run_info(run)
    assert info["status"] == "stopped" and "lost: no heartbeat from host gpu-box-7" in info["reason"]
    with pytest.raises(launch.LaunchError, match="not running"):
        launch.stop(run)


def test_the_writer_beats_while_open_and_stops_beating_when_closed(tmp_path, monkeypatch):
    monkeypatch.setattr(liveness, "HEARTBEAT_EVERY_S", 0.05)
    w = RunWriter.create(tmp_path, "r", {}, "dino")
    beat = lambda: json.loads((tmp_path / "r" / "heartbeat").read_text())["time"]  # noqa: E731
    first = beat()
    time.sleep(0.4)
    assert beat() > first
    w.close()
    last = beat()
    time.sleep(0.3)
    assert beat() == last


def test_a_run_from_before_a_reboot_reads_as_stopped(tmp_path):
    RunWriter.create(tmp_path, "r", {}, "dino").close()
    # this very process, but recorded under another boot: the pid and start time mean nothing now
    _run_json(tmp_path / "r", status="running", pid=os.getpid(), pid_start=liveness.process_start(os.getpid()),
              boot_id="00000000-0000-0000-0000-000000000000")
    assert read_run_info(tmp_path / "r")["status"] == "stopped"
