"""A group's study, verdict and spreads for the pages (Compare, Runs).

The judgement is ``analysis.study.load_group``'s (``analysis.verdict`` on the study's rules);
this module only caches it per state of the group's runs (each run's status and metrics
database), so a page that refreshes re-reads a group only when one of its runs has moved. The
pages read the analysis measures (linear probe, attention Jaccard) from their on-disk cache;
``compute_measures`` (a button on Compare) or ``python -m analysis report`` computes them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from analysis.study import StudyError, StudyResult, load_group
from analysis.study_report import final_rows, write_study_report
from core.measures import MEASURES
from dashboard import loaders
from dashboard.diagnosis import db_version
from trainer.store import StoreError


def version(root: Path | str, group: str) -> tuple:
    """Changes whenever a run of ``group`` appears, changes status or logs rows."""
    return tuple((i["run_id"], i.get("status"), db_version(Path(i["dir"])))
                 for i in loaders.runs(str(root)) if i.get("group") == group)


@st.cache_data(max_entries=64, show_spinner=False)
def _load(root: str, group: str, version: tuple, diagnose: bool) -> StudyResult | str:
    try:
        return load_group(root, group, measures="cached", diagnose=diagnose)
    except (StudyError, StoreError, OSError) as e:
        return str(e)


def of_group(root: Path | str, group: str, diagnose: bool = True) -> StudyResult | str:
    """The group read as a study (verdict, spreads, diagnoses), or why it cannot be read."""
    return _load(str(root), group, version(root, group), diagnose)


def compute_measures(root: Path | str, group: str) -> str:
    """Compute the study's analysis measures of every finished run (slow; cached on disk);
    returns "" or why it failed."""
    try:
        load_group(root, group, measures="compute", diagnose=False)
    except (StudyError, StoreError, OSError, ValueError) as e:
        return str(e)
    _load.clear()
    return ""


def pending_measures(result: StudyResult) -> list[str]:
    """Titles of the measures a claim is still waiting for."""
    if result.verdict is None or result.study is None:
        return []
    waiting = [c for c in result.verdict.claims if c.verdict == "pending" and "not measured yet" in c.why]
    return [MEASURES[m].title for m in result.study.measures() if waiting]


def claims_frame(result: StudyResult) -> pd.DataFrame:
    """One row per claim: the paper's finding, its rule, our verdict and why."""
    from analysis.study import titles

    rows = [{"": "headline" if c.claim.headline else "also", "the paper": c.claim.text, "verdict": c.verdict,
             "why (our figures)": c.why, "rule": c.claim.rule(titles())}
            for c in (result.verdict.claims if result.verdict else [])]
    return pd.DataFrame(rows)


def spreads_frame(result: StudyResult) -> pd.DataFrame:
    """The final-metrics table of the report: one row per arm, mean ± std over seeds."""
    header, rows = final_rows(result)
    return pd.DataFrame(rows, columns=header)


def groups_frame(root: Path | str) -> pd.DataFrame:
    """One row per group under ``root``: its study, how many runs finished, its verdict and why."""
    groups = sorted({i["group"] for i in loaders.runs(str(root)) if i.get("group")})
    rows: list[dict[str, Any]] = []
    for g in groups:
        r = of_group(root, g, diagnose=False)
        if isinstance(r, str):
            rows.append({"group": g, "study": "", "runs": "", "verdict": "", "why": r})
            continue
        done = sum(x.status == "finished" for x in r.runs)
        rows.append({"group": g, "study": r.study.name if r.study else "", "runs": f"{done} of {len(r.runs)} finished",
                     "verdict": r.verdict.verdict if r.verdict else "",
                     "why": r.verdict.why if r.verdict else "; ".join(r.notes)})
    return pd.DataFrame(rows)


def report_html(root: Path | str, group: str) -> str:
    """The group's self-contained HTML report, as ``python -m analysis report`` writes it
    (cached measures only: the page never trains a probe behind a download button)."""
    result = load_group(root, group, measures="cached")
    with tempfile.TemporaryDirectory() as d:
        write_study_report(result, Path(d))
        return (Path(d) / "report.html").read_text()
