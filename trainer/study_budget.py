"""``ablate --budget MINUTES``: the steps per run that make a whole study fit, from each arm's
cost measured on this machine (``trainer.step_cost``), said in words before anything trains."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from trainer.config import Config, ConfigError
from trainer.launcher import threads_per_run, usable_cores
from trainer.study_plan import budget_slots, makespan, steps_for_budget, study_configs
from trainer.study_rules import Study


def fit_budget(study: Study, base: Config, group: str, seeds: Sequence[int], user_keys: Collection[str],
               minutes: float, parallel: int) -> int:
    """Steps per run so that the launch (``parallel`` at a time, in the launcher's order) is
    estimated to end within ``minutes``; prints what it measured and what it chose."""
    from trainer.step_cost import measure

    cores = usable_cores()
    threads = threads_per_run(parallel) if parallel > 1 else cores
    slots = budget_slots(parallel, cores, threads) if parallel > 1 else 1
    probe = study_configs(study, base, group, seeds[:1], study.steps, user_keys)  # one run per arm
    print(f"budget {minutes:g} min: timing each arm ({threads} thread{'s' * (threads > 1)}) ...", flush=True)
    costs = {}
    for cfg in probe:
        costs[cfg.run.arm] = c = measure(cfg, threads)
        print(f"  {cfg.run.arm}: {c.step * 1000:.0f} ms per step, {c.evaluate:.1f} s per evaluation, "
              f"{c.start:.1f} s to start", flush=True)

    def seconds_of(steps: int) -> list[float]:
        return [costs[c.run.arm].seconds(c) for c in study_configs(study, base, group, seeds, steps, user_keys)]

    steps = steps_for_budget(seconds_of, minutes * 60, slots)
    if steps is None:
        need = makespan(seconds_of(20), slots) / 60
        raise ConfigError(f"--budget {minutes:g} min is too short for study '{study.name}' ({len(probe)} arms x "
                          f"{len(seeds)} seeds): even 20 steps per run need ~{need:.1f} min here; raise --budget, "
                          "lower --seeds or raise --parallel")
    est = makespan(seconds_of(steps), slots) / 60
    print(f"budget {minutes:g} min: {len(seeds) * len(probe)} runs, {slots} at a time -> {steps} steps per run "
          f"(estimated {est:.1f} min; the study's default is {study.steps})", flush=True)
    return steps
