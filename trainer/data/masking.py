"""Masks on the patch grid for MAE (random masking) and I-JEPA (multi-block masking).

Both draw from a ``torch.Generator`` seeded from (run seed, step) by ``step_generator``, so a
resumed run redraws exactly the masks the uninterrupted run would have drawn, and the probe
batch can use one fixed draw at every evaluation. Under DDP (``shard=(rank, world)``) every
rank draws the masks of the whole global batch and keeps its own rows, so 2 ranks x 8 images
train on the masks 1 process x 16 draws (I-JEPA's context lists are truncated to the global
batch's minimum, as one process truncates them).

Conventions follow the papers' code: MAE's ``random_masking`` (models_mae.py: argsort of
noise, ``ids_shuffle``, ``ids_restore``, ``ids_keep``, ``mask`` with 1 = removed) and I-JEPA's
``MaskCollator`` (src/masks/multiblock.py: one block size per batch, positions per image,
index lists truncated to the smallest count in the batch so they stack).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from trainer.config import ConfigError


def step_generator(seed: int, it: int, rank: int = 0) -> torch.Generator:
    """A CPU generator seeded from (seed, it, rank); ``it`` may be negative (e.g. -1 for probes)."""
    # SeedSequence mixes the tuple into a well-spread 64-bit seed (neighbouring steps give
    # unrelated streams, unlike seed + it).
    state = np.random.SeedSequence([seed, it + 2**31, rank]).generate_state(2, dtype=np.uint32)
    g = torch.Generator()
    g.manual_seed(int(state[0]) << 32 | int(state[1]))
    return g


# --- MAE -------------------------------------------------------------------------------


def num_masked(num_patches: int, mask_ratio: float) -> int:
    """Patches MAE hides: round(ratio * N), kept within [1, N - 1] so the loss has a masked
    patch to score and the encoder a visible one (only bites for ratios within 0.5/N of 0 or 1)."""
    return min(max(int(round(mask_ratio * num_patches)), 1), num_patches - 1)


def random_masking(batch: int, num_patches: int, mask_ratio: float, generator: torch.Generator,
                   device: torch.device | str = "cpu", shard: tuple[int, int] = (0, 1)
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image random masking by argsort of uniform noise (MAE); ``shard`` (rank, world):
    this rank's ``batch`` rows of the masks of a global batch of ``world * batch``.

    Returns ``ids_keep`` (B, N - M) int64 visible patch indices in shuffled order,
    ``ids_restore`` (B, N) int64 with ``ids_shuffle[ids_restore] = arange(N)`` per row, and
    ``mask`` (B, N) float, 1 where the patch is removed, M = ``num_masked(N, ratio)`` per row.
    """
    len_keep = num_patches - num_masked(num_patches, mask_ratio)
    rank, world = shard
    noise = torch.rand(world * batch, num_patches, generator=generator)[rank * batch:(rank + 1) * batch]  # (B, N)
    ids_shuffle = torch.argsort(noise, dim=1)  # ascending: small noise is kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    mask = torch.ones(batch, num_patches)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # unshuffle: mask in raster order
    return ids_keep.to(device), ids_restore.to(device), mask.to(device)


# --- I-JEPA ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MultiBlockMasks:
    """One batch of I-JEPA masks on an (h, w) patch grid; indices are raster order.

    ``context_ids`` (B, Nc): context patches (the context block minus every target block),
    sorted and truncated to the smallest count in the batch. ``target_ids`` (B, T, K): the
    patches of each of the T target blocks. ``block_size``: the target blocks' (rows, cols),
    shared by the batch; ``context_size``: the context block's (rows, cols); ``grid``: (h, w).
    """

    context_ids: torch.Tensor
    target_ids: torch.Tensor
    block_size: tuple[int, int]
    context_size: tuple[int, int]
    grid: tuple[int, int]

    def context_mask(self) -> torch.Tensor:
        """(B, h*w) bool, True at context patches."""
        b = self.context_ids.shape[0]
        m = torch.zeros(b, self.grid[0] * self.grid[1], dtype=torch.bool)
        return m.scatter_(1, self.context_ids.cpu(), True)

    def target_masks(self) -> torch.Tensor:
        """(B, T, h*w) bool, True at each target block's patches."""
        b, t, _ = self.target_ids.shape
        m = torch.zeros(b, t, self.grid[0] * self.grid[1], dtype=torch.bool)
        return m.scatter_(2, self.target_ids.cpu(), True)


