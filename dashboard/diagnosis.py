"""A run's diagnosis (healthy, uniform / one-hot / dimensional collapse) for the pages.

The judgement is ``analysis.collapse.diagnose_run``'s; this module only caches it per run
and per state of the run's metrics database, so pages that refresh every second re-diagnose
a run only when new rows have arrived.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from analysis.collapse import diagnose_run

COLLAPSED = ("uniform collapse", "one-hot collapse", "dimensional collapse")


@dataclass(frozen=True)
class Verdict:
    label: str  # one of analysis.collapse.LABELS
    evidence: str  # the reasons, in words

    @property
    def collapsed(self) -> bool:
        return self.label in COLLAPSED


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
def _diagnose(run_dir: str, version: tuple[int, ...]) -> tuple[str, str]:
    d = diagnose_run(run_dir)
    return d.label, "; ".join(d.evidence).rstrip(".") + "."


def of_run(run_dir: Path | str) -> Verdict | None:
    """The diagnosis of a run from its latest logged values, or None with no metrics yet."""
    run_dir = Path(run_dir)
    version = db_version(run_dir)
    if not any(version):
        return None
    label, evidence = _diagnose(str(run_dir), version)
    return None if label == "unknown" else Verdict(label, evidence)
