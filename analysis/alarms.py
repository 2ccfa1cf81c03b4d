"""The alarms: named rules over a run's logged curves and its config, one verdict per step.

Every page that labels a run (the Live banner, the Runs and Compare tables) and ``python -m
analysis RUN --what diagnose`` call ``diagnose_curves`` (through ``analysis.collapse
.diagnose_run``), so they say the same thing. Each rule reads a few declared metrics over its
evidence window (the last ``window`` logged values, or evaluations), judges only once that
window lies past the run's warm-ups, and names its advice from the config
(``analysis.advice``). Thresholds are the healthy ranges declared in ``core.metrics``.

Warm-ups, from the config: the learning-rate warm-up (``optim.warmup_steps``), for DINO the
teacher-temperature warm-up (``dino.teacher_temp_warmup_steps``) and the frozen last layer
(``dino.freeze_last_layer_steps``), and for DINO and I-JEPA the EMA copy every rule reads (the
teacher's outputs and features, the target encoder's features; both give the k-NN): it is
judged once less than half of it is its random initialisation, i.e. once the product of the
momentum schedule falls below 0.5 (DINO's 0.99 -> 1: step 94 of 150, 73 of 300; I-JEPA's
0.996 -> 1: never within 300 steps). Before that the statistics describe the initialisation: a
random teacher at tau_t 0.015 gives every image the same sharp output, which the one-hot rule
would call a collapse (the issue-13 false alarm at step 50 of the demo's DINO run).

A rule's track has one state per logged step: warming up (its window does not lie past the
warm-ups yet), ok, or alarm. The run's verdict at a step: the first rule in ``RULES`` order in
alarm; else "warming up" while any rule still warms up; else "healthy".

Calibration on labelled runs (``benchmarks/alarm_calibration.py``): the confusion table is in
docs/architecture.md, and ``tests/analysis/test_alarms.py`` replays the rules on those runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from analysis import advice
from analysis.collapse import (
    DIM_RANKME,
    DIM_STD_L2,
    ONEHOT_BATCH_ENTROPY,
    ONEHOT_ENTROPY,
    UNIFORM_ENTROPY,
    UNIFORM_KL,
    Diagnosis,
)
from analysis.curves import Curves, knn_references
from core import metrics as M
from trainer.config import Config, preset_shape
from trainer.schedules import cosine_schedule

WARMING, OK, ALARM = 0, 1, 2
WARMING_UP = "warming up"
KNN_MARGIN = M.METRICS[M.EVAL_KNN_TOP1].healthy_range[0]  # k-NN must beat step 0 by this much
EMA_HALF = 0.5  # the EMA copy is judged once less than this share of it is its initialisation


@dataclass(frozen=True)
class RunFacts:
    """What a run's config says about its schedules: what the rules wait for and read."""

    cfg: Config
    method: str
    steps: int
    lr_warmup: int  # optim.warmup_steps
    tau_t_warmup: int  # dino.teacher_temp_warmup_steps (0 outside DINO)
    frozen_last_layer: int  # dino.freeze_last_layer_steps (0 outside DINO)
    ema_half: int | None  # first step with less than half the EMA copy its initialisation (None: no EMA)
    max_rank: int  # min(batch, width): RankMe's ceiling on the batch the trainer logs it on

    @classmethod
    def of(cls, cfg: Config) -> RunFacts:
        method, dino = cfg.run.method, cfg.dino
        momentum = {"dino": dino.momentum_teacher, "ijepa": cfg.ijepa.momentum if cfg.ijepa.ema else None}.get(method)
        ema_half = None
        if momentum is not None:  # share of the initialisation left after step t: prod of lambda_0..lambda_t
            left = np.cumprod(cosine_schedule(momentum, 1.0, cfg.optim.steps))
            below = np.flatnonzero(left < EMA_HALF)
            ema_half = int(below[0]) + 1 if below.size else cfg.optim.steps + 1
        is_dino = method == "dino"
        return cls(cfg, method, cfg.optim.steps, cfg.optim.warmup_steps,
                   dino.teacher_temp_warmup_steps if is_dino and dino.sharpening else 0,
                   dino.freeze_last_layer_steps if is_dino else 0, ema_half,
                   min(cfg.data.batch_size, preset_shape(cfg.model)[1]))

    @property
    def settled(self) -> int:
        """The step from which the schedules have settled: every warm-up is over."""
        return max(self.lr_warmup, self.tau_t_warmup, self.frozen_last_layer)

    @property
    def judge_from(self) -> int:
        """The first step an evidence window may start at: the warm-ups are over and the EMA
        copy the statistics come from is no longer mostly its initialisation."""
        return max(self.settled, self.ema_half or 0, 1)

    def warmups(self) -> str:
        """The warm-ups in words ("lr warm-up to step 15, last layer frozen to step 30")."""
        parts = [f"lr warm-up to step {self.lr_warmup}"] if self.lr_warmup else []
        if self.tau_t_warmup:
            parts.append(f"teacher-temperature warm-up to step {self.tau_t_warmup}")
        if self.frozen_last_layer:
            parts.append(f"last layer frozen to step {self.frozen_last_layer}")
        if self.ema_half is not None:
            who = "teacher" if self.method == "dino" else "target encoder"
            parts.append(f"EMA {who} more than half its initialisation "
                         + (f"to step {self.ema_half}" if self.ema_half <= self.steps else
                            f"for the whole run (momentum from {self._momentum:g} over {self.steps} steps)"))
        return ", ".join(parts) or "no warm-up"

    @property
    def _momentum(self) -> float:
        return self.cfg.dino.momentum_teacher if self.method == "dino" else self.cfg.ijepa.momentum


