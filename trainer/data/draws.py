"""Random draws for this process's rows of the global batch, so a step's augmentations and
masks are a function of (seed, step, global image index) and not of how many processes share
the batch: 2 ranks x 8 images draw exactly what 1 process x 16 draws.

Every rank draws the numbers of the whole global batch from one generator seeded by (seed,
step) and keeps its own rows; the numbers are a few per image, so drawing them all costs
microseconds, while the images themselves are cut and augmented only for the rank's rows.
"""

from __future__ import annotations

import torch


class Draws:
    """Uniform draws from ``generator`` for rows ``index`` of ``total`` (the global batch).

    ``rand(*shape, lead=())`` -> (*lead, len(index), *shape): the rows ``index`` of
    ``torch.rand(*lead, total, *shape)``, so one process (index = all rows) draws exactly what
    a plain ``torch.rand(*lead, n, *shape, generator=g)`` draws.
    """

    def __init__(self, generator: torch.Generator, total: int, index: torch.Tensor | None = None):
        self.generator, self.total = generator, total
        self.index = torch.arange(total) if index is None else index
        self._all = len(self.index) == total and bool((self.index == torch.arange(total)).all())

    @classmethod
    def of(cls, g: torch.Generator | Draws, n: int) -> Draws:
        """``g`` itself, or all ``n`` rows of a plain generator."""
        d = g if isinstance(g, Draws) else cls(g, n)
        assert len(d) == n, f"draws for {len(d)} rows, {n} wanted"
        return d

    @classmethod
    def shard(cls, generator: torch.Generator, batch: int, rank: int = 0, world: int = 1) -> Draws:
        """Rank ``rank``'s ``batch`` rows of a global batch of ``world * batch``."""
        return cls(generator, world * batch, torch.arange(rank * batch, (rank + 1) * batch))

    def __len__(self) -> int:
        return len(self.index)

    def copies(self, k: int) -> Draws:
        """The same images repeated ``k`` times, copy-major (all first copies, then all
        second ones, ...), as a view group stacks them."""
        index = (torch.arange(k)[:, None] * self.total + self.index[None]).flatten()
        return Draws(self.generator, k * self.total, index)

    def rand(self, *shape: int, lead: tuple[int, ...] = (), dtype: torch.dtype | None = None) -> torch.Tensor:
        x = torch.rand(*lead, self.total, *shape, generator=self.generator, dtype=dtype)
        return x if self._all else x.index_select(len(lead), self.index)
