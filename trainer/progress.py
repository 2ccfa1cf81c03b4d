"""Terminal progress bar (tqdm) with the numbers that tell a healthy run from a collapsing one."""

from __future__ import annotations

from tqdm import tqdm

from core.metrics import METRICS, PROGRESS

# metric -> its declared short label, in the declared order (shown when present)
_SHOWN = {name: METRICS[name].short for name in PROGRESS}


class Progress:
    def __init__(self, total: int, start: int, enabled: bool):
        self._bar = tqdm(total=total, initial=start, dynamic_ncols=True, unit="step") if enabled else None

    def update(self, step: int, stats: dict[str, float]) -> None:
        if self._bar is None:
            return
        self._bar.n = step
        self._bar.set_postfix({lab: f"{stats[k]:.3g}" for k, lab in _SHOWN.items() if k in stats}, refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
