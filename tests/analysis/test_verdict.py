"""Verdict rules fed synthetic figures, one set per outcome: reproduced (holds for every seed),
not reproduced (for none), inconclusive (seeds disagree, or a run failed), pending (a run not
finished, a measure not computed), and the study's verdict from its headline claims."""

import math

import pytest

from analysis.verdict import Figures, combine, judge_claim, judge_study
from core import metrics as M
from trainer.studies import CENTERING_SHARPENING, JEPA_EMA, MASK_RATIO
from trainer.study_rules import LN_K, Check, Claim, Value

H, KL, KNN, HB = M.DINO_TEACHER_ENTROPY, M.DINO_KL_TEACHER_STUDENT, M.EVAL_KNN_TOP1, M.DINO_TEACHER_BATCH_ENTROPY
LOG_K = math.log(64)


def grid(h: dict[str, list[float]], kl: dict[str, list[float]], knn: dict[str, list[float]] | None = None,
         hb: dict[str, list[float]] | None = None) -> Figures:
    """Figures of the 2 x 2 grid: entropies as fractions of ln K, per arm per seed (the batch-mean
    entropy ``hb`` defaults to the per-image one: every image has the same output)."""
    fig = Figures()
    for arm in h:
        for seed, (r, k) in enumerate(zip(h[arm], kl[arm])):
            fig.final[(arm, seed)] = {H: r * LOG_K, KL: k, KNN: (knn or {}).get(arm, [0.3] * 9)[seed],
                                      HB: (hb or h)[arm][seed] * LOG_K}
            fig.log_k[(arm, seed)] = LOG_K
    return fig


PAPER = dict(  # what the DINO paper's Fig. 7 shows, three seeds
    h={"both": [0.7, 0.72, 0.69], "centering-only": [1.0, 0.99, 1.0], "sharpening-only": [0.0, 0.01, 0.0],
       "neither": [0.5, 0.5, 0.5]},
    kl={"both": [0.6, 0.55, 0.5], "centering-only": [0.002, 0.001, 0.003], "sharpening-only": [0.0, 0.001, 0.0],
        "neither": [0.1, 0.1, 0.1]})


def verdicts(result):
    return [c.verdict for c in result.claims]


def test_the_papers_figures_reproduce_every_headline_claim():
    knn = {"both": [0.33, 0.30, 0.32], "centering-only": [0.28, 0.28, 0.27], "sharpening-only": [0.27, 0.25, 0.27],
           "neither": [0.2] * 3}
    r = judge_study(CENTERING_SHARPENING, grid(**PAPER, knn=knn))
    assert verdicts(r) == ["reproduced"] * 4 and r.verdict == "reproduced"
    assert "holds for every seed (3)" in r.claims[0].why and "0.997 ± 0.006" in r.claims[0].why  # mean ± std


def test_a_centering_arm_that_does_not_collapse_is_not_reproduced():
    h = dict(PAPER["h"], **{"centering-only": [0.75, 0.8, 0.7]})
    kl = dict(PAPER["kl"], **{"centering-only": [0.3, 0.2, 0.4]})
    r = judge_study(CENTERING_SHARPENING, grid(h, kl))
    assert r.claims[0].verdict == "not reproduced" and "holds for no seed (3)" in r.claims[0].why
    assert r.verdict == "not reproduced" and "reproduced: Sharpening alone" in r.why


def test_sharp_outputs_spread_over_prototypes_are_no_one_hot_collapse():
    # each image one-hot on a different prototype: entropy near 0 but the batch mean near uniform
    hb = dict(PAPER["h"], **{"sharpening-only": [0.9, 0.92, 0.88]})
    r = judge_study(CENTERING_SHARPENING, grid(**PAPER, hb=hb))
    c = r.claims[1]
    assert c.verdict == "not reproduced" and [x.holds for x in c.checks] == [[True] * 3, [False] * 3, [True] * 3]
    assert "sharpening-only dino/teacher_batch_entropy / ln K 0.900 ± 0.020 <= 0.5: 0 of 3 seeds" in c.why


def test_seeds_that_disagree_are_inconclusive_and_name_the_seed():
    h = dict(PAPER["h"], **{"centering-only": [1.0, 0.8, 1.0]})  # seed 1 stays below 0.9 ln K
    r = judge_study(CENTERING_SHARPENING, grid(h, PAPER["kl"]))
    c = r.claims[0]
    assert c.verdict == "inconclusive" and c.holds == [True, False, True]
    assert "spread too wide: holds for 2 of 3 seeds, not for seed 1" in c.why
    assert r.verdict == "inconclusive"


