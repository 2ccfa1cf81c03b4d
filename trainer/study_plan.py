"""From a study's definition to the runs of one launch: every (arm, seed) config, which of them
an interrupted launch of the same group already finished (reused), left half done (resumed from
its checkpoints) or never started (trained), and how many steps fit a time budget.

Config layers, lowest first: the defaults (or ``--config``), the study's scale (``Study.base``),
the user's flags and ``--set``, the step-dependent schedule (log / eval / checkpoint intervals,
warm-ups: only the fields the user did not set), the arm's overrides, then the run's name,
group, study, arm and seed. The arm comes last so that no ``--set`` can flatten the study.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trainer.config import Config, ConfigError
from trainer.study_rules import Study

MIN_STEPS = 20  # fewest steps a budget may choose: below it no curve says anything
IGNORED = ("run.runs_dir", "run.device", "data.num_workers")  # may differ between a launch and its rerun


def schedule_for(steps: int) -> dict[str, str]:
    """Intervals and warm-ups that scale with a study's steps: a log row every ~1/15 of the run
    (at most every 10 steps), k-NN at 0, half-way and the end, a checkpoint every quarter (what
    a resume falls back to), warm-ups of a tenth of the run (as the 300-step defaults)."""
    return {"run.log_every": str(max(1, min(10, steps // 15))), "run.eval_every": str(max(1, steps // 2)),
            "run.ckpt_every": str(max(1, steps // 4)), "optim.warmup_steps": str(steps // 10),
            "dino.freeze_last_layer_steps": str(steps // 10)}


def run_name(group: str, arm: str, seed: int) -> str:
    return f"{group}-{arm}-s{seed}"


def study_configs(study: Study, base: Config, group: str, seeds: Sequence[int], steps: int,
                  user_keys: Collection[str] = ()) -> list[Config]:
    """Every run of the study, seed by seed (the first seed of every arm first, so a short
    launch already has one whole comparison), validated. ``base``: the defaults with the
    study's scale and the user's flags applied; ``user_keys``: fields the user set, which the
    step schedule leaves alone."""
    sched = [f"{k}={v}" for k, v in schedule_for(steps).items() if k not in user_keys]
    cfg = base.with_overrides([f"optim.steps={steps}", *sched])
    out = []
    for seed in seeds:
        for arm in study.arms:
            sets = [*arm.overrides(steps), f"run.name={run_name(group, arm.name, seed)}", f"run.group={group}",
                    f"run.study={study.name}", f"run.arm={arm.name}", f"run.seed={seed}", f"run.method={study.method}"]
            out.append(cfg.with_overrides(sets).validate())
    return out


@dataclass
class Launch:
    """The runs of one launch of a study: all planned configs in order, and what to do with each."""

    cfgs: list[Config]
    reuse: list[str] = field(default_factory=list)  # finished (or failed for good): not run again
    resume: list[str] = field(default_factory=list)  # stopped or killed part-way: continue
    train: list[str] = field(default_factory=list)  # no folder yet

    @property
    def to_run(self) -> list[Config]:
        return [c for c in self.cfgs if c.run.name not in self.reuse]


def _flat(d: dict) -> dict[str, object]:
    return {f"{s}.{k}": v for s, sub in d.items() if isinstance(sub, dict) for k, v in sub.items()}


def plan_launch(cfgs: list[Config], root: Path) -> Launch:
    """Sort the planned runs by what the store holds. A run folder whose config differs from the
    plan, or one that another process is still writing, is refused with one line saying what
    to do (:class:`ConfigError` / ``StoreError``)."""
    from trainer.store import StoreError, read_run_info

    launch = Launch(cfgs)
    for cfg in cfgs:
        d = root / cfg.run.name
        if not (d / "run.json").exists():
            launch.train.append(cfg.run.name)
            continue
        info = read_run_info(d)
        old, new = _flat(info["config"]), _flat(cfg.to_dict())
        diff = [k for k in new if k not in IGNORED and k in old and old[k] != new[k]]
        if diff:
            k = diff[0]
            raise ConfigError(f"run '{cfg.run.name}' of group '{cfg.run.group}' was trained with {k}={old[k]}, this "
                              f"command asks {k}={new[k]}: rerun with the same flags to resume the study, or give "
                              "another --group")
        status, reason = info["status"], info.get("reason") or ""
        if status == "running":
            raise StoreError(f"run '{cfg.run.name}' is being trained by process {info.get('pid')}; wait for it to "
                             "end or stop it before resuming the study")
        if status == "finished" or (status == "failed" and reason.startswith("non-finite")):
            launch.reuse.append(cfg.run.name)  # a diverged arm is a result: running it again diverges again
        else:
            launch.resume.append(cfg.run.name)
    return launch


def existing_steps(root: Path, group: str) -> int | None:
    """``optim.steps`` of the runs a group already holds (a rerun keeps them), None if none."""
    from trainer.store import list_runs

    for info in list_runs(root):
        if info.get("group") == group:
            steps = _flat(info.get("config") or {}).get("optim.steps")
            if isinstance(steps, int):
                return steps
    return None


def makespan(durations: Sequence[float], slots: int) -> float:
    """Wall time of jobs started in list order on ``slots`` workers, each taking the next job
    as soon as one is free (the launcher's order)."""
    free = [0.0] * max(1, slots)
    for d in durations:
        i = min(range(len(free)), key=free.__getitem__)
        free[i] += d
    return max(free)


def steps_for_budget(seconds_of: Callable[[int], list[float]], budget_s: float, slots: int,
                     lo: int = MIN_STEPS, hi: int = 100_000, quantum: int = 10) -> int | None:
    """The most steps (a multiple of ``quantum``) whose launch fits ``budget_s``: ``seconds_of(steps)``
    gives each run's estimated seconds; None when even ``lo`` steps do not fit. Binary search:
    a run's time grows with its steps."""
    fits = lambda s: makespan(seconds_of(s), slots) <= budget_s
    if not fits(lo):
        return None
    a, b = lo // quantum, hi // quantum  # in quanta; a fits
    if fits(b * quantum):
        return b * quantum
    while b - a > 1:
        mid = (a + b) // 2
        a, b = (mid, b) if fits(mid * quantum) else (a, mid)
    return max(lo, a * quantum)


def budget_slots(parallel: int, cores: int, threads: int) -> int:
    """Runs that effectively progress at full speed at once: ``parallel`` of them share the
    cores, each on ``threads`` threads."""
    return max(1, min(parallel, math.floor(cores / max(threads, 1)) or 1))