class MultiBlockMaskGenerator:
    """I-JEPA's multi-block masks, scaled to any patch grid.

    ``num_targets`` target blocks of area ``target_scale`` x image and aspect (rows / cols)
    ``target_aspect``, and one square context block of area ``context_scale`` x image from
    which every target block is cut out, so the context never overlaps a target. Block sizes
    are realised as whole patches: of the (rows, cols) pairs whose area and aspect lie within
    the ranges, the one nearest the continuous draw (on a grid too coarse for any pair to fit,
    the nearest pair overall). When an image keeps fewer than ``min_context`` context patches,
    its positions are redrawn; after ``tries`` failures the target blocks shrink by a row or a
    column for the whole batch (the official code instead lets the context overlap them).
    """

    def __init__(self, grid: tuple[int, int], num_targets: int = 4,
                 target_scale: tuple[float, float] = (0.15, 0.2), target_aspect: tuple[float, float] = (0.75, 1.5),
                 context_scale: tuple[float, float] = (0.85, 1.0), min_context: int = 10, tries: int = 20):
        self.grid, self.num_targets = grid, num_targets
        self.target_scale, self.target_aspect = target_scale, target_aspect
        self.context_scale, self.min_context, self.tries = context_scale, min_context, tries
        h, w = grid
        # worst case that must still work: 1x1 targets all inside the smallest context block
        smallest = min(r * c for r, c in self._candidates(context_scale, (1.0, 1.0), nearest_if_none=True))
        if min_context > smallest - num_targets:
            raise ConfigError(
                f"ijepa.min_context={min_context} cannot be met on a {h}x{w} patch grid with a context "
                f"block of {smallest} patches and {num_targets} targets; lower it to <= {smallest - num_targets}")

    # -- block sizes --------------------------------------------------------------------
    def _candidates(self, scale: tuple[float, float], aspect: tuple[float, float],
                    nearest_if_none: bool = False) -> list[tuple[int, int]]:
        """(rows, cols) pairs on the grid whose area fraction and aspect lie within the ranges."""
        h, w = self.grid
        n = h * w
        pairs = [(r, c) for r in range(1, h + 1) for c in range(1, w + 1)
                 if scale[0] - 1e-9 <= r * c / n <= scale[1] + 1e-9 and aspect[0] - 1e-9 <= r / c <= aspect[1] + 1e-9]
        if pairs or not nearest_if_none:
            return pairs
        return [self._nearest((scale[0] + scale[1]) / 2, (aspect[0] + aspect[1]) / 2, all_pairs=True)]

    def _nearest(self, scale: float, aspect: float, pairs: list[tuple[int, int]] | None = None,
                 all_pairs: bool = False) -> tuple[int, int]:
        """The pair nearest to (scale, aspect) in log-area and log-aspect."""
        h, w = self.grid
        n = h * w
        if all_pairs or not pairs:
            pairs = [(r, c) for r in range(1, h + 1) for c in range(1, w + 1)]
        want_area, want_aspect = math.log(scale * n), math.log(aspect)
        return min(pairs, key=lambda rc: (math.log(rc[0] * rc[1]) - want_area) ** 2
                   + (math.log(rc[0] / rc[1]) - want_aspect) ** 2)

    def sample_block_size(self, g: torch.Generator, scale: tuple[float, float],
                          aspect: tuple[float, float]) -> tuple[int, int]:
        """Draw scale and aspect uniformly, realise them as a whole-patch (rows, cols)."""
        u = torch.rand(2, generator=g).tolist()
        s = scale[0] + u[0] * (scale[1] - scale[0])
        # aspect drawn uniformly in log space, so tall and wide blocks are equally likely
        a = math.exp(math.log(aspect[0]) + u[1] * (math.log(aspect[1]) - math.log(aspect[0])))
        return self._nearest(s, a, self._candidates(scale, aspect))

    # -- one batch ----------------------------------------------------------------------
    def _place(self, g: torch.Generator, size: tuple[int, int]) -> tuple[int, int]:
        """Top-left corner of a block of ``size``, uniform over every position that fits."""
        h, w = self.grid
        top = int(torch.randint(0, h - size[0] + 1, (1,), generator=g))
        left = int(torch.randint(0, w - size[1] + 1, (1,), generator=g))
        return top, left

    def _draw_image(self, g: torch.Generator, t_size: tuple[int, int],
                    c_size: tuple[int, int]) -> tuple[torch.Tensor, list[torch.Tensor]] | None:
        """(context mask (h, w) bool, T target masks) for one image, or None after ``tries``."""
        h, w = self.grid
        for _ in range(self.tries):
            targets = []
            for _ in range(self.num_targets):
                top, left = self._place(g, t_size)
                m = torch.zeros(h, w, dtype=torch.bool)
                m[top:top + t_size[0], left:left + t_size[1]] = True
                targets.append(m)
            top, left = self._place(g, c_size)
            ctx = torch.zeros(h, w, dtype=torch.bool)
            ctx[top:top + c_size[0], left:left + c_size[1]] = True
            ctx &= ~torch.stack(targets).any(0)  # cut every target out of the context
            if int(ctx.sum()) >= self.min_context:
                return ctx, targets
        return None

    def __call__(self, batch: int, g: torch.Generator, shard: tuple[int, int] = (0, 1)) -> MultiBlockMasks:
        """Masks for ``batch`` images, every draw from ``g``; ``shard`` (rank, world): this
        rank's rows of the masks of a global batch of ``world * batch``."""
        rank, world = shard
        if world > 1:
            m = self(world * batch, g)
            rows = slice(rank * batch, (rank + 1) * batch)
            return MultiBlockMasks(m.context_ids[rows], m.target_ids[rows], m.block_size, m.context_size, m.grid)
        t_size = self.sample_block_size(g, self.target_scale, self.target_aspect)
        c_size = self.sample_block_size(g, self.context_scale, (1.0, 1.0))  # square, as in I-JEPA
        while True:
            drawn = []
            for _ in range(batch):
                one = self._draw_image(g, t_size, c_size)
                if one is None:
                    break
                drawn.append(one)
            if len(drawn) == batch:
                break
            # too little context left: shrink the targets' longer side (1x1 always fits, see __init__)
            r, c = t_size
            t_size = (r - 1, c) if r >= c and r > 1 else (r, max(c - 1, 1))
        # nonzero() lists indices in raster order; truncating to the batch minimum (as the
        # official collator does) lets the index lists stack into one tensor
        ctx_ids = [ctx.flatten().nonzero().squeeze(1) for ctx, _ in drawn]
        n_ctx = min(len(c) for c in ctx_ids)
        context_ids = torch.stack([c[:n_ctx] for c in ctx_ids])  # (B, Nc)
        target_ids = torch.stack([torch.stack([t.flatten().nonzero().squeeze(1) for t in ts])
                                  for _, ts in drawn])  # (B, T, K): every block has t_size patches
        return MultiBlockMasks(context_ids, target_ids, t_size, c_size, self.grid)
