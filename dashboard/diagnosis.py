"""A run's diagnosis (healthy, warming up, uniform / one-hot / dimensional collapse, not
learning) for the pages.

The judgement is ``analysis.collapse.diagnose_run``'s (the rules of ``analysis.alarms``, which
the CLI's ``--what diagnose`` prints too); this module only caches it per run and per state of
the run's metrics database, so pages that refresh every second re-diagnose a run only when new
rows have arrived.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from analysis.alarms import WARMING_UP
from analysis.collapse import ALARMS, diagnose_run


@dataclass(frozen=True)
class Verdict:
    label: str  # one of analysis.alarms.LABELS
    evidence: str  # the reasons, in words
    rule: str = ""  # the alarm rule that fired ("" when none)
    first_step: int | None = None  # the first logged step it fired at
    advice: str = ""  # what to try, from the run's config

    @property
    def alarm(self) -> bool:
        """A collapse or not learning: the pages show it as a warning."""
        return self.label in ALARMS

    @property
    def warming_up(self) -> bool:
        return self.label == WARMING_UP

    @property
    def headline(self) -> str:
        """"one-hot collapse since step 60" (an alarm: the first step its rule fired), else the label."""
        return self.label + (f" since step {self.first_step}" if self.rule and self.first_step is not None else "")


def db_version(run_dir: Path) -> tuple[int, ...]:
    """Changes whenever the trainer commits rows (the main file or its write-ahead log)."""
    out: list[int] = []
    for name in ("metrics.sqlite", "metrics.sqlite-wal"):
        try:
            s = os.stat(run_dir / name)
            out += [s.st_mtime_ns, s.st_size]
        except OSError:
            out += [0, 0]
    return tuple(out)


@st.cache_data(max_entries=512, show_spinner=False)
def _diagnose(run_dir: str, version: tuple[int, ...]) -> Verdict:
    d = diagnose_run(run_dir)
    return Verdict(d.label, "; ".join(d.evidence).rstrip(".") + ".", d.rule, d.first_step, d.advice)


def of_run(run_dir: Path | str) -> Verdict | None:
    """The diagnosis of a run from its latest logged values, or None with no metrics yet."""
    run_dir = Path(run_dir)
    version = db_version(run_dir)
    if not any(version):
        return None
    verdict = _diagnose(str(run_dir), version)
    return None if verdict.label == "unknown" else verdict
