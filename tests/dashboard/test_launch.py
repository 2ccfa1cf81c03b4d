"""Starting and stopping runs from the dashboard: arguments validated as the CLI would, a
detached process with its log, SIGTERM to a running trainer and refusals otherwise."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dashboard import launch
from trainer.store import RunWriter, read_run_info


def test_train_arguments_are_validated_before_anything_starts(tmp_path):
    argv = launch.train_argv(tmp_path, "mae", "shapes", 50, "m1", ["mae.mask_ratio=0.9", ""])
    assert argv == ["train", "--method", "mae", "--data", "shapes", "--steps", "50", "--runs-dir", str(tmp_path),
                    "--name", "m1", "--set", "mae.mask_ratio=0.9"]
    with pytest.raises(launch.LaunchError, match=r"mae.mask_ratio=1.5 is out of range"):
        launch.train_argv(tmp_path, "mae", "shapes", 50, "", ["mae.mask_ratio=1.5"])
    with pytest.raises(launch.LaunchError, match="unknown field 'dino.nope'"):
        launch.train_argv(tmp_path, "dino", "shapes", 50, "", ["dino.nope=1"])
    with pytest.raises(launch.LaunchError, match="may use letters"):
        launch.train_argv(tmp_path, "dino", "shapes", 50, "bad name; rm -rf /", [])
    with pytest.raises(launch.LaunchError, match="refuses"):
        launch.train_argv(tmp_path, "dino", "imagenet", 50, "", [])
    RunWriter.create(tmp_path, "taken", {}, "dino").close()
    with pytest.raises(launch.LaunchError, match="already exists"):
        launch.train_argv(tmp_path, "dino", "shapes", 50, "taken", [])
    assert launch.ablate_argv(tmp_path, 20)[:2] == ["ablate", "centering-sharpening"]
    assert launch.ablate_argv(tmp_path, 100, "mask-ratio", seeds=2, parallel=2) == [
        "ablate", "mask-ratio", "--runs-dir", str(tmp_path), "--steps", "100", "--seeds", "2", "--parallel", "2"]
    with pytest.raises(launch.LaunchError, match=r"--seeds 0 must lie in \[1, 100\]"):
        launch.ablate_argv(tmp_path, 100, "registers", seeds=0)
    recipe = launch.train_argv(tmp_path, "dino", "shapes", 50, "", ["dino.gram_start=10"], preset="dinov3")
    assert recipe[-4:] == ["--preset", "dinov3", "--set", "dino.gram_start=10"]  # --set still wins over the recipe


def test_started_command_runs_detached_and_logs_its_output(tmp_path):
    # a folder dataset at a missing path passes config validation and fails at once in the
    # trainer: the page must find the trainer's own message in the log
    argv = launch.train_argv(tmp_path, "dino", "folder", 5, "f", ["data.path=/no/such/folder"])
    started = launch.start(tmp_path, argv, "f")
    assert started.argv[:3] == [sys.executable, "-m", "trainer"]
    deadline = time.time() + 120
    while started.pid not in (codes := launch.reap()) and time.time() < deadline:
        time.sleep(0.2)
    assert codes.get(started.pid) == 2
    assert started.log.parent == tmp_path / launch.LAUNCH_DIR
    assert "/no/such/folder" in launch.tail(started.log)
    assert launch.recent_logs(tmp_path) == [started.log]


_FAKE_TRAINER = textwrap.dedent("""
    import signal, sys, time
    from trainer.store import RunWriter
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))  # before run.json exists: Stop may come at once
    w = RunWriter.create(sys.argv[1], "live", {}, "dino")
    step = 0
    while not stop:
        w.log_scalars(step, 0.0, {"train/loss": 1.0}); step += 1; time.sleep(0.05)
    w.set_status("stopped", "stopped by signal SIGTERM"); w.close()
