"""Calibration of the alarms on real runs: zero false alarms on every healthy default at every
logged step, and every collapsed arm flagged by the rule and the step stated here.

The fixtures (``tests/analysis/data/<budget>-<arm>-s<seed>.json``, a few KB each) are the logged
scalars the rules read and the config of real runs on shapes, made with

    python benchmarks/alarm_calibration.py train  --runs-dir RUNS --seeds 0 1 2
    python benchmarks/alarm_calibration.py export --runs-dir RUNS --seeds 0 1 2

(``demo``: the demo's schedule, ``trainer.__main__.demo_configs``, 150 steps; ``cli``: the CLI
default, 300 steps). The rules are replayed over each run as it looked at every logged step
(``analysis.alarms.replay``). The confusion table in docs/architecture.md is this replay
(``alarm_calibration.py table``). ``test_a_real_run_is_flagged_end_to_end`` trains one short run
and checks what the pages and the CLI read from it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from analysis.alarms import RunFacts, diagnose_curves, replay
from analysis.curves import Curves
from trainer.config import Config

DATA = Path(__file__).parent / "data"
FIXTURES = sorted(DATA.glob("*.json"))
# What each labelled run must show: None = never an alarm at any logged step (healthy, or too
# young to judge: "warming up"); else (label, rule, flagged by this step at the latest). The
# truths are the end states measured in docs/architecture.md ("Alarm calibration").
EXPECTED: dict[tuple[str, str], tuple[str, str, int] | None] = {
    # demo budget: the DINO teacher is judged from step 94 (EMA 0.99 -> 1 over 150 steps), windows of 5 logs
    ("demo", "mae"): None,  # k-NN 0.169 -> 0.21-0.23
    ("demo", "ijepa"): None,  # target encoder still > 1/2 its initialisation at step 150 (0.996): warming up
    ("demo", "both"): None,  # 0.87 ln K, KL 0.33, k-NN 0.175 -> 0.195
    ("demo", "dino"): ("not learning", "not-learning", 150),  # k-NN 0.175 -> 0.182 (KoLeo 0.2, 150 steps)
    ("demo", "centering-only"): ("uniform collapse", "uniform-collapse", 120),  # 1.00 ln K, KL 0.004
    ("demo", "sharpening-only"): ("one-hot collapse", "one-hot-collapse", 120),  # 0.00 ln K, KL 0.000
    ("demo", "neither"): ("uniform collapse", "uniform-collapse", 120),  # tau_t = tau_s: 0.94 ln K, KL 0.004
    ("demo", "ijepa-noema"): ("dimensional collapse", "dimensional-collapse", 60),  # RankMe 3.5, std_l2 0.27
    ("demo", "dino-tt008"): ("uniform collapse", "uniform-collapse", 120),  # tau_t 0.08: 1.00 ln K, KL 0.013
    ("demo", "dino-cm0999"): ("one-hot collapse", "one-hot-collapse", 120),  # centre momentum 0.999: 0.00 ln K
    # CLI default, 300 steps, a log every 10: the shipped defaults stay unflagged at every logged step
    ("cli", "dino"): None,  # 0.58 ln K, KL 0.87, k-NN 0.175 -> 0.216
    ("cli", "mae"): None,  # k-NN 0.169 -> 0.222
    ("cli", "ijepa"): None,  # target encoder still warming up at step 300 (0.996 -> 1)
}


def _load(path: Path) -> tuple[dict, Curves, Config]:
    d = json.loads(path.read_text())
    return d, Curves.from_pairs(d["curves"]), Config.from_dict(d["config"])


def _calibration_script():
    spec = importlib.util.spec_from_file_location("alarm_calibration", DATA.parents[2] / "benchmarks"
                                                  / "alarm_calibration.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, mod)  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_every_labelled_run_has_fixtures():
    got = {(json.loads(p.read_text())["budget"], json.loads(p.read_text())["arm"]) for p in FIXTURES}
    assert set(EXPECTED) <= got, f"no fixture for {sorted(set(EXPECTED) - got)}"


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_alarms_on_a_labelled_run(path):
    d, curves, cfg = _load(path)
    want = EXPECTED[(d["budget"], d["arm"])]
    verdicts = replay(curves, RunFacts.of(cfg))
    assert len(verdicts) >= 15  # every logged step of a whole run (150 steps / 5, 300 / 10)
    alarms = [(step, label, rule) for step, label, rule in verdicts if rule]
    if want is None:
        assert not alarms, f"{path.stem}: false alarms at {alarms}"
        return
    label, rule, by = want
    assert alarms, f"{path.stem}: never flagged"
    first = alarms[0]
    assert first[1:] == (label, rule) and first[0] <= by, f"{path.stem}: first alarm {first}, want {want}"
    # the run ends flagged by the same rule, and its verdict (what the pages show) says since when
    assert verdicts[-1][2] == rule, f"{path.stem}: ends as {verdicts[-1]}"
    final = diagnose_curves(curves, cfg)
    assert (final.label, final.rule, final.first_step) == (label, rule, first[0])


def test_fixtures_were_made_with_todays_configs():
    """A default or a demo schedule that changed since the fixtures were made needs a new
    calibration (the command is in this file's docstring)."""
    cal = _calibration_script()
    arms = {r.arm: r for r in cal.RUNS}
    for path in FIXTURES:
        d, _, cfg = _load(path)
        today = cal.config_of(d["budget"], arms[d["arm"]], cfg.run.runs_dir, d["seed"])
        assert today == cfg, f"{path.stem} was made with another config: run the calibration again"


TINY = ["model.preset=custom", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.patch_size=4",
        "data.image_size=16", "data.num_train=256", "data.num_val=128", "data.batch_size=16", "data.num_workers=0",
        "dino.out_dim=16", "dino.hidden_dim=32", "dino.bottleneck_dim=16", "dino.n_local=0", "optim.steps=30",
        "optim.warmup_steps=2", "dino.freeze_last_layer_steps=0", "dino.momentum_teacher=0.9", "run.log_every=2",
        "run.eval_every=10", "run.ckpt_every=1000", "run.device=cpu"]


@pytest.mark.slow  # trains a 30-step run and diagnoses its checkpoint: ~8 s
def test_a_real_run_is_flagged_end_to_end(tmp_path, capsys):
    """A short real DINO run without centring (sharpening only) collapses to one-hot; the run's
    diagnosis (what the Live banner and the Runs table show) and ``python -m analysis --what
    diagnose`` name the rule, the first step flagged and advice that fits its config."""
    from analysis.__main__ import main
    from analysis.alarms import RULE_METRICS
    from analysis.collapse import diagnose_run
    from analysis.curves import read_run_curves
    from trainer.loop import train

    cfg = Config().with_overrides(TINY + ["dino.centering=none", f"run.runs_dir={tmp_path}", "run.name=sharp"])
    run = train(cfg)
    facts = RunFacts.of(cfg.validate())
    assert facts.judge_from == 7  # 0.9 -> 1 over 30 steps: after 7 steps about 0.9^7 = 0.48 is initialisation
    verdicts = replay(read_run_curves(run, RULE_METRICS), facts)
    first = next(v for v in verdicts if v[2])
    # the first window of 5 logs (every 2 steps) that starts at step 7 or later is (8..16)
    assert first == (16, "one-hot collapse", "one-hot-collapse")
    assert {label for s, label, _ in verdicts if s < 16} == {"warming up"}
    d = diagnose_run(run)
    assert (d.label, d.rule, d.first_step, d.step) == ("one-hot collapse", "one-hot-collapse", 16, 30)
    assert d.evidence[0].startswith("[one-hot-collapse] steps 22-30 (mean of 5 logs)")
    assert "centring is off (dino.centering=none); turn it on" in d.advice
    assert main([str(run), "--out", str(tmp_path / "out"), "--what", "diagnose"]) == 0
    out = capsys.readouterr().out
    assert "run (alarms over the logged curves, at step 30): one-hot collapse (one-hot-collapse, first flagged " \
           "at step 16)" in out
    rows = (tmp_path / "out" / "diagnosis.csv").read_text().splitlines()
    assert rows[0] == "judged_on,label,rule,first_step,evidence"
    assert any(r.startswith("run,one-hot collapse,one-hot-collapse,16,") for r in rows)