@dataclass
class Track:
    """One rule's states over the steps it reads (n,), and the window means behind them."""

    steps: np.ndarray  # (n,) int64, the steps the rule has values at
    state: np.ndarray  # (n,) WARMING | OK | ALARM
    start: np.ndarray  # (n,) int64, first step of the evidence window (-1: window not full)
    values: dict[str, np.ndarray] = field(default_factory=dict)  # window means (n,) per metric

    def at(self, step: int) -> int | None:
        """Index of the last judged step <= ``step`` (None before the first)."""
        i = int(np.searchsorted(self.steps, step, side="right")) - 1
        return i if i >= 0 else None


@dataclass(frozen=True)
class Rule:
    """A named alarm: the label it gives, the metrics it reads, its evidence window."""

    name: str
    label: str
    metrics: tuple[str, ...]
    window: int  # logged values (evaluations for the k-NN) averaged into one judgement
    methods: tuple[str, ...]  # the methods it applies to
    text: str  # what it checks, in one sentence (docs, Guide)
    track: Callable[[Rule, Curves, RunFacts], Track | None]
    says: Callable[[Rule, Track, int, RunFacts, Curves], str]  # the evidence at index i, in words


def _aligned(curves: Curves, names: tuple[str, ...]) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """The steps at which every one of ``names`` has a finite value, and their values there."""
    series = [curves.get(n) for n in names]
    if any(len(s) == 0 for s, _ in series):
        return None
    steps = series[0][0][np.isfinite(series[0][1])]
    for s, v in series[1:]:
        steps = np.intersect1d(steps, s[np.isfinite(v)])
    if not steps.size:
        return None
    return steps, [v[np.searchsorted(s, steps)] for s, v in series]


def _window_start(steps: np.ndarray, w: int) -> np.ndarray:
    """First step of the window of the last ``w`` values at each index (-1 until ``w`` are there)."""
    start = np.full(len(steps), -1, np.int64)
    if len(steps) >= w:
        start[w - 1:] = steps[: len(steps) - w + 1]
    return start


