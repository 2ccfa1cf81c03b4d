"""Pure per-iteration schedules: arrays with one value per optimiser step.

The loop reads ``schedule[it]``; nothing is stateful, so resume at step ``it`` is exact and the
dashboard can plot a schedule before a run starts. Shapes follow DINO's ``cosine_scheduler``.
"""

from __future__ import annotations

import numpy as np


def cosine_schedule(start: float, end: float, steps: int, warmup_steps: int = 0,
                    warmup_start: float = 0.0) -> np.ndarray:
    """(steps,) values: linear warm-up ``warmup_start -> start`` over ``warmup_steps``, then a
    half-cosine from ``start`` to ``end`` over the remaining steps (last value == end)."""
    assert steps >= 1 and 0 <= warmup_steps <= steps, (steps, warmup_steps)
    warm = np.linspace(warmup_start, start, warmup_steps, endpoint=False)
    n = steps - warmup_steps
    t = np.arange(n) / max(n - 1, 1)  # 0 .. 1 inclusive
    cos = end + 0.5 * (start - end) * (1 + np.cos(np.pi * t))
    return np.concatenate([warm, cos]).astype(np.float64)


def linear_warmup_then_constant(start: float, end: float, steps: int, warmup_steps: int) -> np.ndarray:
    """(steps,) values: linear ``start -> end`` over ``warmup_steps``, then ``end`` (DINO's
    teacher-temperature warm-up)."""
    assert steps >= 1 and warmup_steps >= 0
    warm = np.linspace(start, end, min(warmup_steps, steps), endpoint=False)
    return np.concatenate([warm, np.full(steps - len(warm), end)]).astype(np.float64)


def value_at(schedule: np.ndarray, it: int) -> float:
    """``schedule[it]`` as a float, the last value past the end (a run resumed with more steps
    than its schedule, or an analysis at the final step)."""
    return float(schedule[min(it, len(schedule) - 1)])


def delayed_cosine_ramp(value: float, start: int, ramp_steps: int, steps: int) -> np.ndarray:
    """(steps,) values: 0 before step ``start``, then a half-cosine rise to ``value`` over
    ``ramp_steps`` steps, then ``value`` (the Gram-anchoring weight of DINOv3: off for most of
    training, then switched on smoothly). At ``start + k``, k < ramp_steps:
    ``value * (1 - cos(pi k / ramp_steps)) / 2``."""
    assert steps >= 1 and start >= 0 and ramp_steps >= 0
    it = np.arange(steps, dtype=np.float64)
    k = it - start
    ramp = value * 0.5 * (1.0 - np.cos(np.pi * np.clip(k / max(ramp_steps, 1), 0.0, 1.0)))
    out = np.where(k < 0, 0.0, np.where(k >= ramp_steps, value, ramp))
    return out.astype(np.float64)
