"""A group of runs read as a study: its arms and seeds, each run's final figures, curves with
their spread over seeds, each run's diagnosis, and the verdict of the study's rules
(``analysis.verdict``). What the report (``analysis.study_report``), the Compare page and the
Runs page show.

A run's *final* value of a metric is the mean of what it logged over the last tenth of its
steps (the last 3 rows of a 300-step run logged every 10; the last evaluation for k-NN), so
one noisy batch does not decide. Groups made before runs recorded their study and arm (the
demo's grid) are matched to a study by their arms' overrides; any other group is split into
arms by the config fields that differ between its runs, seeds pooled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analysis.verdict import Figures, StudyVerdict, judge_study, spread
from core import metrics as M
from core.measures import MEASURES
from trainer.study_rules import Study

FINAL_SHARE = 0.1  # the final value: the mean over the last tenth of a run's logged steps
DEFAULT_METRICS = (M.EVAL_KNN_TOP1, M.DINO_TEACHER_ENTROPY, M.DINO_KL_TEACHER_STUDENT, M.COLLAPSE_STD_L2,
                   M.COLLAPSE_RANKME, M.TRAIN_LOSS)
_NOT_ARM = {"run.name", "run.group", "run.seed", "run.runs_dir", "run.device", "run.study", "run.arm",
            "data.num_workers"}


class StudyError(ValueError):
    """A group that cannot be read as a study; the message says what to do."""


def titles() -> dict[str, str]:
    """Metric and measure names -> their titles."""
    return {**{n: m.title for n, m in M.METRICS.items()}, **{n: m.title for n, m in MEASURES.items()}}


@dataclass
class RunFigures:
    run_id: str
    dir: str
    arm: str
    seed: int
    status: str
    reason: str
    step: int
    steps: int  # planned
    log_k: float | None
    final: dict[str, float] = field(default_factory=dict)
    init: dict[str, float] = field(default_factory=dict)  # values at step 0 (random init)
    diagnosis: str = ""  # label: evidence (analysis.collapse.diagnose_run)
    diagnosis_label: str = ""


@dataclass
class Curve:
    """One metric of one arm over training: every seed's values at the steps all seeds logged."""

    arm: str
    metric: str
    steps: np.ndarray  # (T,)
    values: np.ndarray  # (n_seeds, T)
    seeds: list[int]


@dataclass
class StudyResult:
    group: str
    study: Study | None
    runs: list[RunFigures]
    arms: list[str]
    metrics: list[str]
    figures: Figures
    verdict: StudyVerdict | None
    notes: list[str] = field(default_factory=list)

    def values(self, arm: str, metric: str) -> list[float]:
        """Final values of finished runs of ``arm``, in seed order (NaN and absent left out)."""
        out = [r.final.get(metric) for r in sorted(self.runs, key=lambda r: r.seed)
               if r.arm == arm and r.status == "finished"]
        return [x for x in out if x is not None and math.isfinite(x)]

    def summary(self, arm: str, metric: str) -> tuple[float, float, int] | None:
        """(mean, std over seeds, seeds) of ``arm``'s final ``metric``, None without values."""
        xs = self.values(arm, metric)
        return (*spread(xs), len(xs)) if xs else None

    def log_k(self) -> float | None:
        ks = [r.log_k for r in self.runs if r.log_k]
        return ks[0] if ks and len(set(np.round(ks, 6))) == 1 else None


def _flat(d: dict) -> dict[str, object]:
    return {f"{s}.{k}": v for s, sub in (d or {}).items() if isinstance(sub, dict) for k, v in sub.items()}


def _which_study(infos: list[dict]) -> Study | None:
    from trainer.studies import STUDIES, match_arm

    named = {_flat(i["config"]).get("run.study") for i in infos}
    if len(named) == 1 and (name := named.pop()) in STUDIES:
        return STUDIES[name]
    for st in STUDIES.values():  # a group from before run.study: its runs must spread over two arms at least
        arms = [match_arm(st, i["config"]) for i in infos]
        if all(arms) and len(set(arms)) >= 2:
            return st
    return None


def _arm_of(info: dict, study: Study | None, differing: list[str]) -> str:
    from trainer.studies import match_arm

    flat = _flat(info["config"])
    if study is not None:
        return str(flat.get("run.arm") or match_arm(study, info["config"]) or info["run_id"])
    if flat.get("run.arm"):
        return str(flat["run.arm"])
    return ", ".join(f"{k.split('.', 1)[1]}={flat.get(k)}" for k in differing) or "all"


