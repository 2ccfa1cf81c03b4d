"""``make bench``: every CPU benchmark of issue 17 in one run, one table, one JSON file.

Each section is one of the benchmark scripts, run as its own process (so memory and thread
settings do not leak between them) with ``--json``; ``report.py`` turns the figures into rows,
each a ratio against its peer or the peak measured in the same run:

- ``throughput``: ours vs lightly, DINO / MAE / I-JEPA, full step and model step, and model FLOP
  utilisation against the 1024^3 and the own-shapes matmul peaks (train_throughput.py), at the
  cpu-tiny and cpu-small presets;
- ``phases``: where a step's time goes (step_phases.py);
- ``mae_encoder``: MAE encoder speed-up at 0.75 vs 0.0 masking, 1 and 2 threads;
- ``multicrop``: multi-crop grouping vs one pass per crop;
- ``memory``: peak RSS and its growth from step 100 to 1,000 of one run;
- ``dashboard``: server CPU while the Live page follows a run;
- ``data_loader``: batched views vs per-image torchvision v2.

    python benchmarks/bench.py [--quick] [--only throughput,phases] [--out results.json]
    BENCH_QUICK=1 make bench     # smoke mode: every section, tiny sizes (~2 min); figures mean little

Run the full mode on an idle machine: figures from a busy one say more about the load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import report  # noqa: E402

SMALL_DATA = ["--set", "data.num_train=256", "--set", "data.num_val=64"]
# section -> [(key, script, full args, quick args)]
SECTIONS: dict[str, list[tuple[str, str, list[str], list[str]]]] = {
    "throughput": [
        ("cpu-tiny", "train_throughput.py", [], ["--steps", "2", "--rounds", "1", "--shape-min-s", "0.005"]),
        ("cpu-small", "train_throughput.py", ["--set", "model.preset=cpu-small"], None),
    ],
    "phases": [("", "step_phases.py", [], ["--steps", "4", *SMALL_DATA])],
    "mae_encoder": [("", "mae_encoder_speed.py", ["--threads", "1,2"],
                     ["--threads", "1,2", "--preset", "cpu-tiny", "--image-size", "32", "--batch", "16",
                      "--reps", "1"])],
    "multicrop": [("", "multicrop_grouping.py", [], ["--reps", "1"])],
    "memory": [("", "memory_growth.py", [], ["--from-step", "10", "--to-step", "30", "--set", "run.eval_every=10",
                                            *SMALL_DATA])],
    "dashboard": [("", "dashboard_speed.py", ["--live-cpu", "60"], ["--live-cpu", "8"])],
    "data_loader": [("", "data_loader.py", [], ["--batches", "2"])],
}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
    import lightly

    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "lightly": lightly.__version__, "python": platform.python_version(),
            "commit": commit.stdout.strip(), "load_avg_1min": os.getloadavg()[0]}


def run_section(name: str, quick: bool, tmp: Path) -> dict:
    """The figures of one section (``{"error": ...}`` when its script failed)."""
    out: dict = {}
    for key, script, full_args, quick_args in SECTIONS[name]:
        if quick and quick_args is None:
            continue  # the quick mode keeps one preset
        path = tmp / f"{name}-{key or 'all'}.json"
        cmd = [sys.executable, str(HERE / script), *(quick_args if quick else full_args), "--json", str(path)]
        print(f"\n== {name}{' ' + key if key else ''}: {' '.join(cmd[1:])}", flush=True)
        t = time.perf_counter()
        if subprocess.run(cmd, cwd=HERE.parent).returncode != 0 or not path.exists():
            out.setdefault("error", []).append(f"{script} failed (see its output above)")
            continue
        figures = json.loads(path.read_text())
        if key:
            out[key] = figures
        else:
            out.update(figures)
        print(f"   ({time.perf_counter() - t:.0f} s)", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK", "") not in ("", "0"),
                    help="smoke mode (also BENCH_QUICK=1): tiny sizes, one preset, ~2 minutes")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"sections, comma-separated: {','.join(SECTIONS)}")
    ap.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/bench-<date>[-quick].json)")
    args = ap.parse_args()
    sections = args.only.split(",")
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        print(f"bench: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or HERE / "results" / f"bench-{stamp}{'-quick' if args.quick else ''}.json"
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "quick": args.quick, "machine": machine()}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in sections:
            results[name] = run_section(name, args.quick, Path(tmp))
    failed = [n for n in sections if "error" in results[n]]
    figures = {k: {kk: vv for kk, vv in results[k].items() if kk != "error"} for k in sections}
    rows = report.rows_of({k: v for k, v in figures.items() if v})  # what a failed script left out is missing
    m = results["machine"]
    quick = " (quick smoke mode: sizes too small to mean much)" if args.quick else ""
    title = (f"Benchmarks of {results['date']}{quick}, {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
             f"({m['torch_threads']} threads), lightly "
             f"{m['lightly']}, commit {m['commit']}, load {m['load_avg_1min']:.1f} at the start; "
             f"{time.perf_counter() - t0:.0f} s in all")
    print("\n" + report.table(rows, title))
    report.write_json(out, results, rows)
    print(f"\nfigures in {out}")
    if failed:
        print(f"bench: section(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
