"""Numbers a study compares that training never logs: analysis computes them from a run's last
checkpoint (``analysis.study_measures``) and caches them beside the run. Declared once here, as
``core.metrics`` declares the logged names, so the study definitions (trainer), the report
(analysis) and the pages (dashboard) spell and title them alike. Their prefix ``analysis/``
is never a logged family.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Measure:
    name: str
    title: str
    meaning: str
    unit: str = ""


MEASURES: dict[str, Measure] = {}


def declare(measure: Measure) -> str:
    assert measure.name.startswith("analysis/") and measure.name not in MEASURES, measure.name
    MEASURES[measure.name] = measure
    return measure.name


LINEAR_TOP1 = declare(Measure(
    "analysis/linear_top1", "Linear probe top-1",
    "Logistic regression on the frozen backbone's image feature (the method's own: [CLS] for DINO, "
    "average-pooled patches for MAE and I-JEPA), trained on the train split, scored on val: linear "
    "evaluation as the MAE paper reports it."))
ATTENTION_JACCARD = declare(Measure(
    "analysis/attention_jaccard", "Attention Jaccard",
    "Jaccard index between the last-layer [CLS] attention (heads averaged, the patches holding 60% of "
    "the mass) and the exact object masks of shapes, on the first 256 val images: DINO's measure of "
    "how well self-attention finds the object."))
