"""The vocabulary of a study's definition: its arms, and the verdict rules that say, from the
figures, whether our runs reproduce the paper's finding.

Everything here is plain frozen data; ``analysis.verdict`` evaluates it. A rule is a set of
per-seed checks on final values (``Value``: one arm's metric, optionally in units of ln K),
against a number or against another arm's value from the same seed. A claim holds for a seed
when all its checks do; its verdict is *reproduced* when it holds for every seed, *not
reproduced* when it holds for none, *inconclusive* when the seeds disagree (the spread is too
wide to say). The rule is written before the runs and never knows their results.
"""

from __future__ import annotations

from dataclasses import dataclass

LN_K = "ln K"  # a value divided by its run's ln K (DINO's uniform-collapse line)
OPS = (">", ">=", "<", "<=")


@dataclass(frozen=True)
class Value:
    """One number of one run: ``metric`` (a logged name of ``core.metrics`` or an analysis
    measure named ``analysis/...``) of the run of ``arm`` with the seed being judged; its final
    value (mean over the last tenth of the run's logged steps) or, with ``at="init"``, its
    value at step 0 (the random-initialisation reference)."""

    arm: str
    metric: str
    per: str = ""  # "" or LN_K
    at: str = "final"  # "final" | "init"

    def words(self, titles: dict[str, str] | None = None) -> str:
        name = (titles or {}).get(self.metric, self.metric)
        at = " at step 0" if self.at == "init" else ""
        return f"{self.arm} {name}{at}" + (f" / {self.per}" if self.per else "")


@dataclass(frozen=True)
class Check:
    """``left op right`` for one seed. ``margin``: ``>`` means left > right + margin (a clear
    gap, e.g. one k-NN standard error), ``<`` left < right - margin, ``>=`` left >= right -
    margin and ``<=`` left <= right + margin (within that tolerance)."""

    left: Value
    op: str
    right: Value | float
    margin: float = 0.0

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"check operator '{self.op}' is not one of {', '.join(OPS)}")

    def holds(self, left: float, right: float) -> bool:
        m = self.margin
        return {">": left > right + m, ">=": left >= right - m, "<": left < right - m, "<=": left <= right + m}[self.op]

    def words(self, titles: dict[str, str] | None = None) -> str:
        right = self.right.words(titles) if isinstance(self.right, Value) else f"{self.right:g}"
        gap = ""
        if self.margin:
            gap = f" by more than {self.margin:g}" if self.op in (">", "<") else f" (within {self.margin:g})"
        return f"{self.left.words(titles)} {self.op} {right}{gap}"


@dataclass(frozen=True)
class Claim:
    """One finding of the paper and the rule that tests it. ``headline``: the study's verdict
    is judged on its headline claims; the others are reported with their own verdicts."""

    text: str
    checks: tuple[Check, ...]
    headline: bool = True

    def rule(self, titles: dict[str, str] | None = None) -> str:
        return " and ".join(c.words(titles) for c in self.checks) + ", for every seed"

    def arms(self) -> set[str]:
        return {v.arm for c in self.checks for v in (c.left, c.right) if isinstance(v, Value)}

    def values(self) -> list[Value]:
        return [v for c in self.checks for v in (c.left, c.right) if isinstance(v, Value)]


@dataclass(frozen=True)
class Arm:
    """One arm: its overrides (``section.field=value``), applied over everything else, and
    ``scaled``: fields set to a fraction of the run's ``optim.steps`` (warm-ups, start steps)."""

    name: str
    sets: tuple[str, ...]
    scaled: tuple[tuple[str, float], ...] = ()

    def overrides(self, steps: int) -> list[str]:
        return [*self.sets, *(f"{key}={max(0, round(frac * steps))}" for key, frac in self.scaled)]


@dataclass(frozen=True)
class Study:
    """A classic ablation: everything but the arms' overrides equal, the same seeds in every arm."""

    name: str
    method: str
    title: str
    paper: str  # where the finding comes from
    finding: str  # the paper's finding in one or two sentences
    arms: tuple[Arm, ...]
    claims: tuple[Claim, ...]
    metrics: tuple[str, ...]  # compared in the report: curves (logged ones) and the final table
    base: tuple[str, ...] = ()  # the study's scale, under the user's flags and --set
    steps: int = 300  # default budget: steps per run ...
    seeds: int = 3  # ... and seeds per arm
    requires: tuple[str, ...] = ()  # config fields the study needs (section.field)
    note: str = ""  # what to know when reading our result (scale, references)

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(f"study '{self.name}' has no arm '{name}'; it has {', '.join(a.name for a in self.arms)}")

    def measures(self) -> list[str]:
        """The analysis measures (not logged: computed from checkpoints) the study reads."""
        names = [*self.metrics, *(v.metric for c in self.claims for v in c.values())]
        return list(dict.fromkeys(n for n in names if n.startswith("analysis/")))