def _rolling(x: np.ndarray, w: int) -> np.ndarray:
    """Mean of the last ``w`` values at each index (NaN until ``w`` are there)."""
    out = np.full(len(x), np.nan)
    if len(x) >= w:
        c = np.cumsum(np.r_[0.0, x])
        out[w - 1:] = (c[w:] - c[:-w]) / w
    return out


def _windowed(rule: Rule, curves: Curves, facts: RunFacts, judge_from: int,
              names: tuple[str, ...] | None = None) -> tuple[Track, list[np.ndarray]] | None:
    al = _aligned(curves, names or rule.metrics)
    if al is None:
        return None
    steps, vals = al
    start = _window_start(steps, rule.window)
    means = [_rolling(v, rule.window) for v in vals]
    ready = (start >= judge_from) & (start >= 0)
    track = Track(steps, np.where(ready, OK, WARMING), start,
                  {n: m for n, m in zip(names or rule.metrics, means)})
    return track, means


def _uniform(rule: Rule, curves: Curves, facts: RunFacts) -> Track | None:
    got = _windowed(rule, curves, facts, facts.judge_from)
    if got is None:
        return None
    t, (h, log_k, kl) = got
    t.state[(t.state == OK) & (h / log_k >= UNIFORM_ENTROPY) & (kl <= UNIFORM_KL)] = ALARM
    return t


def _onehot(rule: Rule, curves: Curves, facts: RunFacts) -> Track | None:
    got = _windowed(rule, curves, facts, facts.judge_from)
    if got is None:
        return None
    t, (h, log_k, hb) = got
    t.state[(t.state == OK) & (h / log_k <= ONEHOT_ENTROPY) & (hb / log_k <= ONEHOT_BATCH_ENTROPY)] = ALARM
    return t


def _dimensional(rule: Rule, curves: Curves, facts: RunFacts) -> Track | None:
    got = _windowed(rule, curves, facts, facts.judge_from)
    if got is None:
        return None
    t, (rank, sl) = got
    t.state[(t.state == OK) & ((rank <= DIM_RANKME * facts.max_rank) | (sl <= DIM_STD_L2))] = ALARM
    return t


def _not_learning(rule: Rule, curves: Curves, facts: RunFacts) -> Track | None:
    init = knn_references(curves).random_init
    s, v = curves.get(M.EVAL_KNN_TOP1)
    keep = (s > 0) & np.isfinite(v)
    if init is None or not math.isfinite(init) or not keep.any():
        return None
    s, v = s[keep], v[keep]
    start = _window_start(s, rule.window)
    mean = _rolling(v, rule.window)
    # judged once the window's evaluations all come after the warm-ups
    state = np.where((start >= 0) & (start >= facts.judge_from), OK, WARMING)
    state[(state == OK) & (mean <= init + KNN_MARGIN)] = ALARM
    return Track(s, state, start, {M.EVAL_KNN_TOP1: mean})


def _window_words(t: Track, i: int, what: str = "logs") -> str:
    return f"steps {t.start[i]}-{t.steps[i]} (mean of {what})"


