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

# The setting shared by every arm of the centering-sharpening study (the DINO paper's Fig. 7): the
# default augmentations and teacher temperature with KoLeo at 0.05 instead of 0.2. KoLeo spreads
# the backbone's features by itself: at 0.2 a collapsed head's k-NN rises as far as the full
# method's (shapes, 16 px: 0.29 in all three arms) and the study would no longer show what
# centering and sharpening each do; at 0 the full method drifts to uniform (0.83-0.95 ln K) and
# its k-NN falls below the collapsed arms'. At 0.05: 0.33 vs 0.27-0.28 (docs/architecture.md).
# Other --set values apply to all arms.
FIG7 = ["dino.koleo_weight=0.05"]
ABLATIONS = {
    # arm -> overrides; everything else equal
    "centering-sharpening": {
        "both": [*FIG7, "dino.centering=mean", "dino.sharpening=true"],
        "centering-only": [*FIG7, "dino.centering=mean", "dino.sharpening=false"],
        "sharpening-only": [*FIG7, "dino.centering=none", "dino.sharpening=true"],
        "neither": [*FIG7, "dino.centering=none", "dino.sharpening=false"],
    },
}

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
  python -m trainer ablate centering-sharpening --steps 300 --parallel 2
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
    a = sub.add_parser("ablate", help="run an ablation grid as one group, everything else equal")
    a.add_argument("study", choices=tuple(ABLATIONS), help="centering-sharpening: the 2 x 2 grid of DINO's Fig. 7 "
                   "(centering alone -> uniform collapse, sharpening alone -> one-hot collapse), with the "
                   "default augmentations and KoLeo weakened to 0.05 in every arm")
    a.add_argument("--parallel", type=int, default=1, help="arms trained at once (each gets cores / K threads)")
    a.add_argument("--group", help="group name (default <study>-<time>)")
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


def config_from_args(args: argparse.Namespace, method: str | None = None) -> Config:
    """Config file, then the named flags, then --set overrides; validated."""
    cfg = Config.load(args.config) if getattr(args, "config", None) else Config()
    sets: list[str] = []
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
    return [base.with_overrides(sets + [f"run.name={group}-{arm}", f"run.group={group}"]).validate()
            for arm, sets in ABLATIONS[study].items()]


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
            base = config_from_args(args, method="dino")
            group = args.group or f"{args.study}-{time.strftime('%Y%m%d-%H%M%S')}"
            return run_many(ablation_configs(base, args.study, group), args.parallel, group, "ablate")
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
