"""This process's share of a ``torch.distributed`` run, and the collectives that make N ranks
compute what one process computes on the same global batch.

Every rank holds rows ``rank * B .. (rank + 1) * B`` of a global batch of ``world * B`` (the
loader's order, ``trainer.data.loader``). A statistic that reduces over the batch (the DINO
centre, Sinkhorn-Knopp, KoLeo's nearest neighbours) must see the global batch, or 2 ranks of 8
images train a different model from 1 process of 16.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def running() -> bool:
    """Whether a process group is up."""
    return dist.is_available() and dist.is_initialized()


def shard() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without a process group."""
    return (dist.get_rank(), dist.get_world_size()) if running() else (0, 1)


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """The global batch (world * B, ...) from every rank's rows (B, ...), in rank order, with
    gradients: the backward sums every rank's gradient of its rows, so after DDP averages the
    parameter gradients they equal one process's gradient of the same loss on the global batch
    (each rank computes that loss on the gathered rows). ``x`` itself without a process group."""
    if not running() or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather  # autograd-aware

    return torch.cat(all_gather(x.contiguous()))


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over ranks (``x`` itself on one process); no gradient."""
    if running():
        x = x.detach().clone()
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x
