"""Stopping on SIGTERM / Ctrl-C: a flag that the handlers set and the training loop reads.

Kept free of torch so that a launcher (``python -m trainer demo``) can hold the flag without
paying for torch's import before it starts its runs.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


class StopFlag:
    """Set by SIGTERM / SIGINT; the loop checkpoints and exits cleanly at the next step.

    One flag can be shared by several runs in turn (``python -m trainer demo``): once set, the
    current run stops and the launcher starts no further one."""

    def __init__(self) -> None:
        self.reason = ""
        self.signum = 0  # the signal that set the flag (0: not set)

    def __call__(self, signum: int, _frame: object) -> None:
        self.signum = signum
        self.reason = f"stopped by signal {signal.Signals(signum).name}"

    @property
    def exit_code(self) -> int:
        """The shell's code for a process stopped by this signal: 128 + signal (130, 143)."""
        return 128 + self.signum


@contextmanager
def stop_signals(stop: StopFlag, enabled: bool = True) -> Iterator[StopFlag]:
    """SIGTERM and SIGINT set ``stop`` inside the block; the previous handlers come back after."""
    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)} if enabled else {}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)
