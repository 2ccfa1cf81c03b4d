"""Calibrate the alarms (``analysis.alarms``) on labelled runs, and regenerate the test fixtures.

    python benchmarks/alarm_calibration.py train  --runs-dir /work/runs13 [--seeds 0 1] [--budgets demo cli]
    python benchmarks/alarm_calibration.py table  --runs-dir /work/runs13      # the confusion table (markdown)
    python benchmarks/alarm_calibration.py export --runs-dir /work/runs13      # tests/analysis/data/*.json

The labelled runs (``RUNS``): the shipped default of each method, the four centering x sharpening
arms (``trainer.__main__.ABLATIONS``, with ``FIG7``), I-JEPA without EMA (``ijepa.ema=false
ijepa.reg=none``), DINO with teacher temperature 0.08 and with centre momentum 0.999; each at the
demo budget (``trainer.__main__.demo_configs``: 150 steps, a log every 5, an evaluation every
30) and at the CLI default (300 steps, a log every 10, an evaluation every 100), per seed.
``train`` trains the missing ones, two at a time, one thread each (the shared 2-core machine).

``export`` writes, per run, the logged scalars the rules read (``analysis.alarms.RULE_METRICS``)
and the run's config to ``tests/analysis/data/<run>.json`` (a few KB each);
``tests/analysis/test_alarms.py`` replays the rules on them at every logged step.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer.config import Config  # noqa: E402

FIXTURES = REPO / "tests" / "analysis" / "data"


@dataclass(frozen=True)
class Labelled:
    """One labelled calibration run: its arm, the label it should get, the overrides."""

    arm: str
    truth: str  # "healthy" or the collapse it is built to show ("" = to be measured, said in the table)
    method: str
    sets: tuple[str, ...] = ()
    ablation: str = ""  # an arm of trainer.__main__.ABLATIONS["centering-sharpening"]


RUNS: tuple[Labelled, ...] = (
    Labelled("dino", "healthy", "dino"),
    Labelled("mae", "healthy", "mae"),
    Labelled("ijepa", "healthy", "ijepa"),
    Labelled("both", "healthy", "dino", ablation="both"),
    Labelled("centering-only", "uniform collapse", "dino", ablation="centering-only"),
    Labelled("sharpening-only", "one-hot collapse", "dino", ablation="sharpening-only"),
    Labelled("neither", "", "dino", ablation="neither"),
    Labelled("ijepa-noema", "dimensional collapse", "ijepa", ("ijepa.ema=false", "ijepa.reg=none")),
    Labelled("dino-tt008", "", "dino", ("dino.teacher_temp=0.08", "dino.warmup_teacher_temp=0.08")),
    Labelled("dino-cm0999", "", "dino", ("dino.center_momentum=0.999",)),
)


def run_name(budget: str, arm: str, seed: int) -> str:
    return f"{budget}-{arm}-s{seed}"


def budget_base(budget: str, runs_dir: str, seed: int) -> Config:
    """The shared config of a budget: the demo's (``demo_configs``) or the CLI default."""
    from trainer.__main__ import demo_configs

    if budget == "demo":  # the demo's own schedule: take it from one of its configs
        cfg = next(c for c in demo_configs(150, runs_dir) if c.run.method == "dino" and not c.run.group)
        return cfg.with_overrides([f"run.seed={seed}", "run.group=", "run.name="])
    assert budget == "cli", budget
    return Config().with_overrides([f"run.runs_dir={runs_dir}", f"run.seed={seed}"])


def config_of(budget: str, run: Labelled, runs_dir: str, seed: int) -> Config:
    from trainer.__main__ import ABLATIONS

    sets = list(ABLATIONS["centering-sharpening"][run.ablation]) if run.ablation else []
    return budget_base(budget, runs_dir, seed).with_overrides(
        sets + list(run.sets) + [f"run.method={run.method}", f"run.name={run_name(budget, run.arm, seed)}",
                                 f"run.group=calib-{budget}-s{seed}"]).validate()


def planned(runs_dir: str, budgets: list[str], seeds: list[int], arms: list[str] | None = None):
    for seed in seeds:
        for budget in budgets:
            for run in RUNS:
                if arms is None or run.arm in arms:
                    yield budget, seed, run, config_of(budget, run, runs_dir, seed)


def cmd_train(args: argparse.Namespace) -> int:
    from trainer.launcher import run_many
    from trainer.store import read_run_info

    todo = []
    for _, _, _, cfg in planned(args.runs_dir, args.budgets, args.seeds, args.arms):
        d = Path(args.runs_dir) / cfg.run.name
        if d.is_dir() and (read_run_info(d) or {}).get("status") == "finished":
            continue
        if d.is_dir():
            print(f"{d} exists but has not finished: remove it to train it again", file=sys.stderr)
            continue
        todo.append(cfg)
    print(f"{len(todo)} runs to train: {', '.join(c.run.name for c in todo)}", flush=True)
    return run_many(todo, args.parallel, "alarm-calibration", "calibrate") if todo else 0


