"""A study killed part-way resumes: the same command with its --group reuses the runs that had
finished (their files untouched), continues the interrupted one from its checkpoint (no step
trained or logged twice) and trains the ones never started; --budget says what it chose."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.trainer.test_launcher import TINY
from trainer.store import list_checkpoints, read_events, read_run_info, read_scalars

SETS = [x for s in [*TINY, "run.ckpt_every=5", "run.eval_every=1000"] for x in ("--set", s)]


def _ablate(root, *extra):
    return [sys.executable, "-m", "trainer", "ablate", "jepa-ema", "--seeds", "2", "--steps", "120", "--group", "g",
            "--runs-dir", str(root), *SETS, *extra]


def _status(run_dir) -> str:
    try:
        return read_run_info(run_dir)["status"]
    except Exception:  # noqa: BLE001 - not made yet
        return ""


@pytest.mark.slow
def test_a_killed_study_resumes_and_reuses_the_finished_runs(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    first, second = tmp_path / "g-ema-s0", tmp_path / "g-no-ema-s0"
    proc = subprocess.Popen(_ablate(tmp_path), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (_status(first) == "finished" and any(c.step >= 10 for c in list_checkpoints(second))):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)  # no checkpoint, no final status: the hard way
    proc.wait()
    assert _status(second) == "stopped"  # run.json still says running; its writer is gone
    killed_at = max(c.step for c in list_checkpoints(second))
    assert 10 <= killed_at < 120
    assert not (tmp_path / "g-ema-s1").exists()  # never started
    before = (read_scalars(first)[0]["step"].size, (first / "run.json").read_bytes(), (first / "metrics.sqlite").stat())

    out = subprocess.run(_ablate(tmp_path, "--parallel", "2"), env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "reused (finished before): g-ema-s0" in out.stdout
    assert "resumed from their checkpoints: g-no-ema-s0" in out.stdout
    assert "== resumed g-no-ema-s0" in out.stdout and "== started g-ema-s1" in out.stdout
    assert "g-ema-s0 (" not in out.stdout  # not started again
    for name in ("g-ema-s0", "g-no-ema-s0", "g-ema-s1", "g-no-ema-s1"):
        assert _status(tmp_path / name) == "finished", name
    after = (read_scalars(first)[0]["step"].size, (first / "run.json").read_bytes(), (first / "metrics.sqlite").stat())
    assert after[:2] == before[:2] and after[2].st_mtime_ns == before[2].st_mtime_ns  # untouched
    events = [e["message"] for e in read_events(second)]
    resumed = [m for m in events if m.startswith("resumed from step")]
    assert len(resumed) == 1 and int(resumed[0].split()[-1]) >= 10
    cols, _ = read_scalars(second, names=["train/loss"])
    steps = np.sort(cols["step"])
    assert np.array_equal(steps, np.unique(steps)) and steps[-1] == 120  # every step once, to the end
    assert np.array_equal(steps, np.arange(steps[0], 121, steps[0]))

    again = subprocess.run(_ablate(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "every run of the study has finished already" in again.stdout
    other = subprocess.run(_ablate(tmp_path)[:-2] + ["--steps", "400"], env=env, capture_output=True, text=True)
    assert other.returncode == 2 and "was trained with optim.steps=120, this command asks optim.steps=400" in \
        other.stderr


def test_budget_fits_the_steps_to_the_measured_costs_and_says_so(tmp_path, monkeypatch, capsys):
    """Costs stubbed to hand-worked values: each arm 5 s to start, 2 evaluations of 1 s, 0.1 s
    per step (no-ema 0.2 s); 2 seeds run one at a time: 4 x 7 s + 2 x 0.1 s x S + 2 x 0.2 s x S
    <= 60 s gives S <= 53, so 50 steps. The runs then train those steps, and a rerun keeps them."""
    from trainer import step_cost
    from trainer.__main__ import main

    costs = {"ema": step_cost.RunCost(5.0, 0.1, 1.0), "no-ema": step_cost.RunCost(5.0, 0.2, 1.0)}
    monkeypatch.setattr(step_cost, "measure", lambda cfg, threads: costs[cfg.run.arm])
    argv = ["ablate", "jepa-ema", "--seeds", "2", "--group", "b", "--runs-dir", str(tmp_path), "--budget", "1",
            *SETS, "--set", "optim.warmup_steps=2"]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ema: 100 ms per step, 1.0 s per evaluation, 5.0 s to start" in out
    assert "budget 1 min: 4 runs, 1 at a time -> 50 steps per run (estimated 1.0 min" in out
    assert {read_run_info(tmp_path / f"b-{a}-s{s}")["config"]["optim"]["steps"] for a in ("ema", "no-ema")
            for s in (0, 1)} == {50}
    assert main(argv) == 0
    assert "group b exists: keeping its 50 steps per run" in capsys.readouterr().out


def test_measured_costs_are_positive_and_a_run_estimate_adds_them_up():
    from trainer.config import Config
    from trainer.step_cost import RunCost, measure

    cfg = Config().with_overrides([*TINY, "run.method=ijepa", "optim.steps=30", "run.eval_every=10"])
    c = measure(cfg, threads=1, steps=2)
    assert c.step > 0 and c.evaluate > 0 and c.start > 0
    assert RunCost(4.0, 0.5, 2.0).seconds(cfg) == 4.0 + 30 * 0.5 + 4 * 2.0  # evaluations at 0, 10, 20, 30
