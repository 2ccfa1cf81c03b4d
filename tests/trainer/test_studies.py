"""The studies as data: every rule reads arms and metrics that exist, every runnable study builds
valid configs in which only the arms differ, the arm's overrides win over --set, the schedule
scales with the steps, the demo's grid is recognised by its overrides, --list says it all, and
a study whose config fields do not exist yet is refused in one line."""

import pytest

from core.measures import MEASURES
from core.metrics import METRICS
from trainer.__main__ import ABLATIONS, demo_configs, describe_studies, main
from trainer.config import Config
from trainer.studies import STUDIES, match_arm, missing_fields
from trainer.study_plan import schedule_for, study_configs

RUNNABLE = [s for s in STUDIES.values() if not missing_fields(s)]


@pytest.mark.parametrize("study", STUDIES.values(), ids=list(STUDIES))
def test_rules_read_the_studys_arms_and_declared_metrics(study):
    arms = {a.name for a in study.arms}
    assert len(arms) == len(study.arms) >= 2
    assert any(c.headline for c in study.claims)
    for claim in study.claims:
        assert claim.arms() <= arms, (claim.text, claim.arms() - arms)
        for v in claim.values():
            assert v.metric in METRICS or v.metric in MEASURES, v.metric
    assert all(m in METRICS or m in MEASURES for m in study.metrics)
    assert study.method in ("dino", "mae", "ijepa") and study.steps >= 20 and study.seeds >= 2


@pytest.mark.parametrize("study", RUNNABLE, ids=[s.name for s in RUNNABLE])
def test_runs_differ_only_by_arm_and_seed(study):
    base = Config().with_overrides([*study.base, "dino.koleo_weight=0.3", "optim.lr=5e-4"])
    cfgs = study_configs(study, base, "g", [0, 1], 200, user_keys={"optim.lr"})
    assert [c.run.name for c in cfgs] == [f"g-{a.name}-s{s}" for s in (0, 1) for a in study.arms]
    assert {c.run.group for c in cfgs} == {"g"} and {c.run.study for c in cfgs} == {study.name}
    assert {c.run.method for c in cfgs} == {study.method} and all(c.optim.steps == 200 for c in cfgs)
    assert all(c.optim.lr == 5e-4 for c in cfgs)  # the user's value
    assert all(c.run.eval_every == 100 and c.run.ckpt_every == 50 and c.optim.warmup_steps == 20 for c in cfgs)
    flat = [{f"{s}.{k}": v for s, d in c.to_dict().items() for k, v in d.items()} for c in cfgs]
    arm_keys = {o.split("=")[0] for a in study.arms for o in a.overrides(200)} | {
        "run.name", "run.arm", "run.seed"}
    for key in flat[0]:
        if key not in arm_keys:
            assert len({repr(f[key]) for f in flat}) == 1, key  # everything else equal
    for c in cfgs:  # seed s of every arm: the same seed
        assert c.run.seed == int(c.run.name.rsplit("-s", 1)[1])


def test_the_arm_wins_over_set_and_scaled_fields_follow_the_steps():
    tt = STUDIES["teacher-temp"]
    base = Config().with_overrides(["dino.teacher_temp=0.5"])
    cfgs = {c.run.arm: c for c in study_configs(tt, base, "g", [0], 400)}
    assert cfgs["tau0.08"].dino.teacher_temp == 0.08 and cfgs["tau0.02"].dino.warmup_teacher_temp == 0.02
    w = cfgs["warmup0.04-0.07"].dino
    assert (w.warmup_teacher_temp, w.teacher_temp, w.teacher_temp_warmup_steps) == (0.04, 0.07, 120)
    assert schedule_for(150) == {"run.log_every": "10", "run.eval_every": "75", "run.ckpt_every": "37",
                                 "optim.warmup_steps": "15", "dino.freeze_last_layer_steps": "15"}
    assert schedule_for(30)["run.log_every"] == "2"


def test_the_demos_grid_is_matched_to_its_arms_by_their_overrides():
    cs = STUDIES["centering-sharpening"]
    grid = demo_configs(20, "/tmp/x", stamp="s")[:4]
    assert [match_arm(cs, c.to_dict()) for c in grid] == ["both", "centering-only", "sharpening-only", "neither"]
    assert match_arm(cs, Config().to_dict()) is None  # KoLeo 0.2: none of the arms
    assert match_arm(STUDIES["mask-ratio"], grid[0].to_dict()) is None  # another method
    assert ABLATIONS["centering-sharpening"]["both"] == ["dino.koleo_weight=0.05", "dino.centering=mean",
                                                        "dino.sharpening=true"]


def test_list_names_every_study_its_arms_finding_and_rules(capsys):
    assert main(["ablate", "--list"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == describe_studies().strip()
    for s in STUDIES.values():
        assert f"{s.name}: {s.title}" in out and s.finding in out
        assert all(f"arm {a.name}: " in out for a in s.arms)
        assert all(c.text in out for c in s.claims)
    assert "centering-only Teacher entropy / ln K >= 0.9 and centering-only KL teacher-student <= 0.03, " \
           "for every seed" in out
    assert "warmup0.04-0.07: dino.warmup_teacher_temp=0.04 dino.teacher_temp=0.07 " \
           "dino.teacher_temp_warmup_steps=0.3 x steps" in out


def test_a_study_needing_fields_this_config_lacks_is_refused_in_one_line(capsys, monkeypatch):
    import dataclasses

    import trainer.__main__ as cli

    assert missing_fields(STUDIES["ibot"], have=set()) == ["dino.ibot_weight"]
    assert missing_fields(STUDIES["ibot"], have={"dino.ibot_weight"}) == []
    assert missing_fields(STUDIES["ibot"]) == []  # this trainer has iBOT: the study runs
    # a study that needs a field no config has (as iBOT's did before it was built) is refused
    future = dataclasses.replace(STUDIES["ibot"], requires=("dino.future_weight",))
    monkeypatch.setitem(cli.STUDIES, "ibot", future)
    assert main(["ablate", "ibot", "--runs-dir", "/nonexistent"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: study 'ibot' needs dino.future_weight") and "\n" not in err
    assert "not available yet: needs dino.future_weight" in describe_studies()


def test_bad_study_options_exit_2(capsys, tmp_path):
    assert main(["ablate", "registers", "--seeds", "0", "--runs-dir", str(tmp_path)]) == 2
    assert "--seeds 0 must lie in [1, 100]" in capsys.readouterr().err
    assert main(["ablate", "registers", "--budget", "-1", "--runs-dir", str(tmp_path)]) == 2
    assert "--budget -1.0 must be a positive number of minutes" in capsys.readouterr().err
    assert main(["ablate", "--runs-dir", str(tmp_path)]) == 2
    assert "name a study" in capsys.readouterr().err
