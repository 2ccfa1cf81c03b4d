"""iBOT's masks for the global crops (as DINOv2 draws them: ``dinov2/data/masking.py``'s
``MaskingGenerator`` and ``collate.py``): block-wise masks in the style of BEiT, on a share of
the global crops of a batch, with mask ratios stratified across the batch.

Per batch of ``n`` global crops (all views of all images; local crops are never masked):

1. ``n_masked = int(n * probability)`` crops are masked (DINOv2: half);
2. ``probs = linspace(ratio_min, ratio_max, n_masked + 1)``; masked crop i gets
   ``int(N * U(probs[i], probs[i + 1]))`` patches, so the ratios cover the range evenly instead
   of being drawn independently;
3. the others get empty masks, and the list is shuffled.

A mask is built from rectangular blocks (BEiT, Bao et al. 2022): each block has an area
drawn in [min_num_patches, remaining] (capped at ``max_num_patches``, DINOv2: half the grid)
and a log-uniform aspect ratio in [0.3, 1/0.3]; up to 10 placements are tried per block, a
block must add new patches without exceeding the count, and blocks are added until the
count is reached. Two refinements, so that the configured share of crops and the drawn counts
hold exactly: a masked crop gets at least one patch (``int(N * 0.1)`` is 0 on grids under 10
patches), and when the blocks stall (on small grids most placements overshoot the count) the
remainder is filled with random single patches, where DINOv2 leaves the crop short.

Draws come from a ``random.Random`` seeded by the step's ``torch.Generator``
(``trainer.data.masking.step_generator``): a resumed run redraws the same masks.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

MIN_BLOCK_PATCHES = 4  # DINOv2's min_num_patches
MIN_ASPECT = 0.3  # block aspect ratio in [0.3, 1 / 0.3], log-uniform
BLOCK_TRIES = 10  # placements tried per block


def _rng(g: torch.Generator) -> random.Random:
    return random.Random(int(torch.randint(0, 2**62, (1,), generator=g)))


def _add_block(mask: torch.Tensor, budget: int, rng: random.Random, max_block: int) -> int:
    """Place one block that masks between 1 and ``budget`` new patches of ``mask`` (h, w) bool,
    in place; returns how many it added (0 after ``BLOCK_TRIES`` failed placements)."""
    h, w = mask.shape
    lo, hi = math.log(MIN_ASPECT), math.log(1 / MIN_ASPECT)
    budget = min(budget, max_block)
    for _ in range(BLOCK_TRIES):
        area = rng.uniform(MIN_BLOCK_PATCHES, budget)
        aspect = math.exp(rng.uniform(lo, hi))
        bh, bw = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if bw < w and bh < h:  # DINOv2: a block never spans the whole grid
            top, left = rng.randint(0, h - bh), rng.randint(0, w - bw)
            region = mask[top:top + bh, left:left + bw]
            new = bh * bw - int(region.sum())
            if 0 < new <= budget:
                region.fill_(True)
                return new
    return 0


def block_mask(h: int, w: int, num_masked: int, rng: random.Random, max_block: int | None = None) -> torch.Tensor:
    """A BEiT-style block mask on an (h, w) patch grid with exactly ``num_masked`` patches set
    (True = masked), topped up with random single patches when the blocks stall."""
    mask = torch.zeros(h, w, dtype=torch.bool)
    num_masked = min(max(num_masked, 0), h * w)
    max_block = max_block or num_masked
    count = 0
    while count < num_masked:
        added = _add_block(mask, num_masked - count, rng, max_block)
        if added == 0:
            break
        count += added
    if count < num_masked:  # refinement: fill the remainder patch by patch
        free = (~mask).flatten().nonzero().flatten().tolist()
        for i in rng.sample(free, num_masked - count):
            mask.view(-1)[i] = True
    return mask


@dataclass(frozen=True)
class PatchMasks:
    """The iBOT masks of one batch's global crops. ``masks`` (n, N) bool, True = masked, crops
    in the order of the student's global pass (view-major: all images' first crop, then the
    second); ``counts`` (n,) masked patches per crop."""

    masks: torch.Tensor

    @property
    def indices(self) -> torch.Tensor:
        """(M,) flat indices into (n * N) of the masked patches, in raster order crop by crop."""
        return self.masks.flatten().nonzero().flatten()

    @property
    def weights(self) -> torch.Tensor:
        """(M,) 1 / (masked patches of the token's crop) per masked token: each masked crop
        weighs the same in the loss, however many patches it hides (DINOv2's ``masks_weight``)."""
        per_crop = 1.0 / self.masks.sum(-1).clamp(min=1).float()  # (n,)
        return per_crop[:, None].expand_as(self.masks)[self.masks]

    @property
    def n_crops(self) -> int:
        return int(self.masks.shape[0])

    @property
    def n_masked(self) -> int:
        """Masked tokens M over all crops."""
        return int(self.masks.sum())


def ibot_masks(n_crops: int, grid: tuple[int, int], g: torch.Generator, probability: float = 0.5,
               ratio: tuple[float, float] = (0.1, 0.5)) -> PatchMasks:
    """Masks for ``n_crops`` global crops on a ``grid`` (h, w) of patches (module docstring):
    ``int(n_crops * probability)`` of them masked at stratified ratios in ``ratio``."""
    h, w = grid
    n = h * w
    rng = _rng(g)
    n_masked = int(n_crops * probability)
    lo, hi = ratio
    probs = [lo + (hi - lo) * i / n_masked for i in range(n_masked + 1)] if n_masked else []
    masks = [block_mask(h, w, min(n, max(1, int(n * rng.uniform(probs[i], probs[i + 1])))), rng,
                        max_block=max(1, int(0.5 * n))).flatten()
             for i in range(n_masked)]
    masks += [torch.zeros(n, dtype=torch.bool)] * (n_crops - n_masked)
    rng.shuffle(masks)
    return PatchMasks(torch.stack(masks) if masks else torch.zeros(0, n, dtype=torch.bool))
