"""Model FLOP utilisation: what a step could reach on this machine, measured in the same run.

- ``matmul_peak``: FLOP/s of one square n^3 matmul (1024^3 fp32 on CPU): the machine's peak.
- ``recorded_matmuls``: the matrix products (mm, addmm, bmm, baddbmm) one call runs, with their
  shapes, seen at the ATen level (``linear`` on (B, L, D) arrives as one 2-D mm).
- ``shape_peak``: each distinct product of a step timed alone, combined as the step would run
  them: total FLOPs / sum of each product's time. Narrow models (width 64-128) cannot reach the
  1024^3 peak; this is the ceiling at their own shapes.

    python benchmarks/mfu.py            # prints the 1024^3 peak with this process's threads
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten
_MM = {_aten.mm.default: "mm", _aten.addmm.default: "addmm", _aten.bmm.default: "bmm",
       _aten.baddbmm.default: "baddbmm"}
Matmul = tuple[str, tuple[int, ...], tuple[int, ...], str]  # kind, A shape, B shape, dtype


def matmul_flops(kind: str, a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """FLOPs of one product (2 per multiply-add): (M, K) x (K, N) or (B, M, K) x (B, K, N)."""
    if kind in ("mm", "addmm"):
        return 2 * a[0] * a[1] * b[1]
    return 2 * a[0] * a[1] * a[2] * b[2]


def _time(fn: Callable[[], object], min_s: float, min_reps: int) -> float:
    """Seconds per call: one warm-up, then at least ``min_reps`` calls and ``min_s`` seconds."""
    fn()
    reps, t0 = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - t0 < min_s:
        fn()
        reps += 1
    return (time.perf_counter() - t0) / reps


def matmul_peak(n: int = 1024, dtype: torch.dtype = torch.float32, min_s: float = 0.5) -> float:
    """FLOP/s of an n x n x n matmul on the CPU with this process's threads."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 / _time(lambda: a @ b, min_s, 3)


class _Record(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[Matmul] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kind = _MM.get(func)
        if kind is not None:
            a, b = (args[1], args[2]) if kind in ("addmm", "baddbmm") else (args[0], args[1])
            self.seen[(kind, tuple(a.shape), tuple(b.shape), str(a.dtype).removeprefix("torch."))] += 1
        return func(*args, **(kwargs or {}))


def recorded_matmuls(fn: Callable[[], object]) -> Counter[Matmul]:
    """The products ``fn()`` runs, counted per (kind, shapes, dtype)."""
    with _Record() as rec:
        fn()
    return rec.seen


def shape_peak(matmuls: Counter[Matmul], min_s: float = 0.05) -> dict[str, float]:
    """``flop_per_s``: the FLOP/s of running ``matmuls`` (each distinct product timed alone,
    weighted by how often the step runs it); ``flop``: their FLOPs; ``distinct``: how many."""
    total_flop, total_s = 0.0, 0.0
    for (kind, sa, sb, dt), count in matmuls.items():
        dtype = getattr(torch, dt)
        a, b = torch.randn(sa, dtype=dtype), torch.randn(sb, dtype=dtype)
        op = torch.mm if kind in ("mm", "addmm") else torch.bmm
        flop = matmul_flops(kind, sa, sb)
        total_flop += count * flop
        total_s += count * _time(lambda op=op, a=a, b=b: op(a, b), min_s, 3)
    return {"flop_per_s": total_flop / total_s if total_s else float("nan"), "flop": total_flop,
            "distinct": float(len(matmuls))}


def counted_flops(fn: Callable[[], object]) -> float:
    """FLOPs of ``fn()`` by ``torch.utils.flop_counter`` (forward and backward, attention included)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


if __name__ == "__main__":
    print(f"fp32 matmul 1024^3: {matmul_peak() / 1e9:.1f} GFLOP/s, {torch.get_num_threads()} threads")
