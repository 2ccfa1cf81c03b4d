"""Other trainers' metric names mapped onto SSLScope's (``core.metrics``), where they mean the
same thing, so their curves land in our panels (losses, schedules).

Only exact meanings are mapped: the official DINO ``train_loss`` is the DINO loss averaged over
the epoch (our ``train/loss``), ``lr`` / ``wd`` the first parameter group's learning rate and
weight decay, DINOv2's ``mom`` the teacher's EMA momentum. DINOv2's ``koleo_loss`` is not our
``dino/koleo`` (it is multiplied by its weight), so it stays under ``imported/``.
"""

from __future__ import annotations

from core import metrics as M

ALIASES: dict[str, str] = {
    # official DINO / MAE log.txt (train_one_epoch's averages, prefixed "train_"), lightly's examples
    "train_loss": M.TRAIN_LOSS, "train_lr": M.OPT_LR, "train_wd": M.OPT_WD,
    # DINOv2 training_metrics.json and most loggers
    "loss": M.TRAIN_LOSS, "total_loss": M.TRAIN_LOSS, "lr": M.OPT_LR, "wd": M.OPT_WD, "weight_decay": M.OPT_WD,
    "mom": M.EMA_MOMENTUM, "momentum": M.EMA_MOMENTUM, "teacher_temp": M.DINO_TEACHER_TEMP,
}
# keys that place a row rather than measure something
STEP_KEYS = ("iteration", "step", "global_step", "it")
EPOCH_KEYS = ("epoch",)


def our_name(name: str, imported: bool = True) -> str:
    """The SSLScope name for a metric another trainer logged as ``name``: a declared name as
    it is, a known alias mapped, anything else under ``imported/`` (``imported=False``: kept as
    given, for names a user's own code picked)."""
    if name in M.METRICS or name.startswith(M.IMPORTED_PREFIX):
        return name
    if name in ALIASES:
        return ALIASES[name]
    return M.IMPORTED_PREFIX + name if imported else name
