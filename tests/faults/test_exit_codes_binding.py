"""Break 6: a run stopped by a signal exited 0, so a script could not tell it from success; and
started from another working directory, Streamlit found no ``.streamlit/config.toml`` and
bound to every interface. Promise: SIGINT / SIGTERM checkpoint, mark the run stopped and exit
128 + signal (130 / 143); the documented start binds 127.0.0.1 from anywhere and warns when
asked for another address."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from streamlit import file_util as streamlit_file_util

from dashboard.__main__ import streamlit_argv
from dashboard.binding import exposure_warning
from tests.dashboard.server import free_port
from tests.faults.helpers import REPO, cli, env, start_cli, tiny_argv
from trainer.store import list_checkpoints, load_checkpoint, read_metric, read_run_info, read_scalars


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_checkpoints_marks_stopped_exits_distinctly_and_resumes_exactly(tmp_path, sig, code):
    steps = ["optim.steps=60", "run.ckpt_every=1000"]
    log = tmp_path / "run.log"
    proc = start_cli(*tiny_argv(tmp_path, "sig", *steps), log=log)
    run = tmp_path / "sig"
    deadline = time.time() + 120
    logged = lambda: len(read_scalars(run, names=["train/loss"])[0]["step"])  # noqa: E731
    while proc.poll() is None and time.time() < deadline and not logged():
        time.sleep(0.02)
    proc.send_signal(sig)
    assert proc.wait(60) == code, log.read_text()[-2000:]
    name = signal.Signals(sig).name
    info = read_run_info(run)
    assert (info["status"], info["reason"]) == ("stopped", f"stopped by signal {name}")
    stopped_at = list_checkpoints(run)[-1].step
    assert 1 <= stopped_at < 60 and info["step"] == stopped_at
    assert f"stopped by {name} at step {stopped_at}, checkpoint saved; continue with: python -m trainer resume" \
        in log.read_text()
    # Resume and the reference both run in fresh processes with the trainer's own single thread:
    # the stopped part ran there, and a different thread count reorders float sums (~1e-5).
    assert cli("resume", str(run)).returncode == 0
    assert cli(*tiny_argv(tmp_path, "ref", *steps)).returncode == 0
    ref = tmp_path / "ref"
    a, b = load_checkpoint(list_checkpoints(ref)[-1].path), load_checkpoint(list_checkpoints(run)[-1].path)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0)
    assert read_metric(run, "train/loss")[0].tolist() == list(range(1, 61))


def test_the_launcher_binds_loopback_and_warns_for_another_address(monkeypatch):
    monkeypatch.delenv("STREAMLIT_SERVER_ADDRESS", raising=False)
    argv, warning = streamlit_argv([])
    assert "--server.address=127.0.0.1" in argv and warning == ""
    assert argv[:5] == [sys.executable, "-m", "streamlit", "run", str(REPO / "streamlit_app.py")]
    argv, warning = streamlit_argv(["--server.address", "0.0.0.0", "--server.port=8600"])
    assert "--server.address=127.0.0.1" not in argv and argv[-3:] == ["--server.address", "0.0.0.0",
                                                                       "--server.port=8600"]
    assert "'0.0.0.0'" in warning and "ssh -L" in warning
    assert streamlit_argv(["--server.address=::1"])[1] == ""
    assert "every network interface" in exposure_warning(None)
    monkeypatch.setenv("STREAMLIT_SERVER_ADDRESS", "0.0.0.0")  # the user's own setting is kept, with a warning
    argv, warning = streamlit_argv([])
    assert not any(a.startswith("--server.address") for a in argv) and "'0.0.0.0'" in warning


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} write them) with a socket listening on ``port``."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.rsplit(":", 1)
            if state == "0A" and int(p, 16) == port:
                out.add(addr)
    return out


def _wait_listening(proc: subprocess.Popen, port: int) -> set[str]:
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:
        if _listening(port):
            time.sleep(0.5)  # both address families, if it binds both
            return _listening(port)
        time.sleep(0.2)
    raise AssertionError(f"nothing listened on {port}")


def _serve(cmd: list[str], cwd: Path, port: int) -> set[str]:
    """Start ``cmd`` in ``cwd`` and return the addresses it listens on at ``port``."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return _wait_listening(proc, port)
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.slow
def test_the_documented_start_binds_loopback_from_another_folder(tmp_path):
    loopback = {"0100007F"}  # 127.0.0.1
    port = free_port()
    assert _serve([sys.executable, str(REPO / "dashboard"), f"--server.port={port}"], tmp_path, port) == loopback
    # Streamlit releases before script-level config discovery (streamlit PR 10173, 2025) read
    # .streamlit/ from the working folder only: there the bare command binds every interface
    if not hasattr(streamlit_file_util, "get_main_script_streamlit_file_path"):
        port = free_port()
        bare = [sys.executable, "-m", "streamlit", "run", str(REPO / "streamlit_app.py"), f"--server.port={port}",
                "--server.headless=true"]
        assert _serve(bare, tmp_path, port) - loopback
