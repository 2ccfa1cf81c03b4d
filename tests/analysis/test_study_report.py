"""``python -m analysis report GROUP``: a self-contained HTML page and a Markdown summary with the
verdicts, figures, final metrics (mean ± std over seeds) and each run's diagnosis; analysis
measures computed from checkpoints once and cached (the pages read only the cache); groups
that are no study get spreads and no verdict; a missing group is one line, exit code 2."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from analysis.__main__ import main
from analysis.alarms import LABELS as ALARM_LABELS
from analysis.collapse import diagnose_run
from analysis.study import load_group
from analysis.verdict import VERDICTS
from tests.trainer.test_launcher import TINY
from trainer.__main__ import main as trainer_main
from trainer.store import read_metric

SETS = [x for s in TINY for x in ("--set", s)]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    assert trainer_main(["ablate", "centering-sharpening", "--seeds", "2", "--steps", "12", "--group", "cs",
                         "--runs-dir", str(root), *SETS]) == 0
    assert trainer_main(["ablate", "mask-ratio", "--seeds", "1", "--steps", "4", "--group", "mr",
                         "--runs-dir", str(root), *SETS]) == 0
    return root


def test_the_report_sets_verdicts_figures_spreads_and_diagnoses_side_by_side(store, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", "cs", "--runs-dir", str(store), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("centering-sharpening cs: 8 runs, 4 arms") and "verdict: " in printed
    for name in ("report.html", "report.md", "collapse.png", "curves.png", "finals.png", "finals.csv",
                 "verdicts.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    page, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    assert "<script" not in page and "http" not in page and page.count("data:image/png;base64,") == 3
    assert "![collapse.png](collapse.png)" in md and "DINO (Caron et al. 2021), Sec. 5.3 and Fig. 7" in md
    verdicts = list(csv.DictReader(open(out / "verdicts.csv")))
    assert len(verdicts) == 4 and all(v["verdict"] in VERDICTS for v in verdicts)
    for v in verdicts:  # the same verdict and reason in both documents
        assert f"| {v['verdict']} | {v['why']} |" in md.replace("\\|", "|")
    # the final-metrics row of an arm: mean ± std over its two seeds, from the store's own numbers
    r = load_group(store, "cs")
    h = []
    for seed in (0, 1):  # the mean over the last tenth of the logged steps
        steps, v = read_metric(store / f"cs-both-s{seed}", "dino/teacher_entropy")
        h.append(float(np.mean(v[steps >= 0.9 * steps.max()])))
    assert r.summary("both", "dino/teacher_entropy")[:2] == pytest.approx((np.mean(h), np.std(h, ddof=1)))
    assert f"| both | 2 of 2 | {np.mean(h):.3f} ± {np.std(h, ddof=1):.3f} |" in md
    rows = list(csv.DictReader(open(out / "finals.csv")))
    # each run's diagnosis is the alarm rules' (12 steps may end inside the EMA warm-up)
    assert len(rows) == 8 and {row["diagnosis"] for row in rows} <= set(ALARM_LABELS)
    for row in rows:
        assert row["diagnosis"] == diagnose_run(store / row["run"]).label
    assert "| cs-both-s0 | both | 0 | finished | 12 of 12 |" in md  # each run with its diagnosis


def test_measures_are_computed_by_the_report_once_and_then_read_from_the_cache(store, tmp_path):
    lin = "analysis/linear_top1"
    before = load_group(store, "mr")  # the pages' view: only what is cached
    assert before.verdict.claims[0].verdict == "pending" and "not measured yet" in before.verdict.claims[0].why
    assert main(["report", "mr", "--runs-dir", str(store), "--out", str(tmp_path / "rep")]) == 0
    after = load_group(store, "mr")
    assert after.verdict.claims[0].verdict in ("reproduced", "not reproduced")  # one seed: never "spread"
    values = {r.arm: r.final[lin] for r in after.runs}
    assert set(values) == {"mask0.15", "mask0.5", "mask0.75", "mask0.9"}
    assert all(0 <= v <= 1 for v in values.values())
    assert load_group(store, "mr", measures="compute").runs[0].final[lin] == after.runs[0].final[lin]
    assert "Linear probe top-1" in (tmp_path / "rep" / "report.md").read_text()


def test_a_group_that_is_no_study_gets_spreads_without_a_verdict(store, tmp_path):
    from trainer.config import Config
    from trainer.loop import train

    for seed in (0, 1):
        train(Config().with_overrides([*TINY, f"run.runs_dir={store}", f"run.name=misc-{seed}", "run.group=misc",
                                       f"run.seed={seed}", "optim.steps=4", "optim.warmup_steps=1", "run.method=mae"]))
    r = load_group(store, "misc")
    assert r.study is None and r.verdict is None and r.arms == ["all"]  # the seeds of one config pooled
    assert r.summary("all", "eval/knn_top1")[2] == 2 and "no verdict" in r.notes[0]
    assert main(["report", "misc", "--runs-dir", str(store), "--out", str(tmp_path / "m")]) == 0
    assert "Verdict" not in (tmp_path / "m" / "report.md").read_text()


def test_a_missing_group_is_one_line_exit_2(store, tmp_path, capsys):
    assert main(["report", "nope", "--runs-dir", str(store), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no runs of group 'nope'") and "its groups: cs, " in err and "\n" not in err
