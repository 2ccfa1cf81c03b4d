"""Planning a study's launch: which runs an earlier launch of the group finished (reused), left
part-way (resumed) or never made (trained); runs with other settings or a live writer refused;
and the budget arithmetic (hand-worked schedules of run times on a few workers)."""

import json

import pytest

from trainer.config import Config, ConfigError
from trainer.store import RunWriter, StoreError
from trainer.studies import STUDIES
from trainer.study_plan import budget_slots, makespan, plan_launch, steps_for_budget, study_configs

JEPA = STUDIES["jepa-ema"]


def _cfgs(root, steps=40):
    return study_configs(JEPA, Config().with_overrides([f"run.runs_dir={root}"]), "g", [0, 1], steps)


def _folder(root, cfg, status, reason=""):
    w = RunWriter.create(root, cfg.run.name, cfg.to_dict(), cfg.run.method, cfg.run.group)
    if status != "running":
        w.set_status(status, reason)
    return w


def test_finished_runs_are_reused_stopped_ones_resumed_missing_ones_trained(tmp_path):
    cfgs = _cfgs(tmp_path)  # g-ema-s0, g-no-ema-s0, g-ema-s1, g-no-ema-s1
    _folder(tmp_path, cfgs[0], "finished").close()
    _folder(tmp_path, cfgs[1], "stopped", "stopped by signal SIGTERM").close()
    _folder(tmp_path, cfgs[2], "failed", "non-finite loss (nan) at step 7; the last good checkpoint is kept").close()
    launch = plan_launch(cfgs, tmp_path)
    assert launch.reuse == ["g-ema-s0", "g-ema-s1"]  # a diverged run diverges again: its failure is the result
    assert launch.resume == ["g-no-ema-s0"] and launch.train == ["g-no-ema-s1"]
    assert [c.run.name for c in launch.to_run] == ["g-no-ema-s0", "g-no-ema-s1"]


def test_a_run_killed_while_writing_is_resumed_and_a_live_one_refused(tmp_path):
    cfgs = _cfgs(tmp_path)
    w = _folder(tmp_path, cfgs[0], "running")  # this process writes it: alive
    with pytest.raises(StoreError, match="is being trained by process"):
        plan_launch(cfgs, tmp_path)
    w.close()  # no final status, as after a SIGKILL; and its writer gone (another process start time):
    info = json.loads((tmp_path / "g-ema-s0" / "run.json").read_text())
    (tmp_path / "g-ema-s0" / "run.json").write_text(json.dumps({**info, "pid_start": info["pid_start"] + 1}))
    assert plan_launch(cfgs, tmp_path).resume == ["g-ema-s0"]


def test_a_rerun_with_other_settings_is_refused_naming_the_field(tmp_path):
    _folder(tmp_path, _cfgs(tmp_path, steps=40)[0], "finished").close()
    with pytest.raises(ConfigError, match=r"trained with optim.steps=40, this command asks optim.steps=80.*"
                                          "another --group"):
        plan_launch(_cfgs(tmp_path, steps=80), tmp_path)


def test_makespan_is_the_launchers_list_order_on_free_workers():
    assert makespan([10, 10, 10, 10], 2) == 20
    assert makespan([30, 10, 10, 10], 2) == 30  # 10 + 10 + 10 on the second worker
    assert makespan([10, 30, 10], 2) == 30 and makespan([5, 5, 5], 1) == 15 and makespan([], 3) == 0


def test_steps_for_budget_fits_the_most_steps():
    # 4 runs of (10 s + 0.5 s per step) on 2 workers: two waves; 120 s allow 2 x (10 + 0.5 s) <= 120 -> 100 steps
    per_run = lambda s: [10 + 0.5 * s] * 4
    assert steps_for_budget(per_run, 120, 2) == 100
    assert steps_for_budget(per_run, 119, 2) == 90  # multiples of 10
    assert steps_for_budget(per_run, 240, 4) == 460  # one wave: 10 + 0.5 s <= 240
    assert steps_for_budget(per_run, 30, 2) is None  # 20 steps need 2 x 20 s
    assert steps_for_budget(lambda s: [1e-6 * s], 60, 1, hi=1000) == 1000  # capped


def test_budget_slots_share_the_cores():
    assert budget_slots(2, 2, 1) == 2 and budget_slots(4, 2, 1) == 2 and budget_slots(2, 16, 8) == 2
    assert budget_slots(3, 16, 5) == 3 and budget_slots(8, 1, 1) == 1
