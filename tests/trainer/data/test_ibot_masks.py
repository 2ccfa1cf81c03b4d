"""iBOT's masks: exactly the configured share of global crops masked, their ratios stratified
over [min, max], BEiT-style blocks, exact counts, a function of the step."""

import math
import random

import pytest
import torch

from trainer.data.ibot_masks import MIN_ASPECT, _add_block, block_mask, ibot_masks
from trainer.data.masking import step_generator


@pytest.mark.parametrize("n_crops,grid,prob", [(64, (8, 8), 0.5), (16, (14, 14), 0.5), (10, (4, 4), 0.3)])
def test_exactly_the_configured_share_is_masked_with_stratified_ratios(n_crops, grid, prob):
    n = grid[0] * grid[1]
    lo, hi = 0.1, 0.5
    for it in range(20):
        m = ibot_masks(n_crops, grid, step_generator(0, it), prob, (lo, hi))
        counts = m.masks.sum(-1)
        masked = counts[counts > 0]
        assert len(masked) == int(n_crops * prob)  # the share of crops, every draw
        k = len(masked)
        edges = [lo + (hi - lo) * i / k for i in range(k + 1)]
        # one crop per stratum: the i-th smallest count lies in the i-th interval of ratios (independent
        # draws would put several crops in one interval and leave others empty)
        for i, c in enumerate(sorted(masked.tolist())):
            assert max(1, math.floor(n * edges[i] + 1e-9)) <= c <= max(1, math.floor(n * edges[i + 1] + 1e-9)), (i, c)


def test_masks_are_a_function_of_the_step_and_weights_are_one_over_the_crop_count():
    a = ibot_masks(8, (6, 6), step_generator(1, 5), 0.5)
    b = ibot_masks(8, (6, 6), step_generator(1, 5), 0.5)
    c = ibot_masks(8, (6, 6), step_generator(1, 6), 0.5)
    assert torch.equal(a.masks, b.masks) and not torch.equal(a.masks, c.masks)
    counts = a.masks.sum(-1)
    crop_of = a.indices // 36
    assert torch.allclose(a.weights, 1.0 / counts[crop_of].float())
    assert a.weights.sum().item() == pytest.approx(int((counts > 0).sum()))  # each masked crop weighs 1
    assert a.n_masked == len(a.indices) == int(counts.sum())


def test_one_block_is_a_rectangle_within_the_area_and_aspect_limits():
    for seed in range(50):
        mask = torch.zeros(14, 14, dtype=torch.bool)
        added = _add_block(mask, 40, random.Random(seed), max_block=98)
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        h, w = len(rows), len(cols)
        assert added == h * w == int(mask.sum())  # a full rectangle, nothing else
        assert rows.diff().eq(1).all() and cols.diff().eq(1).all()
        assert 3 <= added <= 40 and h < 14 and w < 14
        assert MIN_ASPECT - 0.25 <= h / w <= 1 / MIN_ASPECT + 1.5  # rounding on small blocks widens the range


def test_block_mask_hits_the_count_exactly_even_where_blocks_stall():
    rng = random.Random(0)
    for h, w, count in [(14, 14, 60), (4, 4, 7), (2, 2, 3), (8, 8, 1)]:
        for _ in range(10):
            assert int(block_mask(h, w, count, rng, max_block=h * w // 2).sum()) == count
    # on a 14 x 14 grid the blocks alone reach the count (few connected pieces, not scattered patches)
    m = block_mask(14, 14, 60, random.Random(1), max_block=98)
    assert _components(m) <= 8


def _components(mask: torch.Tensor) -> int:
    seen, n = set(), 0
    cells = {tuple(p) for p in mask.nonzero().tolist()}
    for c in cells:
        if c in seen:
            continue
        n += 1
        stack = [c]
        while stack:
            y, x = stack.pop()
            if (y, x) in seen or (y, x) not in cells:
                continue
            seen.add((y, x))
            stack += [(y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)]
    return n