def _says_dino(rule: Rule, t: Track, i: int, facts: RunFacts, curves: Curves) -> str:
    v = {n: float(x[i]) for n, x in t.values.items()}
    log_k = v[M.DINO_LOG_K]
    r = v[M.DINO_TEACHER_ENTROPY] / log_k
    if t.state[i] == WARMING:
        return (f"{rule.label} is judged on {rule.window} logs from step {facts.judge_from} on "
                f"({facts.warmups()})")
    if rule.name == "uniform-collapse":
        kl = v[M.DINO_KL_TEACHER_STUDENT]
        if t.state[i] == ALARM:
            return (f"{_window_words(t, i, f'{rule.window} logs')}: teacher entropy {r:.2f} ln K "
                    f"(>= {UNIFORM_ENTROPY}: nearly uniform outputs) and KL(teacher || student) {kl:.4f} nats "
                    f"(<= {UNIFORM_KL}): the student matches a flat teacher, nothing is learnt")
        return f"teacher entropy {r:.2f} ln K, KL {kl:.3f} nats: not uniform"
    hb = v[M.DINO_TEACHER_BATCH_ENTROPY] / log_k
    if t.state[i] == ALARM:
        return (f"{_window_words(t, i, f'{rule.window} logs')}: teacher entropy {r:.2f} ln K (<= {ONEHOT_ENTROPY}: "
                f"near one-hot) and batch-mean entropy {hb:.2f} ln K (<= {ONEHOT_BATCH_ENTROPY}): every image "
                f"picks the same ~{math.exp(v[M.DINO_TEACHER_BATCH_ENTROPY]):.1f} of {round(math.exp(log_k))} "
                "prototypes")
    return f"teacher entropy {r:.2f} ln K, batch entropy {hb:.2f} ln K: not one-hot"


def _says_dimensional(rule: Rule, t: Track, i: int, facts: RunFacts, curves: Curves) -> str:
    rank, sl = float(t.values[M.COLLAPSE_RANKME][i]), float(t.values[M.COLLAPSE_STD_L2][i])
    limit = DIM_RANKME * facts.max_rank
    if t.state[i] == WARMING:
        return (f"dimensional collapse is judged on {rule.window} logs from step {facts.judge_from} on "
                f"({facts.warmups()}); RankMe now {rank:.1f}, std_l2 {sl:.2f}" if math.isfinite(rank) else
                f"dimensional collapse is judged on {rule.window} logs from step {facts.judge_from} on "
                f"({facts.warmups()})")
    if t.state[i] == ALARM:
        parts = []
        if rank <= limit:
            parts.append(f"RankMe {rank:.1f} <= {DIM_RANKME} x {facts.max_rank} = {limit:.1f}")
        if sl <= DIM_STD_L2:
            parts.append(f"std_l2 {sl:.3f} <= {DIM_STD_L2}")
        return (f"{_window_words(t, i, f'{rule.window} logs')}: " + " and ".join(parts)
                + ": the embeddings use only a few directions" + (" (all nearly one point)" if sl < 0.05 else ""))
    return f"RankMe {rank:.1f} of at most {facts.max_rank}, std_l2 {sl:.2f}: spread"


def _says_knn(rule: Rule, t: Track, i: int, facts: RunFacts, curves: Curves) -> str:
    refs = knn_references(curves)
    knn = float(t.values[M.EVAL_KNN_TOP1][i])
    px = f"; raw pixels: {refs.pixels:.3f}" if refs.pixels is not None else ""
    init = f"{refs.random_init:.3f}"
    if t.state[i] == WARMING:
        latest = float(curves.last(M.EVAL_KNN_TOP1, 1)[1][-1])
        return (f"not learning is judged on {rule.window} evaluations from step {facts.judge_from} on "
                f"({facts.warmups()}); k-NN top-1 now {latest:.3f} (random initialisation: {init}{px})")
    if t.state[i] == ALARM:
        return (f"{_window_words(t, i, f'{rule.window} evaluations')}: k-NN top-1 {knn:.3f} is not above its "
                f"random-initialisation value {init} (step 0) by more than {KNN_MARGIN}{px}: the backbone is "
                "not learning")
    return f"k-NN top-1 {knn:.3f} vs {init} at random initialisation{px}: learning"


