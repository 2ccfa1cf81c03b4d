"""``python -m sslscope.monitor import-log PATH``: another trainer's log into a run of the store.

    python -m sslscope.monitor import-log output_dir/log.txt --steps-per-epoch 1251
    python -m sslscope.monitor import-log output_dir/training_metrics.json --name vitl-dinov2
    python -m sslscope.monitor import-log lightning_logs/version_0 --runs-dir runs

Exit codes: 0 imported, 2 bad input (one ``error:`` line naming the problem and the fix).
"""

from __future__ import annotations

import argparse
import sys

from sslscope.monitor.logs import ImportLogError, import_log
from trainer.store import StoreError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sslscope.monitor", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import-log", help="read a log.txt / training_metrics.json / TensorBoard events into a run")
    imp.add_argument("path", help="the log file, or the folder that holds it")
    imp.add_argument("--runs-dir", default=None, help="runs directory (default: $SSLSCOPE_RUNS or runs)")
    imp.add_argument("--name", default=None, help="run name (default: the log's folder name)")
    imp.add_argument("--method", default=None, help="dino | mae | ijepa | ... (default: guessed from the names)")
    imp.add_argument("--steps-per-epoch", type=int, default=None,
                     help="iterations per epoch: places epoch logs at their last iteration")
    args = ap.parse_args(argv)
    if args.steps_per_epoch is not None and args.steps_per_epoch < 1:
        print(f"error: --steps-per-epoch {args.steps_per_epoch} must be a whole number >= 1", file=sys.stderr)
        return 2
    try:
        run = import_log(args.path, args.runs_dir, args.name, args.method, args.steps_per_epoch)
    except (ImportLogError, StoreError) as e:
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(e))  # one line, as the trainer's CLI
        print(f"error: {text}", file=sys.stderr)
        return 2
    print(f"imported into {run}; open it with: python -m dashboard")
    return 0


if __name__ == "__main__":
    sys.exit(main())
