"""This process's share of a ``torch.distributed`` run, and the collectives that make N ranks
compute what one process computes on the same global batch.

Evaluation passes (the online k-NN's features) are split the other way: rank r takes the block
``shard_rows(n)`` of the n images and ``gather_shards`` puts the blocks back in order on every
rank, so N ranks extract the features of one process in 1/N of its time.

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


def shard_rows(n: int) -> slice:
    """This rank's block of ``n`` rows: ceil(n / world) rows per rank in rank order (the last
    ranks may get fewer, or none); every row without a process group."""
    rank, world = shard()
    chunk = -(-n // world)
    return slice(min(rank * chunk, n), min((rank + 1) * chunk, n))


def gather_shards(x: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` rows (n, ...) on every rank, from each rank's block ``x`` (its
    :func:`shard_rows` of ``n``), in order; no gradient. ``x`` must live where the backend
    communicates (CPU for Gloo, the GPU for NCCL). ``x`` itself without a process group."""
    if not running() or dist.get_world_size() == 1:
        return x
    world = dist.get_world_size()
    chunk = -(-n // world)
    padded = torch.cat([x.detach(), x.new_zeros((chunk - x.shape[0], *x.shape[1:]))])  # all_gather: equal sizes
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat(parts)[:n]
