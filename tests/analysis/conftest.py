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
