"""Mask generators: MAE random masking (counts, ids_restore) and I-JEPA multi-block masks
(bounds, no overlap, scales and aspects), over many seeded draws."""

import pytest
import torch

from trainer.config import ConfigError
from trainer.data.masking import MultiBlockMaskGenerator, num_masked, random_masking, step_generator

# --- MAE -------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [16, 49, 64])
@pytest.mark.parametrize("ratio", [0.1, 0.33, 0.5, 0.6, 0.75, 0.9])
def test_masked_count_is_round_ratio_n_for_every_image(n, ratio):
    ids_keep, ids_restore, mask = random_masking(32, n, ratio, step_generator(0, 7))
    want = round(ratio * n)
    assert (mask.sum(dim=1) == want).all()
    assert ids_keep.shape == (32, n - want)
    # the kept ids are exactly the unmasked patches
    assert (torch.gather(mask, 1, ids_keep) == 0).all()


def test_extreme_ratios_keep_one_patch_on_each_side():
    assert num_masked(64, 0.001) == 1 and num_masked(64, 0.999) == 63
    assert num_masked(64, 0.75) == 48 and num_masked(10, 0.25) == 2  # round(2.5) = 2 (banker's), 10 - 2 kept


def test_ids_restore_inverts_the_shuffle():
    b, n = 16, 20
    ids_keep, ids_restore, mask = random_masking(b, n, 0.6, step_generator(3, 1))
    # ids_restore is a permutation whose inverse starts with ids_keep (the shuffle order)
    assert (ids_restore.sort(dim=1).values == torch.arange(n)).all()
    ids_shuffle = torch.argsort(ids_restore, dim=1)
    assert (ids_shuffle[:, : ids_keep.shape[1]] == ids_keep).all()
    # what the decoder does: kept tokens then fillers, gathered by ids_restore, land in raster order
    x = torch.arange(n).expand(b, n) * 10  # token value = 10 * raster position
    shuffled = torch.cat([torch.gather(x, 1, ids_keep), torch.full((b, n - ids_keep.shape[1]), -1)], dim=1)
    restored = torch.gather(shuffled, 1, ids_restore)
    assert (restored[mask == 0] == x[mask == 0]).all()
    assert (restored[mask == 1] == -1).all()


def test_masks_are_reproducible_per_step_and_differ_between_steps():
    a = random_masking(4, 64, 0.75, step_generator(5, 10))[2]
    b = random_masking(4, 64, 0.75, step_generator(5, 10))[2]
    c = random_masking(4, 64, 0.75, step_generator(5, 11))[2]
    d = random_masking(4, 64, 0.75, step_generator(6, 10))[2]
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, d)
    assert not torch.equal(a[0], a[1])  # per-image masks


# --- I-JEPA ----------------------------------------------------------------------------

def _rect(ids: torch.Tensor, w: int) -> tuple[int, int, int, int]:
    """(top, left, rows, cols) of the bounding box of raster ids."""
    r, c = ids // w, ids % w
    return int(r.min()), int(c.min()), int(r.max() - r.min() + 1), int(c.max() - c.min() + 1)


@pytest.mark.parametrize("grid", [(8, 8), (14, 14)])
def test_multiblock_masks_over_many_draws(grid):
    h, w = grid
    n = h * w
    gen = MultiBlockMaskGenerator(grid, num_targets=4, target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5),
                                  context_scale=(0.85, 1.0), min_context=10)
    shapes, covered = set(), torch.zeros(n, dtype=torch.bool)
    for it in range(150):
        m = gen(8, step_generator(0, it))
        rows, cols = m.block_size
        assert 0.15 <= rows * cols / n <= 0.2 and 0.75 <= rows / cols <= 1.5
        cr, cc = m.context_size
        assert cr == cc and 0.85 <= cr * cc / n <= 1.0
        shapes.add(m.block_size)
        assert m.target_ids.shape == (8, 4, rows * cols) and m.context_ids.shape[0] == 8
        assert m.context_ids.shape[1] >= 10  # min_context, after truncation to the batch minimum
        assert (m.target_ids >= 0).all() and (m.target_ids < n).all()
        ctx, tgt = m.context_mask(), m.target_masks()
        assert not (ctx.unsqueeze(1) & tgt).any()  # no target patch is in the context
        for b in range(8):
            top, left, r, c = _rect(m.context_ids[b], w)
            assert r <= cr and c <= cc  # context lies within one context block
            for t in range(4):
                ids = m.target_ids[b, t]
                assert len(set(ids.tolist())) == rows * cols
                assert _rect(ids, w)[2:] == (rows, cols)  # a full rectangle of the block size
        covered |= tgt.any(dim=1).any(dim=0)
    assert covered.all()  # every patch, last row and column included, is sometimes a target
    if grid == (8, 8):
        assert shapes == {(3, 4), (4, 3)}  # the only whole-patch sizes within both ranges


def test_targets_shrink_rather_than_overlap_when_the_context_would_be_too_small():
    gen = MultiBlockMaskGenerator((8, 8), num_targets=4, min_context=50)
    for it in range(20):
        m = gen(8, step_generator(1, it))
        assert m.context_ids.shape[1] >= 50
        assert not (m.context_mask().unsqueeze(1) & m.target_masks()).any()
        assert m.block_size[0] * m.block_size[1] < 9.6  # shrunk below the 15% floor


def test_impossible_min_context_is_refused_with_a_clear_message():
    with pytest.raises(ConfigError, match="ijepa.min_context=61"):
        MultiBlockMaskGenerator((8, 8), num_targets=4, min_context=61)


def test_multiblock_masks_are_reproducible():
    gen = MultiBlockMaskGenerator((8, 8))
    a, b = gen(4, step_generator(2, 9)), gen(4, step_generator(2, 9))
    assert torch.equal(a.context_ids, b.context_ids) and torch.equal(a.target_ids, b.target_ids)


def test_a_ranks_masks_are_its_rows_of_the_global_batchs_masks():
    """DDP: rank r of 2 draws rows r*4..r*4+4 of the masks one process draws for 8 images; the
    I-JEPA context lists are cut to the global batch's minimum, as one process cuts them."""

    whole = random_masking(8, 16, 0.75, step_generator(0, 3))
    gen = MultiBlockMaskGenerator((8, 8), 4, min_context=4)
    whole_jepa = gen(8, step_generator(0, 3))
    for rank in (0, 1):
        rows = slice(rank * 4, rank * 4 + 4)
        part = random_masking(4, 16, 0.75, step_generator(0, 3), shard=(rank, 2))
        for a, b in zip(part, whole):
            assert torch.equal(a, b[rows])
        jepa = gen(4, step_generator(0, 3), shard=(rank, 2))
        assert torch.equal(jepa.context_ids, whole_jepa.context_ids[rows])
        assert torch.equal(jepa.target_ids, whole_jepa.target_ids[rows])
        assert jepa.block_size == whole_jepa.block_size
