"""A run store made by real short training runs (``trainer.loop.train``): DINO, MAE, I-JEPA
and the centering/sharpening 2 x 2 group, each tiny enough for CPU CI (tens of seconds total)."""

from __future__ import annotations

from pathlib import Path

from trainer.__main__ import ABLATIONS
from trainer.config import Config

TINY = [
    "data.num_train=128", "data.num_val=64", "data.batch_size=16", "data.num_workers=0",
    "model.preset=custom", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.patch_size=4",
    "dino.n_local=2", "dino.hidden_dim=64", "dino.bottleneck_dim=32", "dino.out_dim=32",
    "dino.freeze_last_layer_steps=2", "mae.decoder_dim=32", "mae.decoder_depth=1", "mae.decoder_heads=2",
    "ijepa.pred_dim=32", "ijepa.pred_depth=1", "optim.warmup_steps=2", "run.log_every=2",
    "run.probe_size=4", "run.device=cpu",
]


def tiny_config(root: Path, name: str, method: str, steps: int, extra: list[str] = ()) -> Config:
    every = max(steps // 2, 1)
    return Config().with_overrides(TINY + [
        f"run.runs_dir={root}", f"run.name={name}", f"run.method={method}", f"optim.steps={steps}",
        f"run.eval_every={every}", f"run.ckpt_every={every}", *extra]).validate()


def train_store(root: Path, steps: int = 16, arm_steps: int = 8) -> Path:
    """Runs ``dino``, ``mae``, ``ijepa`` (``steps`` each) and the group ``cs`` of four DINO
    arms (``arm_steps`` each) into ``root``."""
    from trainer.loop import train

    root.mkdir(parents=True, exist_ok=True)
    for method in ("dino", "mae", "ijepa"):
        train(tiny_config(root, method, method, steps))
    for arm, sets in ABLATIONS["centering-sharpening"].items():
        train(tiny_config(root, f"cs-{arm}", "dino", arm_steps, [*sets, "run.group=cs"]))
    return root