""")


def test_stop_sends_sigterm_to_a_running_trainer_and_refuses_otherwise(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _FAKE_TRAINER, str(tmp_path)],
                            cwd=Path(launch.__file__).resolve().parents[1])
    try:
        deadline = time.time() + 60
        while not (tmp_path / "live" / "run.json").exists() and time.time() < deadline:
            time.sleep(0.1)
        assert "asked run 'live'" in launch.stop(tmp_path / "live")
        assert proc.wait(30) == 0
        info = read_run_info(tmp_path / "live")
        assert (info["status"], info["reason"]) == ("stopped", "stopped by signal SIGTERM")
        with pytest.raises(launch.LaunchError, match="is stopped, not running"):
            launch.stop(tmp_path / "live")
        with pytest.raises(launch.LaunchError, match="not a run folder"):
            launch.stop(tmp_path / "missing")
    finally:
        proc.kill()
        proc.wait()


def test_stop_refuses_a_pid_that_is_no_trainer(tmp_path):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        w = RunWriter.create(tmp_path, "r", {}, "dino")
        w.info["pid"] = sleeper.pid  # a recycled pid now owned by another program
        w._write_info()
        # the pid's start time is not the trainer's: the run reads as stopped and is not signalled
        with pytest.raises(launch.LaunchError, match="is stopped, not running"):
            launch.stop(tmp_path / "r")
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


_FAKE_LAUNCHER = textwrap.dedent("""
    import signal, sys, time
    from trainer.config import Config
    from trainer.launcher import Plan
    from trainer.store import RunWriter
    root = sys.argv[1]
    cfgs = [Config().with_overrides([f"run.runs_dir={root}", f"run.name=a{i}", "optim.steps=50"]) for i in range(3)]
    plan = Plan(cfgs, "demo-x", "demo", 2)
    plan.write()
    w = RunWriter.create(root, "a0", {"optim": {"steps": 50}}, "dino")
    w.log_scalars(5, 0.0, {"train/loss": 1.0})
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    print("ready", flush=True)
    while not stop:
        time.sleep(0.05)
    w.set_status("stopped", "stopped by signal SIGTERM"); w.close()
    from trainer.stopping import StopFlag
    flag = StopFlag(); flag.reason = "stopped by signal SIGTERM"
    plan.end(flag, cfgs[1:])
""")


def test_a_run_of_a_launch_in_progress_is_stopped_by_stopping_its_launcher(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _FAKE_LAUNCHER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(launch.__file__).resolve().parents[1])
    try:
        assert proc.stdout.readline().strip() == "ready"
        plan = launch.latest_launch(tmp_path)
        assert plan["alive"] and plan["pid"] == proc.pid
        table = launch.launch_progress(tmp_path, plan)
        assert table[["run", "status", "step", "steps"]].values.tolist() == [
            ["a0", "running", 5, 50], ["a1", "waiting", 0, 50], ["a2", "waiting", 0, 50]]
        assert launch.progress_summary(plan, table).startswith("1 of 3 runs training (step 5 of 50 on average), "
                                                               "2 waiting; started ")
        # two runs of the same launch ticked: one SIGTERM, to the launcher, said once
        lines = launch.stop_runs(tmp_path, ["a0", "a0"])
        assert len(lines) == 1 and f"asked the demo 'demo-x' (pid {proc.pid}) to stop" in lines[0]
        assert proc.wait(30) == 0
        plan = launch.latest_launch(tmp_path)
        assert not plan["alive"] and plan["not_started"] == ["a1", "a2"]
        table = launch.launch_progress(tmp_path, plan)
        assert table["status"].tolist() == ["stopped", "not started", "not started"]
        assert "1 stopped, 2 not started; ended after" in launch.progress_summary(plan, table)
        assert launch.stop_runs(tmp_path, ["a0"]) == ["cannot stop 'a0': run 'a0' is stopped, not running"]
        with pytest.raises(launch.LaunchError, match="has already ended"):
            launch.stop_launch(plan)
    finally:
        proc.kill()
        proc.wait()
