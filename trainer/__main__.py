"""Command line: ``python -m trainer train | resume | ablate | demo``.

Every bad value is refused before training starts with one line naming the field, the value
and what is allowed; ``--help`` on each command says what to try.

Exit codes: 0 finished; 1 the run failed while training (diverged, disk full, out of memory;
the run is marked ``failed`` and its last good checkpoint kept); 2 bad input, refused before
training (bad config value, data, run name, runs directory, or a run another process is
writing); 128 + signal when a signal stopped the run after its checkpoint (130 Ctrl-C /
SIGINT, 143 SIGTERM, e.g. the dashboard's Stop).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from trainer.config import DATASETS, METHODS, Config, ConfigError
from trainer.studies import FIG7 as STUDY_FIG7
from trainer.studies import STUDIES, missing_fields

# The studies (arms, the paper's finding, verdict rules) are data in trainer/studies.py. FIG7 is the
# setting shared by the DINO arms (KoLeo 0.05); ABLATIONS the arms' overrides, for callers that
# build the grid themselves (the demo, tests).
FIG7 = list(STUDY_FIG7)
ABLATIONS = {name: {arm.name: list(arm.sets) for arm in st.arms} for name, st in STUDIES.items()}

# The demo, shaped so that its curves come early and it ends within 3 minutes on 2 cores: the four
# arms of the grid first and together (one core each), then the three methods' defaults; a loss
# row every 5 steps. 150 steps: the arms' teacher entropies have settled by step 100 (both 0.86
# ln K, centering only 1.0, sharpening only 0.0) and the 7 runs cost ~250 CPU seconds (each
# measured alone, one thread), where 200 steps cost ~320: too close to 3 minutes on 2 cores once
# the last runs leave a core idle. See benchmarks/demo_timing.py.
DEMO_STEPS = 150
DEMO_WAVE = 4  # runs side by side on a small machine: the grid's arms, one core each on 2 cores


EPILOG = """examples:
  python -m trainer train --method dino --data shapes --steps 300
  python -m trainer train --method mae --set mae.mask_ratio=0.9
  python -m trainer train --method dino --set dino.centering=sinkhorn --set dino.koleo_weight=0.1
  python -m trainer train --preset dinov2 --steps 600
  python -m trainer train --preset dinov3 --steps 1500 --set dino.gram_teacher_scale=2
  python -m trainer ablate --list
  python -m trainer ablate centering-sharpening --seeds 3 --parallel 2
  python -m trainer ablate teacher-temp --budget 20 --parallel 2 --group tt
  python -m analysis report tt --out reports/tt
  python -m trainer resume runs/dino-shapes-20260101-120000
  python -m trainer demo
