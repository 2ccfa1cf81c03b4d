"""Every runnable study ends in a report whatever our scale finds: each of its claims gets a
verdict (reproduced, not reproduced or inconclusive, never left pending once its runs have
finished and the report has computed the measures) with the figures behind it, beside the
paper's finding. Tiny models and a few steps: this checks the plumbing of each study (its
arms train, its metrics and measures are read, its rules judge them), not its science."""

from __future__ import annotations

import csv

import pytest

from analysis.__main__ import main as report_main
from tests.trainer.test_launcher import TINY
from trainer.__main__ import main as trainer_main
from trainer.studies import STUDIES, missing_fields

# 4 steps with a checkpoint and an evaluation at the end: every compared metric has a final value
SETS = [x for s in [*TINY, "run.eval_every=4", "run.ckpt_every=4"] for x in ("--set", s)]
RUNNABLE = [n for n, s in STUDIES.items() if not missing_fields(s) and n != "centering-sharpening"]


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNNABLE)
def test_every_study_ends_in_a_report_with_a_verdict_per_claim(name, tmp_path, capsys):
    study = STUDIES[name]
    assert trainer_main(["ablate", name, "--seeds", "1", "--steps", "4", "--group", "g",
                         "--runs-dir", str(tmp_path), *SETS]) == 0
    out = tmp_path / "report"
    assert report_main(["report", "g", "--runs-dir", str(tmp_path), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "verdicts.csv")))
    assert [r["claim"] for r in rows] == [c.text for c in study.claims]
    for r in rows:  # a verdict from the figures, each with its number(s) and how many seeds held
        assert r["verdict"] in ("reproduced", "not reproduced", "inconclusive"), r
        assert "of 1 seeds" in r["why"], r
    md = (out / "report.md").read_text()
    assert study.finding in md and "## Verdict: " in md
    assert all(f"| {a.name} | 1 of 1 |" in md for a in study.arms)  # every arm in the spreads table
