"""Dense statistics: [CLS]-patch cosine and patch-feature rank by hand."""

import math

import pytest
import torch

from core.dense import cls_patch_cosine, dense_stats, patch_rank


def test_cls_patch_cosine_by_hand():
    # image 1: [CLS] (1, 0), a register, patches (1, 0) and (0, 2) -> cosines 1 and 0
    # image 2: [CLS] (0, 1), a register, patches (1, 1) and (0, -3) -> 1/sqrt 2 and -1
    tokens = torch.tensor([[[1.0, 0.0], [5.0, 5.0], [1.0, 0.0], [0.0, 2.0]],
                           [[0.0, 1.0], [5.0, 5.0], [1.0, 1.0], [0.0, -3.0]]])
    want = (1 + 0 + 1 / math.sqrt(2) - 1) / 4
    assert cls_patch_cosine(tokens, prefix=2).item() == pytest.approx(want, rel=1e-6)


def test_patch_rank_counts_the_directions_patches_use():
    torch.manual_seed(0)
    one = torch.randn(1, 1, 16).expand(4, 8, 16) * torch.rand(4, 8, 1)  # every patch on one line
    assert patch_rank(one).item() == pytest.approx(1.0, abs=1e-3)
    spread = torch.randn(4, 64, 16)
    assert patch_rank(spread).item() > 12
    stats = dense_stats(torch.cat([torch.randn(4, 1, 16), spread], 1), prefix=1)
    assert set(stats) == {"dense/cls_patch_cosine", "dense/patch_rankme"}
