"""The trainer's resident memory: peak RSS of one training run at the CPU preset, and its growth
between two steps of it (default 100 and 1,000; target under 5%).

The run is the real ``trainer.loop.train`` in this process (its DataLoader workers are separate
processes, not counted); the RSS is read from ``/proc/self/status`` each time the run logs.

    python benchmarks/memory_growth.py [--method dino] [--from-step 100] [--to-step 1000] [--json out]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere (make bench)

from trainer import store  # noqa: E402
from trainer.config import Config  # noqa: E402
from trainer.loop import train  # noqa: E402


def status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def measure(method: str, from_step: int, to_step: int, sets: list[str]) -> dict:
    rss: dict[int, float] = {}
    real = store.RunWriter.log_scalars

    def logging(self, step, epoch, values):
        rss.setdefault(step, status_mb("VmRSS"))
        return real(self, step, epoch, values)

    store.RunWriter.log_scalars = logging
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Config().with_overrides([f"run.method={method}", f"optim.steps={to_step}", f"run.runs_dir={tmp}",
                                           "run.name=memory", *sets]).validate()
            train(cfg)
    finally:
        store.RunWriter.log_scalars = real
    start = rss[min(rss, key=lambda s: abs(s - from_step))]
    return {"rss_from_mb": start, "rss_to_mb": rss[to_step], "growth": rss[to_step] / start - 1,
            "peak_rss_mb": status_mb("VmHWM"), "from_step": from_step, "to_step": to_step,
            "setup": f"{method}, {cfg.model.preset} {cfg.data.image_size} px, batch {cfg.data.batch_size}, "
                     f"log every {cfg.run.log_every}, evaluate every {cfg.run.eval_every}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="dino")
    ap.add_argument("--from-step", type=int, default=100)
    ap.add_argument("--to-step", type=int, default=1000)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    r = measure(args.method, args.from_step, args.to_step, args.set)
    print(f"memory, {r['setup']}: RSS {r['rss_from_mb']:.0f} MB at step {args.from_step}, {r['rss_to_mb']:.0f} MB "
          f"at step {args.to_step} ({r['growth']:+.1%}); peak {r['peak_rss_mb']:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