RULES: tuple[Rule, ...] = (
    Rule("uniform-collapse", "uniform collapse",
         (M.DINO_TEACHER_ENTROPY, M.DINO_LOG_K, M.DINO_KL_TEACHER_STUDENT), 5, ("dino",),
         f"teacher entropy >= {UNIFORM_ENTROPY} ln K and KL(teacher || student) <= {UNIFORM_KL} nats",
         _uniform, _says_dino),
    Rule("one-hot-collapse", "one-hot collapse",
         (M.DINO_TEACHER_ENTROPY, M.DINO_LOG_K, M.DINO_TEACHER_BATCH_ENTROPY), 5, ("dino",),
         f"teacher entropy <= {ONEHOT_ENTROPY} ln K and batch-mean entropy <= {ONEHOT_BATCH_ENTROPY} ln K",
         _onehot, _says_dino),
    Rule("dimensional-collapse", "dimensional collapse", (M.COLLAPSE_RANKME, M.COLLAPSE_STD_L2), 5,
         ("dino", "mae", "ijepa"), f"RankMe <= {DIM_RANKME} min(N, D) or std_l2 <= {DIM_STD_L2}",
         _dimensional, _says_dimensional),
    Rule("not-learning", "not learning", (M.EVAL_KNN_TOP1, M.EVAL_KNN_TOP1_PIXELS), 2, ("dino", "mae", "ijepa"),
         f"online k-NN not above its step-0 (random-initialisation) value by more than {KNN_MARGIN}",
         _not_learning, _says_knn),
)
RULE_METRICS: tuple[str, ...] = tuple(dict.fromkeys(n for r in RULES for n in r.metrics))
LABELS = ("healthy", WARMING_UP, *(r.label for r in RULES), "unknown")


def tracks(curves: Curves, facts: RunFacts) -> dict[str, Track]:
    """Every applicable rule's track (rules whose metrics the run does not log are left out)."""
    out = {}
    for rule in RULES:
        if facts.method in rule.methods and (t := rule.track(rule, curves, facts)) is not None:
            out[rule.name] = t
    return out


def _verdict_at(tr: dict[str, Track], step: int) -> tuple[str, str | None]:
    """(label, rule name) at ``step``."""
    states = {}
    for rule in RULES:
        t = tr.get(rule.name)
        if t is not None:
            i = t.at(step)
            states[rule.name] = WARMING if i is None else int(t.state[i])
    for rule in RULES:
        if states.get(rule.name) == ALARM:
            return rule.label, rule.name
    if not states:
        return "unknown", None
    return (WARMING_UP, None) if WARMING in states.values() else ("healthy", None)


def replay(curves: Curves, facts: RunFacts) -> list[tuple[int, str, str | None]]:
    """(step, label, rule) at every logged step: the verdict the run showed as it trained."""
    tr = tracks(curves, facts)
    return [(int(s), *_verdict_at(tr, int(s))) for s in curves.steps()]


def diagnose_curves(curves: Curves, cfg: Config) -> Diagnosis:
    """The run's verdict at its last logged step, with the rule that gave it, the first
    logged step at which that rule fired, the evidence of every rule and config-based advice."""
    facts = RunFacts.of(cfg)
    tr = tracks(curves, facts)
    steps = curves.steps()
    if not steps.size or not tr:
        return Diagnosis("unknown", ["no collapse statistics or k-NN logged yet"], {})
    step = int(steps[-1])
    label, rule_name = _verdict_at(tr, step)
    evidence, values = [], {}
    by_name = {r.name: r for r in RULES}
    order = ([rule_name] if rule_name else []) + [r.name for r in RULES if r.name in tr and r.name != rule_name]
    for name in order:
        rule, t = by_name[name], tr[name]
        i = t.at(step)
        if i is None:
            continue
        evidence.append(f"[{rule.name}] {rule.says(rule, t, i, facts, curves)}")
        values.update({k: float(v[i]) for k, v in t.values.items() if math.isfinite(float(v[i]))})
    first = None
    if rule_name:
        t = tr[rule_name]
        first = int(t.steps[np.flatnonzero(t.state == ALARM)[0]])
    return Diagnosis(label, evidence, values, rule=rule_name or "", first_step=first, step=step,
                     advice=advice.advice(label, facts.cfg) if rule_name else "")