def _finals(cols: dict[str, np.ndarray]) -> tuple[dict[str, float], dict[str, float]]:
    final, init = {}, {}
    for name in np.unique(cols["name"]):
        sel = cols["name"] == name
        steps, vals = cols["step"][sel], cols["value"][sel].astype(float)
        last = steps.max()
        final[str(name)] = float(np.mean(vals[steps >= last - FINAL_SHARE * last]))
        if (steps == 0).any():
            init[str(name)] = float(vals[steps == 0][-1])
    return final, init


def load_group(root: Path | str, group: str, measures: str = "cached", diagnose: bool = True) -> StudyResult:
    """Read ``group`` under the runs directory ``root``. ``measures``: "compute" the study's
    analysis measures of finished runs (slow, cached beside each run), "cached" read only what
    was computed before (the pages), "skip" neither. ``diagnose``: each run's diagnosis too."""
    from analysis.collapse import diagnose_run
    from trainer.store import list_runs, read_scalars

    infos = sorted((i for i in list_runs(root) if i.get("group") == group), key=lambda i: i["run_id"])
    if not infos:
        groups = sorted({i.get("group") for i in list_runs(root) if i.get("group")})
        raise StudyError(f"no runs of group '{group}' under '{root}'"
                         + (f"; its groups: {', '.join(groups)}" if groups else "; it holds no group")
                         + " (start one with: python -m trainer ablate --list)")
    study = _which_study(infos)
    flats = [_flat(i["config"]) for i in infos]
    keys = sorted({k for f in flats for k in f} - _NOT_ARM)
    differing = [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]
    runs, fig, notes = [], Figures(), []
    for info in infos:
        flat = _flat(info["config"])
        arm, seed = _arm_of(info, study, differing), int(flat.get("run.seed") or 0)
        cols, _ = read_scalars(info["dir"])
        final, init = _finals(cols)
        k = final.get(M.DINO_LOG_K) or (math.log(flat["dino.out_dim"]) if info.get("method") == "dino"
                                        and isinstance(flat.get("dino.out_dim"), int) else None)
        r = RunFigures(info["run_id"], info["dir"], arm, seed, info["status"], info.get("reason") or "",
                       max(int(info.get("step") or 0), int(cols["step"].max()) if len(cols["step"]) else 0),
                       int(flat.get("optim.steps") or 0), k, final, init)
        if diagnose and len(cols["step"]):
            d = diagnose_run(info["dir"])
            r.diagnosis_label, r.diagnosis = d.label, d.summary()
        runs.append(r)
        key = (arm, seed)
        if r.status == "finished":
            if study is not None and measures != "skip":
                from analysis.study_measures import run_measure

                for name in study.measures():
                    v = run_measure(info["dir"], name, compute=measures == "compute")
                    if v is not None:
                        r.final[name] = v
            fig.final[key], fig.init[key] = r.final, r.init
            if k:
                fig.log_k[key] = k
        elif r.status == "failed":
            fig.missing[key] = f"failed: {r.reason or 'see its events'}"
        else:
            fig.missing[key] = f"pending: {r.status} at step {r.step} of {r.steps}"
    arms = ([a.name for a in study.arms if any(r.arm == a.name for r in runs)] if study is not None
            else list(dict.fromkeys(r.arm for r in runs)))
    metrics = list(study.metrics) if study is not None else [m for m in DEFAULT_METRICS
                                                             if any(m in r.final for r in runs)]
    verdict = judge_study(study, fig, titles()) if study is not None else None
    if study is None:
        notes.append("not one of the studies of python -m trainer ablate --list: spreads only, no verdict")
    return StudyResult(group, study, runs, arms, metrics, fig, verdict, notes)


def curves(result: StudyResult, metric: str) -> list[Curve]:
    """``metric`` over training per arm, seeds aligned on the steps they all logged."""
    from trainer.store import read_metric

    out = []
    for arm in result.arms:
        runs = sorted((r for r in result.runs if r.arm == arm), key=lambda r: r.seed)
        series = [(r.seed, *read_metric(r.dir, metric)) for r in runs]
        series = [(s, st, v) for s, st, v in series if len(st)]
        if not series:
            continue
        common = sorted(set.intersection(*(set(st.tolist()) for _, st, _ in series)))
        if not common:
            continue
        idx = np.asarray(common)
        vals = np.stack([np.asarray([dict(zip(st.tolist(), v.tolist()))[c] for c in common]) for _, st, v in series])
        out.append(Curve(arm, metric, idx, vals, [s for s, _, _ in series]))
    return out