Watch any of them live with: python -m dashboard
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", choices=DATASETS, help="dataset: shapes (built in, with object masks), "
                   "fashion-mnist (apt package dataset-fashion-mnist), digits (scikit-learn) or folder (yours)")
    p.add_argument("--data-path", help="dataset folder (folder: your images, class per sub-folder or flat; "
                   "fashion-mnist: a folder of idx files)")
    p.add_argument("--steps", type=int, help="optimiser steps (CPU: 300 takes a few minutes on the cpu-tiny preset)")
    p.add_argument("--batch-size", type=int, help="images per step; bigger batches stabilise DINO's centre")
    p.add_argument("--runs-dir", help="run store root (default: $SSLSCOPE_RUNS or runs/)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="auto picks CUDA when present (bf16 autocast)")
    p.add_argument("--config", help="YAML or JSON file of config sections (a run's run.json works too)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override any config field, e.g. --set dino.out_dim=128 --set model.reg_tokens=4; "
                        "see trainer/config.py for every field and its default")
    p.add_argument("--seed", type=int, help="seeds data, init, crops and masks")
    p.add_argument("--preset", choices=("dinov2", "dinov3"),
                   help="a recipe of DINO settings, applied after --config and the flags above and before --set: "
                        "dinov2 = DINO + the iBOT patch loss; dinov3 = dinov2 on a DINOv3 backbone (RoPE, storage "
                        "tokens) with Gram anchoring (trainer/method_presets.py)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description="SSLScope trainer: DINO, MAE and I-JEPA "
                                     "on a shared timm ViT, recording the statistics that reveal collapse.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one run", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--method", choices=METHODS,
                   help="dino (distillation), mae (masked pixels) or ijepa (latent prediction)")
    t.add_argument("--name", help="run id (folder name); default <method>-<data>-<time>")
    t.add_argument("--group", help="ablation group to file the run under (for the Compare page)")
    _common(t)
    r = sub.add_parser("resume", help="continue a stopped, killed or failed run from its last checkpoint")
    r.add_argument("run_dir", help="the run folder, e.g. runs/dino-shapes-20260101-120000")
    r.add_argument("--step", type=int, help="resume from the checkpoint at this step instead of the newest "
                   "(later checkpoints and metric rows are dropped)")
    a = sub.add_parser("ablate", help="run a classic ablation (a study) as one group, with seeds; "
                       "python -m analysis report GROUP then sets our result beside the paper's",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("study", nargs="?", choices=tuple(STUDIES), metavar="STUDY",
                   help=f"one of: {', '.join(STUDIES)} (--list says what each compares and what the paper found)")
    a.add_argument("--list", action="store_true", help="print every study: arms, the paper's finding, default "
                   "budget and the verdict rules")
    a.add_argument("--seeds", type=int, help="seeds per arm (default: the study's, 3); mean and spread over them")
    a.add_argument("--parallel", type=int, default=1, help="runs trained at once (each gets cores / K threads)")
    a.add_argument("--budget", type=float, metavar="MINUTES", help="scale the steps so that the whole study "
                   "fits in this many minutes, estimated from timed steps of each arm on this machine")
    a.add_argument("--group", help="group name (default <study>-<time>); rerunning with an existing group resumes "
                   "it: finished runs are reused, interrupted ones continue from their checkpoints")
    _common(a)
    d = sub.add_parser("demo", help="short DINO, MAE and I-JEPA runs plus the centering/sharpening grid on shapes")
    d.add_argument("--steps", type=int, default=DEMO_STEPS, help=f"steps per run (default {DEMO_STEPS})")
    d.add_argument("--runs-dir", help="run store root (default: $SSLSCOPE_RUNS or runs/)")
    d.add_argument("--parallel", type=int, default=0,
                   help="runs trained at once (default 0: the grid's four arms together, or all seven runs on "
                        "7+ cores; 1: one after another in this process)")
    d.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field in every demo run")
    return parser


def config_from_args(args: argparse.Namespace, method: str | None = None, base: list[str] = ()) -> Config:
    """Config file, then ``base`` (a study's scale), then the named flags, then --set overrides;
    validated."""
    cfg = Config.load(args.config) if getattr(args, "config", None) else Config()
    sets: list[str] = list(base)
    flag_map = {"method": "run.method", "name": "run.name", "group": "run.group", "data": "data.name",
                "data_path": "data.path", "steps": "optim.steps", "batch_size": "data.batch_size",
                "runs_dir": "run.runs_dir", "device": "run.device", "seed": "run.seed"}
    for flag, key in flag_map.items():
        v = getattr(args, flag, None)
        if v is not None:
            sets.append(f"{key}={v}")
    if method:
        sets.append(f"run.method={method}")
    if getattr(args, "runs_dir", None) is None and "SSLSCOPE_RUNS" in os.environ:
        sets.append(f"run.runs_dir={os.environ['SSLSCOPE_RUNS']}")
    cfg = cfg.with_overrides(sets)
    if getattr(args, "preset", None):  # after the flags (dinov3 scales with --steps), before --set
        from trainer.method_presets import apply_preset

        cfg = apply_preset(cfg, args.preset)
    cfg = cfg.with_overrides(list(getattr(args, "set", []) or []))
    if cfg.optim.warmup_steps > cfg.optim.steps:  # short runs: shrink the default warm-ups with them
        cfg = cfg.set("optim.warmup_steps", cfg.optim.steps // 10)
    return cfg.validate()


def ablation_configs(base: Config, study: str, group: str) -> list[Config]:
    """One run per arm of ``study`` at ``base``'s seed and steps, named ``<group>-<arm>`` (the demo's grid)."""
    st = STUDIES[study]
    return [base.with_overrides([*arm.overrides(base.optim.steps), f"run.name={group}-{arm.name}",
                                 f"run.group={group}", f"run.study={study}", f"run.arm={arm.name}"]).validate()
            for arm in st.arms]


def ablate_base(args: argparse.Namespace) -> Config:
    """The config every run of ``args.study`` starts from: the study's scale under the user's flags."""
    study = STUDIES[args.study]
    missing = missing_fields(study)
    if missing:
        raise ConfigError(f"study '{study.name}' needs {', '.join(missing)}, which this trainer does not have yet "
                          "(the DINOv2/v3 iBOT and Gram work adds them); see python -m trainer ablate --list")
    if args.seeds is not None and not 1 <= args.seeds <= 100:
        raise ConfigError(f"--seeds {args.seeds} must lie in [1, 100]")
    if args.budget is not None and not args.budget > 0:
        raise ConfigError(f"--budget {args.budget} must be a positive number of minutes")
    return config_from_args(args, method=study.method, base=list(study.base))


def ablate(args: argparse.Namespace) -> int:
    """``ablate STUDY``: plan the study's runs, reuse / resume what an earlier launch of the
    same group left, fit a budget, launch the rest; returns the launch's exit code."""
    from trainer.launcher import run_many
    from trainer.study_plan import existing_steps, plan_launch, study_configs

    study = STUDIES[args.study]
    base = ablate_base(args)
    group = args.group or f"{study.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    root = Path(base.run.runs_dir)
    seeds = [base.run.seed + i for i in range(args.seeds or study.seeds)]
    user_keys = {s.split("=", 1)[0].strip() for s in args.set}
    steps, prior = args.steps or study.steps, existing_steps(root, group)
    if prior is not None and args.steps is None:
        steps = prior  # a rerun resumes the group at the steps it was started with
        if args.budget:
            print(f"group {group} exists: keeping its {prior} steps per run (--budget applies to a new group)")
    elif args.budget:
        from trainer.study_budget import fit_budget

        steps = fit_budget(study, base, group, seeds, user_keys, args.budget, args.parallel)
    cfgs = study_configs(study, base, group, seeds, steps, user_keys)
    launch = plan_launch(cfgs, root)
    print(f"study {study.name}: {len(study.arms)} arms x {len(seeds)} seeds = {len(cfgs)} runs of {steps} steps "
          f"in group {group} ({root})")
    if launch.reuse:
        print(f"reused (finished before): {', '.join(launch.reuse)}")
    if launch.resume:
        print(f"resumed from their checkpoints: {', '.join(launch.resume)}")
    print(f"if interrupted, the same command with --group {group} resumes it; then: "
          f"python -m analysis report {group} --runs-dir {root} --out reports/{group}", flush=True)
    if not launch.to_run:
        print("every run of the study has finished already")
        return 0
    return run_many(launch.to_run, args.parallel, group, "ablate", resume=launch.resume)


def describe_studies() -> str:
    """``ablate --list``: every study with its arms, the paper's finding, budget and rules."""
    from core.measures import MEASURES
    from core.metrics import METRICS

    titles = {**{n: m.title for n, m in METRICS.items()}, **{n: m.title for n, m in MEASURES.items()}}
    out = []
    for st in STUDIES.values():
        missing = missing_fields(st)
        head = f"{st.name}: {st.title} ({st.method}; default {len(st.arms)} arms x {st.seeds} seeds x {st.steps} steps)"
        out.append(head + (f" -- not available yet: needs {', '.join(missing)}" if missing else ""))
        out.append(f"  paper: {st.paper}")
        out.append(f"  finding: {st.finding}")
        if st.base:
            out.append(f"  scale: {' '.join(st.base)}")
        for arm in st.arms:
            scaled = [f"{k}={f:g} x steps" for k, f in arm.scaled]
            out.append(f"  arm {arm.name}: {' '.join([*arm.sets, *scaled])}")
        for c in st.claims:
            out.append(f"  {'verdict' if c.headline else 'also'}: {c.text}: {c.rule(titles)}")
        out.append("")
    return "\n".join(out)


def demo_parallel() -> int:
    """Demo runs trained at once: the grid's four arms, or all seven on a machine with the cores."""
    from trainer.launcher import usable_cores

    return max(DEMO_WAVE, min(7, usable_cores()))


def demo_configs(steps: int, runs_dir: str | None, sets: list[str] = (), stamp: str = "") -> list[Config]:
    """The demo's runs in the order they start: the centering x sharpening arms (group
    ``demo-ablation-<stamp>``), then DINO, MAE and I-JEPA at their defaults (no group)."""
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    extra = [f"run.runs_dir={runs_dir}"] if runs_dir else []
    base = Config().with_overrides([f"optim.steps={steps}", f"optim.warmup_steps={max(1, steps // 10)}",
                                    f"run.log_every={max(1, min(5, steps // 20))}",
                                    f"run.eval_every={max(5, steps // 5)}", f"run.ckpt_every={max(10, steps // 3)}"]
                                   + extra + list(sets))
    singles = [base.with_overrides([f"run.method={m}", f"run.name=demo-{m}-{stamp}", "run.group="]).validate()
               for m in METHODS]
    return ablation_configs(base, "centering-sharpening", f"demo-ablation-{stamp}") + singles


def _input_errors() -> tuple[type[Exception], ...]:
    """The errors that mean bad input. Imported late: they pull in torch, which a launcher
    (demo, ablate) does not need before its runs have started."""
    from trainer.data.datasets import DataError
    from trainer.runtime import DeviceError
    from trainer.store import StoreError

    return ConfigError, DataError, StoreError, DeviceError


def _stopped() -> tuple[type[Exception], ...]:
    from trainer.loop import RunStopped

    return (RunStopped,)


def _write_errors() -> tuple[type[Exception], ...]:
    from trainer.store import StoreWriteError

    return (StoreWriteError,)


def _one_line(e: BaseException) -> str:
    """The message with control characters (a newline inside a bad value) escaped: one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(e))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from trainer.launcher import run_many

    try:
        if args.command == "train":
            from trainer.loop import train

            run_dir = train(config_from_args(args), progress=True)
            print(f"run written to {run_dir}")
        elif args.command == "resume":
            from trainer.loop import resume

            run_dir = Path(args.run_dir)
            if not run_dir.is_dir():
                raise ConfigError(f"run folder '{run_dir}' does not exist; list runs with: ls runs/")
            print(f"run written to {resume(run_dir, progress=True, step=args.step)}")
        elif args.command == "ablate":
            if args.list:
                print(describe_studies())
                return 0
            if not args.study:
                raise ConfigError(f"name a study ({', '.join(STUDIES)}) or list them with --list")
            return ablate(args)
        elif args.command == "demo":
            stamp = time.strftime("%Y%m%d-%H%M%S")
            runs_dir = args.runs_dir or os.environ.get("SSLSCOPE_RUNS")
            cfgs = demo_configs(args.steps, runs_dir, args.set, stamp)
            return run_many(cfgs, args.parallel or demo_parallel(), f"demo-{stamp}", "demo")
    except _stopped() as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # outside a training loop (which stops cleanly on its own handler)
        print("interrupted before a run started training; nothing was left half-written", file=sys.stderr)
        return 130
    except _write_errors() as e:  # raised inside a run (disk full): the run is marked failed
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1
    except _input_errors() as e:  # evaluated only once something was raised
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except FloatingPointError as e:
        print(f"error: training diverged: {_one_line(e)}. Lower --set optim.lr or raise optim.warmup_steps",
              file=sys.stderr)
        return 1
    except MemoryError:
        print("error: out of memory; lower data.batch_size, data.image_size, data.num_train or the model size",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
