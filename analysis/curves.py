"""A run's logged scalars as curves, and the k-NN references every k-NN curve is read against.

``Curves`` holds, per metric name, the logged (steps, values) in step order; ``until(step)``
is the run as it looked at that step, which is how the alarms are replayed over a finished
run (``analysis.alarms``) and how their calibration fixtures are read back.

The two k-NN references of a run, both logged at step 0 by the trainer on the same memory
bank and queries as every later ``eval/knn_top1``:

- random initialisation: ``eval/knn_top1`` at step 0 (the backbone before any update);
- raw pixels: ``eval/knn_top1_pixels`` (logged at step 0 only).

``knn_references(curves)`` reads them; pages that draw a k-NN curve draw these as lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import metrics as M

_EMPTY = (np.zeros(0, np.int64), np.zeros(0, np.float64))


@dataclass(frozen=True)
class Curves:
    """Logged scalars of one run: name -> (steps (n,) int64 ascending, values (n,) float64)."""

    series: Mapping[str, tuple[np.ndarray, np.ndarray]]

    @classmethod
    def from_columns(cls, names: np.ndarray, steps: np.ndarray, values: np.ndarray) -> Curves:
        """From the long columns of ``trainer.store.read_scalars`` (one row per logged value).
        A step logged twice for a name keeps its last value."""
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        names = np.asarray(names)
        for name in np.unique(names):
            sel = names == name
            s, v = np.asarray(steps)[sel].astype(np.int64), np.asarray(values)[sel].astype(np.float64)
            order = np.argsort(s, kind="stable")
            s, v = s[order], v[order]
            last = np.r_[s[1:] != s[:-1], True]  # the last row of each step
            out[str(name)] = (s[last], v[last])
        return cls(out)

    @classmethod
    def from_pairs(cls, pairs: Mapping[str, Iterable[tuple[int, float]]]) -> Curves:
        """From ``{name: [[step, value], ...]}`` (the calibration fixtures' JSON)."""
        rows = [(n, int(s), float(v)) for n, p in pairs.items() for s, v in p]
        if not rows:
            return cls({})
        n, s, v = zip(*rows)
        return cls.from_columns(np.array(n), np.array(s), np.array(v))

    def get(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of ``name``; empty arrays when it was never logged."""
        return self.series.get(name, _EMPTY)

    def steps(self) -> np.ndarray:
        """Every step at which anything was logged, ascending."""
        parts = [s for s, _ in self.series.values()]
        return np.unique(np.concatenate(parts)) if parts else _EMPTY[0]

    def until(self, step: int) -> Curves:
        """The curves as they were once ``step`` had been logged (rows at steps <= ``step``)."""
        out = {}
        for name, (s, v) in self.series.items():
            n = int(np.searchsorted(s, step, side="right"))
            if n:
                out[name] = (s[:n], v[:n])
        return Curves(out)

    def last(self, name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The last ``n`` finite (steps, values) of ``name``."""
        s, v = self.get(name)
        keep = np.isfinite(v)
        return s[keep][-n:], v[keep][-n:]


def read_run_curves(run_dir: Path | str, names: Iterable[str] | None = None) -> Curves:
    """The logged scalars of a run folder (all of them, or only ``names``)."""
    from trainer.store import read_scalars

    cols, _ = read_scalars(run_dir, names=list(names) if names is not None else None)
    return Curves.from_columns(cols["name"], cols["step"], cols["value"])


@dataclass(frozen=True)
class KnnReferences:
    """The k-NN top-1 a run's learnt feature is compared with (None: not logged)."""

    random_init: float | None  # eval/knn_top1 at step 0
    pixels: float | None  # eval/knn_top1_pixels (step 0)


def knn_references(curves: Curves) -> KnnReferences:
    """Both references of a run's k-NN curve: step 0's ``eval/knn_top1`` and the raw-pixel one.
    A run resumed past step 0 or trained before the pixel reference existed lacks one."""
    def at_zero(name: str) -> float | None:
        s, v = curves.get(name)
        hit = np.flatnonzero((s == 0) & np.isfinite(v))
        return float(v[hit[-1]]) if hit.size else None

    return KnnReferences(at_zero(M.EVAL_KNN_TOP1), at_zero(M.EVAL_KNN_TOP1_PIXELS))


def run_knn_references(run_dir: Path | str) -> KnnReferences:
    """``knn_references`` of a run folder (reads two names only)."""
    return knn_references(read_run_curves(run_dir, [M.EVAL_KNN_TOP1, M.EVAL_KNN_TOP1_PIXELS]))
