"""The alarm rules (``analysis.alarms``) on synthetic curves: each rule's outcomes (warming up,
ok, alarm) at the steps its evidence window and the config's warm-ups put them, and advice that
names what the config supports. The calibration on real runs is ``test_alarm_calibration.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import advice
from analysis.alarms import ALARM, OK, WARMING, WARMING_UP, RunFacts, diagnose_curves, replay, tracks
from analysis.curves import Curves, knn_references
from core import metrics as M
from trainer.config import Config

K = 64
LOG_K = math.log(K)


def cfg_of(*sets: str, method: str = "dino") -> Config:
    return Config().with_overrides([f"run.method={method}", f"dino.out_dim={K}", *sets]).validate()


def dino_curves(steps, entropy, batch_entropy, kl, rankme=12.0, std_l2=0.7, knn=None, init=0.17) -> Curves:
    """DINO logs at ``steps``; entropies as fractions of ln K (scalars or per-step arrays);
    ``knn``: {step: value} evaluations (step 0 = ``init``)."""
    n = len(steps)
    full = (lambda x: np.broadcast_to(np.asarray(x, float), (n,)))
    pairs = {M.DINO_TEACHER_ENTROPY: full(entropy) * LOG_K, M.DINO_TEACHER_BATCH_ENTROPY: full(batch_entropy) * LOG_K,
             M.DINO_KL_TEACHER_STUDENT: full(kl), M.DINO_LOG_K: full(LOG_K), M.COLLAPSE_RANKME: full(rankme),
             M.COLLAPSE_STD_L2: full(std_l2)}
    out = {name: list(zip(steps, v)) for name, v in pairs.items()}
    out[M.EVAL_KNN_TOP1] = [(0, init)] + sorted((knn or {}).items())
    out[M.EVAL_KNN_TOP1_PIXELS] = [(0, 0.6)]
    return Curves.from_pairs(out)


def _flat(steps, value: float) -> list[tuple[int, float]]:
    return [(s, value) for s in steps]


def states(curves: Curves, cfg: Config, rule: str) -> dict[int, int]:
    t = tracks(curves, RunFacts.of(cfg))[rule]
    return dict(zip(t.steps.tolist(), t.state.tolist()))


# --- the config's schedules ---------------------------------------------------------------
def test_ema_half_is_where_less_than_half_the_copy_is_its_initialisation():
    # a constant 0.99 (a cosine to 1 over 10^6 steps barely moves in 100): 0.99^68 = 0.5048, 0.99^69 = 0.4998
    f = RunFacts.of(cfg_of("optim.steps=1000000", "dino.momentum_teacher=0.99"))
    assert f.ema_half == 69
    # the cosine schedule itself, multiplied out step by step
    steps, m0 = 150, 0.99
    left, t = 1.0, 0
    while left >= 0.5:
        left *= 1 - (1 - m0) * 0.5 * (1 + math.cos(math.pi * t / (steps - 1)))
        t += 1
    assert RunFacts.of(cfg_of(f"optim.steps={steps}", f"dino.momentum_teacher={m0}")).ema_half == t == 94
    # I-JEPA's 0.996 never gets there in 300 steps; MAE has no EMA copy; I-JEPA without EMA neither
    assert RunFacts.of(cfg_of("optim.steps=300", method="ijepa")).ema_half == 301
    assert RunFacts.of(cfg_of(method="mae")).ema_half is None
    assert RunFacts.of(cfg_of("ijepa.ema=false", method="ijepa")).ema_half is None


def test_judging_waits_for_every_warm_up_of_the_config():
    f = RunFacts.of(cfg_of("optim.warmup_steps=10", "dino.freeze_last_layer_steps=40", "dino.momentum_teacher=0.5",
                           "dino.teacher_temp_warmup_steps=25"))
    assert (f.lr_warmup, f.frozen_last_layer, f.tau_t_warmup, f.ema_half) == (10, 40, 25, 1 + 1)
    assert f.judge_from == 40
    # without sharpening tau_t has no warm-up to wait for (tau_t = tau_s throughout)
    assert RunFacts.of(cfg_of("dino.sharpening=false", "dino.teacher_temp_warmup_steps=99")).tau_t_warmup == 0
    assert RunFacts.of(cfg_of("optim.warmup_steps=15", method="mae")).judge_from == 15


# --- one rule at a time ---------------------------------------------------------------------
FAST = ("optim.warmup_steps=10", "dino.freeze_last_layer_steps=40", "dino.momentum_teacher=0.5")  # judged from 40
STEPS = list(range(5, 101, 5))


def test_one_hot_rule_warms_up_then_fires_when_its_window_lies_past_the_warm_ups():
    c = dino_curves(STEPS, entropy=0.05, batch_entropy=0.1, kl=0.5)
    s = states(c, cfg_of(*FAST, "dino.centering=none"), "one-hot-collapse")
    # windows of 5 logs: (40..60) is the first that starts at step 40 or later
    assert all(s[x] == WARMING for x in range(5, 60, 5)) and all(s[x] == ALARM for x in range(60, 101, 5))
    d = diagnose_curves(c, cfg_of(*FAST, "dino.centering=none"))
    assert (d.label, d.rule, d.first_step, d.step) == ("one-hot collapse", "one-hot-collapse", 60, 100)
    assert d.evidence[0].startswith("[one-hot-collapse] steps 80-100 (mean of 5 logs): teacher entropy 0.05 ln K")
    assert "centring is off (dino.centering=none); turn it on" in d.advice


def test_one_hot_needs_both_conditions_and_a_sharp_but_spread_teacher_is_ok():
    spread = dino_curves(STEPS, entropy=0.05, batch_entropy=0.9, kl=0.5)  # sharp per image, different prototypes
    assert set(states(spread, cfg_of(*FAST), "one-hot-collapse").values()) == {WARMING, OK}
    assert diagnose_curves(spread, cfg_of(*FAST)).label != "one-hot collapse"


def test_the_window_mean_decides_not_one_log():
    h = np.full(len(STEPS), 0.6)
    h[STEPS.index(80)] = 0.01  # one one-hot batch: window (60..80) mean = (4 * 0.6 + 0.01) / 5 = 0.482 ln K
    b = np.full(len(STEPS), 0.9)
    b[STEPS.index(80)] = 0.05
    c = dino_curves(STEPS, entropy=h, batch_entropy=b, kl=0.4)
    t = tracks(c, RunFacts.of(cfg_of(*FAST)))["one-hot-collapse"]
    assert t.values[M.DINO_TEACHER_ENTROPY][list(t.steps).index(80)] / LOG_K == pytest.approx(0.482)
    assert ALARM not in t.state


def test_uniform_rule_and_advice_that_follows_the_config():
    c = dino_curves(STEPS, entropy=0.99, batch_entropy=0.99, kl=0.002)
    off = cfg_of(*FAST, "dino.sharpening=false")
    s = states(c, off, "uniform-collapse")
    assert s[55] == WARMING and s[60] == ALARM
    d = diagnose_curves(c, off)
    assert (d.label, d.first_step) == ("uniform collapse", 60)
    assert "sharpening is off" in d.advice and "dino.sharpening=true" in d.advice
    # sharpening on at 0.08: the temperature is the cause named, sharpening is not "turned on"
    hot = diagnose_curves(c, cfg_of(*FAST, "dino.teacher_temp=0.08"))
    assert "teacher temperature 0.08 is above the default 0.015" in hot.advice and "sharpening is off" not in hot.advice
    # high entropy with KL still well above 0: the student learns, no alarm
    learning = dino_curves(STEPS, entropy=0.95, batch_entropy=0.99, kl=0.2)
    assert ALARM not in states(learning, off, "uniform-collapse").values()


def test_one_hot_advice_never_says_turn_centring_on_when_it_is_on():
    for sets, expected in [(("dino.centering=mean", "dino.center_momentum=0.999"),
                            "center_momentum=0.999 averages ~1000"),
                           (("dino.centering=mean",), "dino.centering=sinkhorn enforces"),
                           (("dino.centering=sinkhorn",), "Sinkhorn-Knopp centring is on"),
                           (("dino.centering=mean", "dino.teacher_temp=0.005"), "below the default 0.015")]:
        text = advice.one_hot(cfg_of(*sets))
        assert "turn it on" not in text and expected in text, (sets, text)
    assert "turn it on" in advice.one_hot(cfg_of("dino.centering=none"))


def test_dimensional_rule_and_its_advice_for_ijepa_without_ema():
    steps = list(range(10, 301, 10))
    rank = np.linspace(6.0, 1.5, len(steps))
    c = Curves.from_pairs({M.COLLAPSE_RANKME: list(zip(steps, rank)), M.COLLAPSE_STD_L2: [(s, 0.5) for s in steps],
                           M.EVAL_KNN_TOP1: [(0, 0.17)]})
    cfg = cfg_of("ijepa.ema=false", "ijepa.reg=none", method="ijepa")
    t = tracks(c, RunFacts.of(cfg))["dimensional-collapse"]
    # 0.1 x min(batch 32, width 64) = 3.2: the first 5-log mean at or below it
    means = np.convolve(rank, np.ones(5) / 5, "valid")
    first = steps[4 + int(np.flatnonzero(means <= 3.2)[0])]
    assert int(t.steps[np.flatnonzero(t.state == ALARM)[0]]) == first
    d = diagnose_curves(c, cfg)
    assert d.label == "dimensional collapse" and d.first_step == first
    assert "ijepa.ema=true" in d.advice and "ijepa.reg=none" in d.advice
    # std_l2 alone also fires; a spread run does not
    low = Curves.from_pairs({M.COLLAPSE_RANKME: _flat(steps, 10.0), M.COLLAPSE_STD_L2: _flat(steps, 0.1)})
    assert diagnose_curves(low, cfg_of(method="mae")).label == "dimensional collapse"
    ok = Curves.from_pairs({M.COLLAPSE_RANKME: _flat(steps, 10.0), M.COLLAPSE_STD_L2: _flat(steps, 0.6)})
    assert diagnose_curves(ok, cfg_of(method="mae")).label == "healthy"


def _mae_knn(values: dict[int, float], init: float = 0.17) -> Curves:
    steps = list(range(10, 201, 10))
    return Curves.from_pairs({M.COLLAPSE_RANKME: _flat(steps, 10.0), M.COLLAPSE_STD_L2: _flat(steps, 0.6),
                              M.EVAL_KNN_TOP1: [(0, init), *values.items()], M.EVAL_KNN_TOP1_PIXELS: [(0, 0.6)]})


def test_not_learning_compares_the_mean_of_two_evaluations_with_step_0():
    cfg = cfg_of("optim.warmup_steps=30", "optim.steps=200", method="mae")  # judged from step 30
    flat = _mae_knn({40: 0.175, 80: 0.178, 120: 0.172, 160: 0.176, 200: 0.174})
    s = states(flat, cfg, "not-learning")
    assert s == {40: WARMING, 80: ALARM, 120: ALARM, 160: ALARM, 200: ALARM}
    d = diagnose_curves(flat, cfg)
    assert (d.label, d.rule, d.first_step) == ("not learning", "not-learning", 80)
    assert "k-NN top-1 0.175 is not above its random-initialisation value 0.170" in d.evidence[0]
    assert "raw pixels: 0.600" in d.evidence[0] and "optim.steps=200" in d.advice
    rising = _mae_knn({40: 0.18, 80: 0.20, 120: 0.22, 160: 0.23, 200: 0.24})
    assert states(rising, cfg, "not-learning") == {40: WARMING, 80: OK, 120: OK, 160: OK, 200: OK}
    assert diagnose_curves(rising, cfg).label == "healthy"
    # exactly the margin above step 0 is "not above by more than" it: (0.178 + 0.182) / 2 = 0.18 = 0.17 + 0.01
    edge = _mae_knn({40: 0.178, 80: 0.182})
    assert states(edge, cfg, "not-learning")[80] == ALARM
    # evaluations inside the warm-up do not count: a window must start at step 30 or later
    late = cfg_of("optim.warmup_steps=50", "optim.steps=200", method="mae")
    assert states(flat, late, "not-learning") == {40: WARMING, 80: WARMING, 120: ALARM, 160: ALARM, 200: ALARM}


def test_not_learning_needs_labels_and_step_0():
    cfg = cfg_of(method="mae")
    unlabelled = _mae_knn({40: float("nan"), 80: float("nan")}, init=float("nan"))
    assert "not-learning" not in tracks(unlabelled, RunFacts.of(cfg))
    refs = knn_references(_mae_knn({40: 0.2}))
    assert (refs.random_init, refs.pixels) == (0.17, 0.6)
    assert knn_references(Curves({})).random_init is None


# --- the verdict ----------------------------------------------------------------------------
def test_the_verdict_is_warming_up_until_every_rule_can_judge_then_the_first_alarm_in_order():
    c = dino_curves(STEPS, entropy=0.6, batch_entropy=0.9, kl=0.4, knn={20: 0.18, 50: 0.2, 80: 0.25, 100: 0.26})
    cfg = cfg_of(*FAST, "optim.steps=100")
    verdicts = {s: label for s, label, _ in replay(c, RunFacts.of(cfg))}
    # collapse rules judge from the window (40..60); the k-NN from its evaluations (50, 80) at step 80
    assert {verdicts[s] for s in range(0, 80, 5) if s in verdicts} == {WARMING_UP}
    assert {verdicts[s] for s in range(80, 101, 5)} == {"healthy"}
    # a collapse and not learning at once: the collapse names the label, both rules give evidence
    both = dino_curves(STEPS, entropy=0.99, batch_entropy=0.99, kl=0.001, knn={50: 0.17, 80: 0.17, 100: 0.17})
    d = diagnose_curves(both, cfg)
    assert d.label == "uniform collapse" and d.alarm
    assert any(e.startswith("[not-learning]") and "not above" in e for e in d.evidence)
    assert diagnose_curves(Curves({}), cfg).label == "unknown"
