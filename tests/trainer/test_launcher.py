"""Launches of several runs (demo, ablate): the demo's order and shape, and one SIGTERM that
stops the whole launch -- every run in progress marked stopped, no further run started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainer.__main__ import demo_configs
from trainer.launcher import read_plans
from trainer.store import list_runs, read_scalars

# small enough to start in seconds, long enough (steps) to be mid-training when signalled
TINY = ["data.num_train=64", "data.num_val=32", "data.batch_size=8", "data.num_workers=0", "model.preset=custom",
        "model.embed_dim=16", "model.depth=1", "model.num_heads=2", "dino.n_local=0", "dino.hidden_dim=32",
        "dino.bottleneck_dim=16", "dino.out_dim=16", "mae.decoder_dim=16", "mae.decoder_depth=1",
        "mae.decoder_heads=2", "ijepa.pred_dim=16", "ijepa.pred_depth=1", "run.probe_size=2", "run.device=cpu"]


def test_demo_starts_the_grid_first_and_logs_early(tmp_path):
    cfgs = demo_configs(150, str(tmp_path), stamp="s")
    assert [c.run.name for c in cfgs] == [f"demo-ablation-s-{a}" for a in
                                          ("both", "centering-only", "sharpening-only", "neither")] + [
        "demo-dino-s", "demo-mae-s", "demo-ijepa-s"]
    assert {c.run.group for c in cfgs[:4]} == {"demo-ablation-s"} and {c.run.group for c in cfgs[4:]} == {""}
    assert [c.run.method for c in cfgs[4:]] == ["dino", "mae", "ijepa"]
    assert all(c.run.log_every == 5 and c.run.eval_every == 30 and c.optim.steps == 150 for c in cfgs)
    assert all(c.run.runs_dir == str(tmp_path) for c in cfgs)


def _loss_rows(run_dir: str) -> int:
    try:
        return len(read_scalars(run_dir, names=["train/loss"])[0]["step"])
    except Exception:  # noqa: BLE001 - the database may be mid-creation
        return 0


def _demo_then_sigterm(root: Path, parallel: str, wait_for: int) -> list[dict]:
    """Start the demo, wait until ``wait_for`` runs log losses, send ONE SIGTERM, wait for the end."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    sets = [x for s in TINY for x in ("--set", s)]
    proc = subprocess.Popen([sys.executable, "-m", "trainer", "demo", "--runs-dir", str(root), "--steps", "100000",
                             "--parallel", parallel, *sets], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while sum(_loss_rows(r["dir"]) > 0 for r in list_runs(root)) < wait_for:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    folders = sorted(p.name for p in root.iterdir() if (p / "run.json").exists())
    time.sleep(3)  # nothing starts after the launcher has gone
    assert sorted(p.name for p in root.iterdir() if (p / "run.json").exists()) == folders
    assert "not started" in err, err
    return list_runs(root)


def test_one_sigterm_stops_the_whole_demo_side_by_side(tmp_path):
    runs = _demo_then_sigterm(tmp_path, "2", wait_for=1)
    assert 1 <= len(runs) <= 2  # the first two started; one may have died importing, before its folder
    assert {r["status"] for r in runs} == {"stopped"}, [(r["run_id"], r["status"], r["reason"]) for r in runs]
    assert all("SIGTERM" in r["reason"] for r in runs)
    plan = read_plans(tmp_path)[0]
    assert not plan["alive"] and plan["stop_reason"] == "stopped by signal SIGTERM"
    # the runs after the first two never started: no folder, named in the plan
    assert len(plan["not_started"]) == 5 and {"demo-dino", "demo-mae", "demo-ijepa"} <= {
        n.rsplit("-", 2)[0] for n in plan["not_started"]}
    assert not set(plan["not_started"]) & {r["run_id"] for r in runs}


@pytest.mark.slow
def test_one_sigterm_stops_the_whole_demo_in_turn(tmp_path):
    runs = _demo_then_sigterm(tmp_path, "1", wait_for=1)
    assert [r["status"] for r in runs] == ["stopped"] and runs[0]["run_id"].endswith("-both")
    plan = json.loads(Path(read_plans(tmp_path)[0]["path"]).read_text())
    assert len(plan["not_started"]) == 6 and plan["ended"] is not None
