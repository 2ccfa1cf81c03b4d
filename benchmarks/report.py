"""The benchmark table: every figure of one ``make bench`` run as a ratio against its peer
(lightly's implementation, the unmasked or ungrouped pass) or the peak measured in the same run,
with issue 17's target beside it. ``bench.py`` collects the figures; this module only turns
them into rows, a Markdown table (the README's) and JSON. Pure functions, so a test checks the
assembly on synthetic figures.

The figures (``results``), each section optional, as the benchmark scripts write them:
``throughput[preset][method]`` (train_throughput.py), ``phases[method]`` (step_phases.py),
``mae_encoder[threads]`` (mae_encoder_speed.py), ``multicrop`` (multicrop_grouping.py),
``memory`` (memory_growth.py), ``dashboard`` (dashboard_speed.py --live-cpu), ``data_loader``
(data_loader.py).
"""

from __future__ import annotations

import json
import operator
from dataclasses import asdict, dataclass
from pathlib import Path

NAMES = {"dino": "DINO", "mae": "MAE", "ijepa": "I-JEPA"}
PHASE_ABBR = {"data": "data", "forward": "fwd", "backward": "bwd", "optimiser": "opt", "ema": "EMA",
              "statistics": "stats", "logging": "log", "evaluation": "eval"}
# issue 17's targets: (comparison, threshold) on the row's ratio
FULL_STEP = {"dino": (">=", 1.8), "mae": (">=", 1.2), "ijepa": (">=", 1.2)}
MODEL_STEP = {"dino": (">=", 1.3)}
MFU_CPU_SMALL = {"dino": (">=", 0.50), "mae": (">=", 0.35), "ijepa": (">=", 0.35)}
_OPS = {">=": operator.ge, "<": operator.lt}


@dataclass(frozen=True)
class Row:
    """One figure: what was measured, against what, their ratio and the target on that ratio."""

    figure: str
    measured: str
    against: str
    ratio: float
    target: str = ""  # e.g. ">= 1.8"; "" = none
    meets: bool | None = None  # None without a target


def _row(figure: str, measured: str, against: str, ratio: float, target: tuple[str, float] | None = None) -> Row:
    if target is None:
        return Row(figure, measured, against, ratio)
    op, threshold = target
    return Row(figure, measured, against, ratio, f"{op} {threshold:g}", bool(_OPS[op](ratio, threshold)))


def _g(flop_per_s: float) -> str:
    return f"{flop_per_s / 1e9:.0f} GFLOP/s"


def throughput_rows(throughput: dict) -> list[Row]:
    rows = []
    for preset, methods in throughput.items():
        for m, r in methods.items():
            name = f"{NAMES.get(m, m)} {preset}"
            rows.append(_row(f"{name}: full step (data + model)", f"{r['ours_full_images_per_s']:.0f} img/s",
                             f"lightly {r['lightly_full_images_per_s']:.0f} img/s", r["full_ratio"],
                             FULL_STEP.get(m)))
            rows.append(_row(f"{name}: model step", f"{r['ours_model_images_per_s']:.0f} img/s",
                             f"lightly {r['lightly_model_images_per_s']:.0f} img/s", r["model_ratio"],
                             MODEL_STEP.get(m)))
            flops = f"{r['flop_per_step'] / 1e9:.2f} GFLOP/step"
            rate = r["flop_per_step"] / r["model_step_s"]
            rows.append(_row(f"{name}: MFU, model step", f"{flops} at {_g(rate)}",
                             f"1024^3 matmul peak {_g(r['peak_1024_flop_per_s'])}", r["mfu_model_vs_1024"],
                             MFU_CPU_SMALL.get(m) if preset == "cpu-small" else None))
            rows.append(_row(f"{name}: MFU, model step, at its own shapes", f"{flops} at {_g(rate)}",
                             f"peak at its matmul shapes {_g(r['peak_shapes_flop_per_s'])}",
                             r["mfu_model_vs_shapes"]))
            rows.append(_row(f"{name}: MFU, full step", f"{flops} at {_g(r['flop_per_step'] / r['full_step_s'])}",
                             f"1024^3 matmul peak {_g(r['peak_1024_flop_per_s'])}", r["mfu_full_vs_1024"]))
    return rows


def phase_rows(phases: dict) -> list[Row]:
    rows = []
    for m, r in phases.items():
        parts = ", ".join(f"{PHASE_ABBR.get(k, k)} {v:.0%}" for k, v in r["share"].items())
        rows.append(_row(f"{NAMES.get(m, m)}: where a step goes", parts, f"step {r['step_s'] * 1e3:.0f} ms",
                         r["share"]["data"], ("<", 0.10)))
    return rows


def other_rows(results: dict) -> list[Row]:
    rows = []
    for threads, r in results.get("mae_encoder", {}).items():
        rows.append(_row(f"MAE encoder fwd+bwd, mask 0.75, {threads} thread(s)", f"{r['mask_075_s'] * 1e3:.1f} ms",
                         f"mask 0.0 {r['mask_0_s'] * 1e3:.1f} ms", r["speedup"], (">=", 5.0)))
    if "multicrop" in results:
        r = results["multicrop"]
        rows.append(_row("DINO multi-crop: one pass per resolution", f"{r['grouped_s'] * 1e3:.1f} ms",
                         f"one pass per crop {r['per_crop_s'] * 1e3:.1f} ms", r["ratio"]))
    if "memory" in results:
        r = results["memory"]
        rows.append(_row(f"trainer RSS at step {r['to_step']} (peak {r['peak_rss_mb']:.0f} MB)",
                         f"{r['rss_to_mb']:.0f} MB", f"step {r['from_step']} {r['rss_from_mb']:.0f} MB",
                         1 + r["growth"], ("<", 1.05)))
    if "dashboard" in results:
        r = results["dashboard"]
        rows.append(_row("dashboard server CPU, Live following a run", f"{r['server_cpu_share']:.1%} of a core",
                         f"one core, {r['seconds']:.0f} s", r["server_cpu_share"], ("<", 0.15)))
    if "data_loader" in results:
        r = results["data_loader"]
        rows.append(_row("batched multi-crop views", f"{r['views_batched_s'] * 1e3:.0f} ms/batch",
                         f"per-image v2 {r['views_v2_s'] * 1e3:.0f} ms/batch", r["views_ratio"]))
    return rows


def rows_of(results: dict) -> list[Row]:
    """Every row of ``results``, in the table's order."""
    return throughput_rows(results.get("throughput", {})) + phase_rows(results.get("phases", {})) + other_rows(results)


def table(rows: list[Row], title: str = "") -> str:
    """A Markdown table of ``rows`` (the README's benchmark table)."""
    lines = [title, ""] if title else []
    lines += ["| figure | measured | against | ratio | target |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        mark = "" if r.meets is None else (" (met)" if r.meets else " (not met)")
        lines.append(f"| {r.figure} | {r.measured} | {r.against} | {r.ratio:.2f} | {r.target}{mark} |")
    return "\n".join(lines)


def write_json(path: Path, results: dict, rows: list[Row]) -> None:
    """The figures and the rows built from them, atomically (a temporary name, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({**results, "rows": [asdict(r) for r in rows]}, indent=2))
    tmp.replace(path)