def test_knn_ordering_within_noise_earns_its_own_verdict_and_not_the_studys():
    # the margin is one standard error: a gap of 0.01 is no gap; one seed clearly ahead, two not
    knn = {"both": [0.30, 0.30, 0.35], "centering-only": [0.29, 0.31, 0.28], "sharpening-only": [0.25, 0.25, 0.25],
           "neither": [0.2] * 3}
    r = judge_study(CENTERING_SHARPENING, grid(**PAPER, knn=knn))
    assert r.claims[3].verdict == "inconclusive" and r.verdict == "reproduced"  # k-NN is not a headline claim
    assert "difference 0.023 ± 0.042" in r.claims[3].why


def test_margins_and_operators():
    v = Value("a", "m")
    assert Check(v, ">", 0.3, 0.015).holds(0.316, 0.3) and not Check(v, ">", 0.3, 0.015).holds(0.314, 0.3)
    assert Check(v, ">=", 0.3, 0.015).holds(0.286, 0.3) and not Check(v, ">=", 0.3, 0.015).holds(0.284, 0.3)
    assert Check(v, "<", 0.3, 0.1).holds(0.19, 0.3) and not Check(v, "<", 0.3, 0.1).holds(0.21, 0.3)
    assert Check(v, "<=", 0.02).holds(0.02, 0.02) and not Check(v, "<=", 0.02).holds(0.021, 0.02)
    with pytest.raises(ValueError, match="operator"):
        Check(v, "==", 1.0)


def test_per_ln_k_divides_by_each_runs_own_ln_k():
    claim = Claim("uniform", (Check(Value("K16", H, LN_K), ">=", 0.9), Check(Value("K1024", H, LN_K), ">=", 0.9)))
    fig = Figures(final={("K16", 0): {H: 0.95 * math.log(16)}, ("K1024", 0): {H: 0.95 * math.log(16)}},
                  log_k={("K16", 0): math.log(16), ("K1024", 0): math.log(1024)})
    c = judge_claim(claim, fig)
    assert c.verdict == "not reproduced" and [r.holds for r in c.checks] == [[True], [False]]
    assert "one seed: no spread" in c.why


def test_unfinished_failed_and_unmeasured_runs():
    claim = MASK_RATIO.claims[0]  # needs the linear probe of three arms
    lin = "analysis/linear_top1"
    fig = Figures(final={(a, 0): {lin: x} for a, x in (("mask0.15", 0.2), ("mask0.5", 0.25), ("mask0.75", 0.3))})
    assert judge_claim(claim, fig).verdict == "reproduced"
    fig.missing[("mask0.5", 1)] = "pending: running at step 40 of 400"
    c = judge_claim(claim, fig)  # seed 1's other arms have not started: wait
    assert c.verdict == "pending" and "no run yet of mask0.15 seed 1, mask0.75 seed 1" in c.why
    for a in ("mask0.15", "mask0.75"):
        fig.final[(a, 1)] = {lin: 0.3}
    c = judge_claim(claim, fig)
    assert c.verdict == "pending" and "mask0.5 seed 1: pending: running at step 40 of 400" in c.why
    fig.missing[("mask0.5", 1)] = "failed: non-finite loss at step 41"
    c = judge_claim(claim, fig)
    assert c.verdict == "inconclusive" and "failed: non-finite loss" in c.why and c.seeds == [0]
    del fig.final[("mask0.75", 0)][lin]  # the measure was never computed: wait for the report
    assert judge_claim(claim, Figures(final={k: v for k, v in fig.final.items() if k[1] == 0})).verdict == "pending"
    assert judge_claim(claim, Figures()).verdict == "pending"


def test_the_study_verdict_reads_headline_claims_pending_first():
    r = judge_study(JEPA_EMA, Figures(final={("ema", 0): {M.COLLAPSE_STD_L2: 0.6, M.IJEPA_TARGET_STD: 0.8},
                                             ("no-ema", 0): {M.COLLAPSE_STD_L2: 0.05, M.IJEPA_TARGET_STD: 0.2}}))
    assert verdicts(r) == ["reproduced"] * 3 and r.verdict == "reproduced"
    outcomes = [type("C", (), {"claim": Claim(t, (), headline), "verdict": v})()
                for t, headline, v in [("a", True, "reproduced"), ("b", True, "inconclusive"),
                                       ("c", False, "not reproduced")]]
    assert combine(outcomes)[0] == "inconclusive"  # a secondary claim never decides
    outcomes[0].verdict = "not reproduced"
    assert combine(outcomes)[0] == "not reproduced"
    outcomes[1].verdict = "pending"
    assert combine(outcomes)[0] == "pending"
