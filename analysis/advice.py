"""What to try when an alarm fires, from the run's own config: the advice names the causes the
config supports and never contradicts it (a one-hot collapse with centring on is not told to
turn centring on; it is told what else its config shows: a centre momentum that averages over
more steps than the run has, a teacher temperature below its warm-up, ...).

Reference values are the trainer's defaults (``trainer.config``), which the calibration in
docs/architecture.md measured healthy at this scale.
"""

from __future__ import annotations

from trainer.config import Config, Dino, Ijepa, Optim

_DINO, _IJEPA, _OPTIM = Dino(), Ijepa(), Optim()


def _join(causes: list[str]) -> str:
    return "; ".join(causes) + "."


def uniform(cfg: Config) -> str:
    """Uniform collapse: the teacher is not sharp enough for its centring."""
    d, causes = cfg.dino, []
    if not d.sharpening:
        causes.append(f"sharpening is off (dino.sharpening=false: the teacher uses tau_s = {d.student_temp}); "
                      "turn it on (dino.sharpening=true)")
    else:
        if d.teacher_temp > _DINO.teacher_temp:
            causes.append(f"the teacher temperature {d.teacher_temp:g} is above the default {_DINO.teacher_temp:g} "
                          "that stays sharp at this scale; lower dino.teacher_temp")
        else:
            causes.append(f"the teacher temperature is already {d.teacher_temp:g}; lowering it further "
                          "(dino.teacher_temp) sharpens the teacher more")
        if d.warmup_teacher_temp > d.teacher_temp and d.teacher_temp_warmup_steps:
            causes.append(f"its warm-up starts higher ({d.warmup_teacher_temp:g}); shorten "
                          f"dino.teacher_temp_warmup_steps (now {d.teacher_temp_warmup_steps})")
    if d.koleo_weight == 0:
        causes.append(f"KoLeo is off; dino.koleo_weight={_DINO.koleo_weight:g} spreads the features")
    elif d.koleo_weight < _DINO.koleo_weight:
        causes.append(f"KoLeo is weak (dino.koleo_weight={d.koleo_weight:g}); the default {_DINO.koleo_weight:g} "
                      "spreads the features more")
    if d.out_dim > _DINO.out_dim:
        causes.append(f"K = {d.out_dim} prototypes; fewer (dino.out_dim={_DINO.out_dim}) are easier to tell apart")
    return _join(causes)


def one_hot(cfg: Config) -> str:
    """One-hot collapse: one prototype wins for every image; centring is what prevents it."""
    d, causes = cfg.dino, []
    if d.centering == "none":
        causes.append("centring is off (dino.centering=none); turn it on (dino.centering=mean or sinkhorn)")
    elif d.centering == "mean":
        lag = 1 / max(1 - d.center_momentum, 1e-12)
        if d.center_momentum > _DINO.center_momentum:
            causes.append(f"centring is on, but the centre moves slowly (dino.center_momentum={d.center_momentum:g} "
                          f"averages ~{lag:.0f} steps, the run has {cfg.optim.steps}); lower it (default "
                          f"{_DINO.center_momentum:g}) or use dino.centering=sinkhorn")
        else:
            causes.append(f"centring is on (mean, momentum {d.center_momentum:g}); dino.centering=sinkhorn "
                          "enforces equal use of the prototypes")
    else:
        causes.append(f"Sinkhorn-Knopp centring is on with {d.sinkhorn_iters} iterations; more "
                      "(dino.sinkhorn_iters) balance the prototypes more")
    if d.sharpening:
        if d.teacher_temp < _DINO.teacher_temp:
            causes.append(f"the teacher temperature {d.teacher_temp:g} is below the default {_DINO.teacher_temp:g}; "
                          "raise dino.teacher_temp")
        else:
            causes.append(f"a higher teacher temperature (dino.teacher_temp, now {d.teacher_temp:g}) or a warm-up "
                          "from a higher one (dino.warmup_teacher_temp, dino.teacher_temp_warmup_steps) sharpens less")
    return _join(causes)


def dimensional(cfg: Config) -> str:
    """Dimensional collapse: the features span a few directions."""
    m, causes = cfg.run.method, []
    if m == "ijepa":
        j = cfg.ijepa
        if not j.ema:
            causes.append("the targets come from the context encoder itself (ijepa.ema=false); turn the EMA "
                          "target encoder on (ijepa.ema=true)")
        if j.reg == "none":
            causes.append("no anti-collapse term (ijepa.reg=none); add one (ijepa.reg=koleo, weight "
                          f"{_IJEPA.reg_weight:g}, or ijepa.reg=variance)")
        elif j.reg_weight < _IJEPA.reg_weight:
            causes.append(f"the regulariser is weak (ijepa.reg_weight={j.reg_weight:g}); raise it")
    elif m == "dino":
        if cfg.dino.koleo_weight == 0:
            causes.append(f"KoLeo is off; dino.koleo_weight={_DINO.koleo_weight:g} spreads the features")
        elif cfg.dino.koleo_weight < _DINO.koleo_weight:
            causes.append(f"KoLeo is weak (dino.koleo_weight={cfg.dino.koleo_weight:g}); raise it")
    if cfg.optim.lr > _OPTIM.lr:
        causes.append(f"the learning rate {cfg.optim.lr:g} is above the default {_OPTIM.lr:g}; lower optim.lr")
    if not causes:
        causes.append(f"a lower learning rate (optim.lr, now {cfg.optim.lr:g}) or a larger batch "
                      f"(data.batch_size, now {cfg.data.batch_size})")
    return _join(causes)


def not_learning(cfg: Config) -> str:
    """The k-NN does not beat random initialisation."""
    o, causes = cfg.optim, []
    causes.append(f"the run may be too short (optim.steps={o.steps}); train longer")
    if o.lr < _OPTIM.lr:
        causes.append(f"the learning rate {o.lr:g} is below the default {_OPTIM.lr:g}; raise optim.lr")
    elif o.lr > _OPTIM.lr:
        causes.append(f"the learning rate {o.lr:g} is above the default {_OPTIM.lr:g}; lower optim.lr")
    causes.append("the collapse panels show whether the method's own signal is still there")
    return _join(causes)


ADVICE = {"uniform collapse": uniform, "one-hot collapse": one_hot, "dimensional collapse": dimensional,
          "not learning": not_learning}
# without a config (a weights file): the usual causes, none of them claimed for this model
GENERIC = {
    "uniform collapse": "usual causes: too little sharpening (dino.sharpening, dino.teacher_temp), a weak or no "
                        "KoLeo term (dino.koleo_weight), many prototypes (dino.out_dim).",
    "one-hot collapse": "usual causes: too little centring (dino.centering, dino.center_momentum) or too sharp a "
                        "teacher (dino.teacher_temp).",
    "dimensional collapse": "usual causes: no anti-collapse term (KoLeo, variance; I-JEPA without its EMA target), "
                            "too high a learning rate.",
    "not learning": "usual causes: too short a run, a learning rate far from the default.",
}


def advice(label: str, cfg: Config | None) -> str:
    """What to try for ``label`` given the run's config; without one, the usual causes; "" for
    a label without advice (healthy, warming up)."""
    fn = ADVICE.get(label)
    if fn is None:
        return ""
    return fn(cfg) if cfg is not None else GENERIC[label]
