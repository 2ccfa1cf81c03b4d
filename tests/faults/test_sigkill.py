"""Promise: a SIGKILL at any moment, mid-checkpoint included, leaves a store that reads, a newest
whole checkpoint that loads, a run that resumes, and every metric row a reader saw committed
before the kill still there (the flush policy: one committed SQLite transaction per
``log_scalars``, see trainer/metrics_db.py). The run is killed 24 times, 16 of them at exact
points inside writes and 8 at random moments, checked after every kill, then resumed to the
end and compared with an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import time

import numpy as np
import pytest
import torch

from tests.faults import kill_child
from tests.faults.helpers import TINY, forkserver
from trainer.store import (
    ScalarCursor,
    list_checkpoints,
    load_checkpoint,
    load_optim_state,
    read_metric,
    read_new_scalars,
    read_run_info,
    read_scalars,
    scan_runs,
)

pytestmark = pytest.mark.slow

STEPS = 300
EXTRA = [f"optim.steps={STEPS}", "run.ckpt_every=4", "run.keep_ckpts=2"]
# exact kill points: (where, at its n-th occurrence in that life)
POINTS = [("rename", 1), ("rename", 2), ("rename", 3), ("rename", 5), ("torch.save", 1), ("torch.save", 2),
          ("safetensors", 1), ("safetensors", 3), ("unlink", 1), ("unlink", 2), ("unlink", 4), ("fsync", 2),
          ("fsync", 5), ("fsync", 9), ("sqlite", 3), ("sqlite", 20)]
RANDOM_KILLS = 8


def _rows(run) -> set[tuple]:
    cols, _ = read_scalars(run)
    return set(zip(cols["step"].tolist(), cols["name"].tolist(), cols["value"].tolist()))


def _check_store(run, seen: set[tuple], names: set[str] | None) -> None:
    """What must hold after every kill."""
    info = read_run_info(run)  # run.json reads, and the dead trainer is seen as gone
    assert info["status"] == "stopped", info
    runs, damaged = scan_runs(run.parent)
    assert damaged == [] and [r["run_id"] for r in runs] == [run.name]
    cks = list_checkpoints(run)
    if cks:  # the newest whole checkpoint loads, weights and optimiser state
        newest = cks[-1]
        assert newest.meta["step"] == newest.step
        assert all(torch.isfinite(t).all() for t in load_checkpoint(newest.path).values())
        assert load_optim_state(newest) is not None
    rows = _rows(run)
    lost = seen - rows
    assert not lost, f"rows seen committed before the kill are gone: {sorted(lost)[:5]}"
    if names:  # no torn step: every logged step has all its rows
        by_step: dict[int, set[str]] = {}
        for step, name, _ in rows:
            if step > 0 and not name.startswith("eval/"):
                by_step.setdefault(step, set()).add(name)
        assert all(v == names for v in by_step.values())


def test_sigkill_at_any_moment_loses_nothing_acknowledged_and_resumes_exactly(tmp_path):
    ctx = forkserver()
    root = tmp_path / "runs"
    overrides = TINY + [f"run.runs_dir={root}", *EXTRA]

    ref_root = tmp_path / "ref"
    ref = ctx.Process(target=kill_child.run,
                      args=(str(ref_root), "ref", TINY + [f"run.runs_dir={ref_root}", *EXTRA, "run.name=ref"], None))
    ref.start()
    ref.join(300)
    assert ref.exitcode == 0

    rng = random.Random(14)
    plan = [("point", p) for p in POINTS] + [("random", rng.uniform(0.0, 0.8)) for _ in range(RANDOM_KILLS)]
    plan = plan[:1] + rng.sample(plan[1:], len(plan) - 1)  # the first life dies in a write, after creating the run
    run, names, kills, points_hit = root / "killed", None, 0, set()
    cursor, seen = ScalarCursor(), set()
    for kind, what in plan:
        kill = what if kind == "point" else None
        child = ctx.Process(target=kill_child.run, args=(str(root), "killed", overrides + ["run.name=killed"], kill))
        child.start()
        t_training = None
        while child.is_alive():
            if run.exists():
                # read as the dashboard does: a resume's truncation (new generation) drops what
                # was seen of the abandoned timeline; every row seen since must survive the kill
                cols, cursor, reset = read_new_scalars(run, cursor)
                new = set(zip(cols["step"].tolist(), cols["name"].tolist(), cols["value"].tolist()))
                seen = new if reset else seen | new
                if t_training is None and (reset or (kills == 0 and new)):
                    t_training = time.time()  # resumed (its truncation is a new generation): training
            if kind == "random" and t_training is not None and time.time() - t_training > what:
                os.kill(child.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        child.join(60)
        assert child.exitcode == -signal.SIGKILL, f"{kind} {what}: the run was not killed (exit {child.exitcode})"
        kills += 1
        points_hit.add(what[0] if kind == "point" else "random")
        if names is None:
            cols, _ = read_scalars(run)
            names = {n for s, n in zip(cols["step"], cols["name"]) if s == 1} or None
        _check_store(run, seen, names)
    assert kills >= 20 and points_hit == {*kill_child.POINTS, "random"}
    last = list_checkpoints(run)[-1].step
    assert last < STEPS, "the run finished while being killed; the last lives proved nothing"

    final = ctx.Process(target=kill_child.run, args=(str(root), "killed", overrides, None))
    final.start()
    final.join(300)
    assert final.exitcode == 0
    assert read_run_info(run)["status"] == "finished"
    assert list(run.rglob(".*.tmp*")) == []  # every leftover of the kills was cleaned
    a, b = load_checkpoint(list_checkpoints(ref_root / "ref")[-1].path), load_checkpoint(list_checkpoints(run)[-1].path)
    assert a.keys() == b.keys()
    for k in a:  # student, EMA teacher and centre continue exactly across 24 kills
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0)
    sa, la = read_metric(ref_root / "ref", "train/loss")
    sb, lb = read_metric(run, "train/loss")
    assert sb.tolist() == list(range(1, STEPS + 1))  # one curve: no duplicated and no missing step
    np.testing.assert_allclose(lb, la, atol=1e-4)
