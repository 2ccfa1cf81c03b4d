"""Tiny backbones for analysis tests (CPU, a few ms per pass)."""

import pytest
import torch

from trainer.config import Model
from trainer.models.backbone import build_backbone


def tiny_vit(reg_tokens: int = 0, img_size: int = 16, seed: int = 0):
    torch.manual_seed(seed)
    m = Model(preset="custom", patch_size=4, embed_dim=32, depth=2, num_heads=2, reg_tokens=reg_tokens)
    return build_backbone(m, img_size).eval()


@pytest.fixture
def vit():
    return tiny_vit()


@pytest.fixture
def vit_reg():
    return tiny_vit(reg_tokens=2)


def make_run(root, method: str = "dino", name: str = "r1", steps=(0,), **overrides):
    """A run folder with checkpoints of an untrained ``method`` (no training: fast); returns
    (run_dir, method). Overrides are ``section.field`` -> value."""
    from trainer.config import Config
    from trainer.methods import build_method
    from trainer.store import RunWriter

    sets = {"data.num_train": 120, "data.num_val": 60, "data.image_size": 16, "model.preset": "custom",
            "model.embed_dim": 32, "model.depth": 2, "model.num_heads": 2, "model.patch_size": 4,
            "run.method": method, "run.name": name, **overrides}
    cfg = Config().with_overrides([f"{k}={v}" for k, v in sets.items()]).validate()
    torch.manual_seed(0)
    m = build_method(cfg).eval()
    w = RunWriter.create(root, name, cfg.to_dict(), method)
    for s in steps:
        w.save_checkpoint(s, dict(m.state_dict()), {"method": method, "encoder_prefix": m.encoder_prefix})
    w.set_status("finished")
    w.close()
    return root / name, m
