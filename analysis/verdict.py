"""Verdicts: does a study's group reproduce the paper's finding? Computed from the figures by
the rules written in the study's definition (``trainer.studies``), never stated in advance.

A claim's checks are evaluated seed by seed on paired runs (the same seed in every arm). The
claim is *reproduced* when it holds for every seed, *not reproduced* when it holds for none,
*inconclusive* when the seeds disagree (the spread is too wide to say) or a run failed, and
*pending* while a run it needs has not finished or a measure has not been computed. A study's
verdict reads its headline claims: pending before not reproduced before inconclusive before
reproduced.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from trainer.study_rules import LN_K, Check, Claim, Study, Value

VERDICTS = ("reproduced", "not reproduced", "inconclusive", "pending")
Key = tuple[str, int]  # (arm, seed)


@dataclass
class Figures:
    """The numbers verdicts read, per (arm, seed): final and step-0 values by metric name, the
    run's ln K, and why a run has none (``missing``: "pending: ..." or "failed: ...")."""

    final: dict[Key, dict[str, float]] = field(default_factory=dict)
    init: dict[Key, dict[str, float]] = field(default_factory=dict)
    log_k: dict[Key, float] = field(default_factory=dict)
    missing: dict[Key, str] = field(default_factory=dict)

    def seeds(self, arm: str) -> set[int]:
        return {s for a, s in (*self.final, *self.missing) if a == arm}

    def get(self, v: Value, seed: int) -> float | None:
        table = self.init if v.at == "init" else self.final
        x = table.get((v.arm, seed), {}).get(v.metric)
        if x is None or not math.isfinite(x):
            return None
        if v.per == LN_K:
            k = self.log_k.get((v.arm, seed))
            return x / k if k else None
        return x


def spread(values: list[float]) -> tuple[float, float]:
    """(mean, sample standard deviation; 0 for one value)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def num(x: float) -> str:
    return f"{x:.3f}" if abs(x) < 100 else f"{x:.1f}"


def fmt(mean: float, std: float, n: int) -> str:
    """"mean ± std" over ``n`` seeds (the mean alone for one)."""
    return f"{num(mean)} ± {num(std)}" if n > 1 else num(mean)


@dataclass
class CheckResult:
    check: Check
    left: list[float]  # per judged seed
    right: list[float]
    holds: list[bool]


@dataclass
class ClaimVerdict:
    claim: Claim
    verdict: str  # one of VERDICTS
    why: str
    seeds: list[int]
    holds: list[bool]  # per seed of ``seeds`` (empty when pending)
    checks: list[CheckResult] = field(default_factory=list)


@dataclass
class StudyVerdict:
    verdict: str
    why: str
    claims: list[ClaimVerdict]


def _side(check: Check, side: Value | float, xs: list[float], titles: Mapping[str, str]) -> str:
    if not isinstance(side, Value):
        return f"{side:g}"
    return f"{side.words(dict(titles))} {fmt(*spread(xs), len(xs))}"


def _describe(r: CheckResult, titles: Mapping[str, str]) -> str:
    c = r.check
    ok = sum(r.holds)
    text = f"{_side(c, c.left, r.left, titles)} {c.op} {_side(c, c.right, r.right, titles)}"
    if c.margin:
        diffs = [a - b for a, b in zip(r.left, r.right)]
        text += f" (difference {fmt(*spread(diffs), len(diffs))}, margin {c.margin:g})"
    return f"{text}: {ok} of {len(r.holds)} seeds"


def judge_claim(claim: Claim, fig: Figures, titles: Mapping[str, str] | None = None) -> ClaimVerdict:
    """The verdict of one claim on ``fig`` (see the module docstring for the rule)."""
    titles = titles or {}
    arms = sorted(claim.arms())
    per_arm = {a: fig.seeds(a) for a in arms}
    seeds = sorted(set.intersection(*per_arm.values())) if arms else []
    if not seeds:
        return ClaimVerdict(claim, "pending", f"no run of {' and '.join(arms)} with a shared seed yet", [], [])
    unpaired = [f"{a} seed {s}" for s in sorted(set.union(*per_arm.values())) for a in arms if s not in per_arm[a]]
    if unpaired:  # a launch still under way: the seed's other arms have not started
        return ClaimVerdict(claim, "pending", f"no run yet of {', '.join(unpaired)}", seeds, [])
    waiting = [f"{a} seed {s}: {fig.missing[(a, s)]}" for s in seeds for a in arms if (a, s) in fig.missing]
    if any(w.split(": ", 1)[1].startswith("pending") for w in waiting):
        return ClaimVerdict(claim, "pending", "; ".join(w for w in waiting if ": pending" in w), seeds, [])
    judged = [s for s in seeds if not any((a, s) in fig.missing for a in arms)]
    results, absent = [], []
    for c in claim.checks:
        r = CheckResult(c, [], [], [])
        for s in judged:
            left = fig.get(c.left, s)
            right = fig.get(c.right, s) if isinstance(c.right, Value) else float(c.right)
            if left is None or right is None:
                absent.append(f"{(c.left if left is None else c.right).words(dict(titles))} (seed {s})")
                continue
            r.left.append(left)
            r.right.append(right)
            r.holds.append(c.holds(left, right))
        results.append(r)
    if absent:
        return ClaimVerdict(claim, "pending", f"not measured yet: {', '.join(dict.fromkeys(absent))}", seeds, [],
                            results)
    holds = [all(r.holds[i] for r in results) for i in range(len(judged))]
    detail = "; ".join(_describe(r, titles) for r in results)
    n, ok = len(judged), sum(holds)
    if waiting:  # a failed run: the seeds that are left cannot speak for the claim
        return ClaimVerdict(claim, "inconclusive", f"{'; '.join(waiting)}; of the other seeds {ok} of {n} hold: "
                            + detail, judged, holds, results)
    one = " (one seed: no spread; run --seeds 3)" if n == 1 else ""
    if ok == n:
        verdict, head = "reproduced", f"holds for every seed ({n}){one}"
    elif ok == 0:
        verdict, head = "not reproduced", f"holds for no seed ({n}){one}"
    else:
        failing = [s for s, h in zip(judged, holds) if not h]
        verdict, head = "inconclusive", (f"spread too wide: holds for {ok} of {n} seeds, not for seed"
                                         f"{'s' * (len(failing) > 1)} {', '.join(map(str, failing))}")
    return ClaimVerdict(claim, verdict, f"{head}: {detail}", judged, holds, results)


def combine(claims: list[ClaimVerdict]) -> tuple[str, str]:
    """A study's verdict from its headline claims' verdicts, with the reason."""
    head = [c for c in claims if c.claim.headline] or claims
    if not head:
        return "pending", "the study has no claims"
    by = {v: [c.claim.text for c in head if c.verdict == v] for v in VERDICTS}
    if by["pending"]:
        return "pending", f"waiting for: {'; '.join(by['pending'])}"
    if by["not reproduced"]:
        also = f"; reproduced: {'; '.join(by['reproduced'])}" if by["reproduced"] else ""
        return "not reproduced", f"not reproduced: {'; '.join(by['not reproduced'])}{also}"
    if by["inconclusive"]:
        return "inconclusive", f"seeds disagree on: {'; '.join(by['inconclusive'])}"
    return "reproduced", f"every headline claim holds for every seed ({len(head)} claims)"


def judge_study(study: Study, fig: Figures, titles: Mapping[str, str] | None = None) -> StudyVerdict:
    claims = [judge_claim(c, fig, titles) for c in study.claims]
    verdict, why = combine(claims)
    return StudyVerdict(verdict, why, claims)