def cmd_export(args: argparse.Namespace) -> int:
    from analysis.alarms import RULE_METRICS
    from trainer.store import read_run_info, read_scalars

    FIXTURES.mkdir(parents=True, exist_ok=True)
    for budget, seed, run, cfg in planned(args.runs_dir, args.budgets, args.seeds, args.arms):
        d = Path(args.runs_dir) / cfg.run.name
        if not d.is_dir():
            continue
        cols, _ = read_scalars(d, names=list(RULE_METRICS))
        curves: dict[str, list[list[float]]] = {}
        for name, step, value in zip(cols["name"], cols["step"], cols["value"]):
            curves.setdefault(str(name), []).append([int(step), round(float(value), 5)])
        info = read_run_info(d) or {}
        out = {"run": cfg.run.name, "budget": budget, "seed": seed, "arm": run.arm, "truth": run.truth,
               "status": info.get("status"), "produced_by": "benchmarks/alarm_calibration.py export",
               "config": info.get("config"), "curves": {k: sorted(v) for k, v in sorted(curves.items())}}
        path = FIXTURES / f"{cfg.run.name}.json"
        path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
        print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size / 1024:.1f} KB)")
    return 0


def _end_state(curves, method: str) -> str:
    """The figures a reader checks a label against: the last log's teacher entropy over ln K
    and KL (DINO), RankMe and std_l2, the k-NN against its step-0 value."""
    from core import metrics as M

    def last(name: str) -> float | None:
        _, v = curves.last(name, 1)
        return float(v[0]) if v.size else None

    parts = []
    h, lnk, kl = last(M.DINO_TEACHER_ENTROPY), last(M.DINO_LOG_K), last(M.DINO_KL_TEACHER_STUDENT)
    if method == "dino" and h is not None and lnk:
        parts.append(f"H_t {h / lnk:.2f} ln K, KL {kl:.3f}")
    rank, std = last(M.COLLAPSE_RANKME), last(M.COLLAPSE_STD_L2)
    if rank is not None:
        parts.append(f"RankMe {rank:.1f}, std_l2 {std:.2f}")
    s, v = curves.get(M.EVAL_KNN_TOP1)
    if v.size:
        parts.append(f"k-NN {v[0]:.3f} -> {v[-1]:.3f}")
    return "; ".join(parts)


def calibration_row(curves, cfg: Config, truth: str) -> dict[str, str]:
    """One row of the confusion table: the run's end state, the first step flagged and by which
    rule, the verdict at its last log, and (shipped defaults) the logged steps that raised a
    collapse alarm. A default flagged "not learning" is no false alarm when its k-NN indeed
    stays at its step-0 value: the end state shows both figures."""
    from analysis.alarms import RunFacts, diagnose_curves, replay

    verdicts = replay(curves, RunFacts.of(cfg))
    alarms = [(step, rule) for step, _, rule in verdicts if rule]
    final = diagnose_curves(curves, cfg)
    collapse = [(step, rule) for step, rule in alarms if rule != "not-learning"]
    false = "-" if truth != "healthy" else (
        f"{len(collapse)} of {len(verdicts)} logs" + (f" (first at {collapse[0][0]})" if collapse else ""))
    return {"end": _end_state(curves, cfg.run.method),
            "first": f"step {alarms[0][0]} ({alarms[0][1]})" if alarms else "never",
            "final": final.label, "false": false, "logs": str(len(verdicts))}


def cmd_table(args: argparse.Namespace) -> int:
    from analysis.curves import read_run_curves
    from trainer.loading import run_config

    print("| run | built to show | end of run | first flagged (rule) | verdict at the end | false alarms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for _, _, run, cfg in planned(args.runs_dir, args.budgets, args.seeds, args.arms):
        d = Path(args.runs_dir) / cfg.run.name
        if not d.is_dir():
            continue
        row = calibration_row(read_run_curves(d), run_config(d), run.truth)
        print(f"| {cfg.run.name} | {run.truth or '(measured)'} | {row['end']} | {row['first']} | {row['final']} "
              f"| {row['false']} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("train", "export", "table"))
    p.add_argument("--runs-dir", default="/work/runs13")
    p.add_argument("--budgets", nargs="+", default=["demo", "cli"], choices=("demo", "cli"))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--arms", nargs="+", help="only these arms (default: all)")
    p.add_argument("--parallel", type=int, default=2)
    args = p.parse_args(argv)
    return {"train": cmd_train, "export": cmd_export, "table": cmd_table}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
