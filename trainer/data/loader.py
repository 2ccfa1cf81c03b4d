"""Training batches as an infinite, resumable stream: the global batch at step t is a function
of (seed, t) only, whatever the number of processes sharing it.

Order (a distributed sampler): epoch e is a permutation of the images drawn from (seed, e);
step t takes slice t mod steps_per_epoch of it (drop_last), and under DDP rank r takes rows
r * B .. (r + 1) * B of that slice. Views: each step's augmentations are drawn for the whole
global batch from a generator seeded with (seed, step), and each rank keeps the draws of its
rows (``draws``), so 2 ranks x 8 images see exactly the crops 1 process x 16 sees. A run resumed
at ``start_step`` sees exactly the images and crops it would have seen, with any number of
workers.

Each DataLoader item is a whole step (the dataset is indexed by step and cuts and augments the
batch itself, batched; see ``multicrop``), so workers hand over finished batches and collate
nothing. Workers fork from the trainer (the images are shared, not copied or pickled), so they
start in a fraction of a second.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from trainer.config import Config
from trainer.data.datasets import DataError, ImageDataset, build_dataset, normalize
from trainer.data.draws import Draws
from trainer.data.multicrop import ViewTransform, build_view_transform
from trainer.data.views import Batch, ViewSpec

_ORDER_STREAM, _VIEW_STREAM = 11, 12  # random streams of their own, apart from data generation


class StepBatches(torch.utils.data.Dataset):
    """Map-style dataset over steps: ``self[t]`` = (views, labels) of step t for this rank."""

    def __init__(self, ds: ImageDataset, transform: ViewTransform, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        per_step = batch_size * world_size
        if len(ds) < per_step:
            raise DataError(f"the {ds.name} data has {len(ds)} images but one step needs {per_step} "
                            f"(data.batch_size={batch_size} x {world_size} processes); lower data.batch_size "
                            "or use more images (data.num_train)")
        self.ds, self.transform = ds, transform
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.steps_per_epoch = len(ds) // per_step
        self._epoch, self._perm = -1, np.empty(0, np.int64)

    def __len__(self) -> int:
        return self.steps_per_epoch  # one epoch; the sampler goes on past it

    def indices(self, step: int) -> np.ndarray:
        """Image indices (batch_size,) of this rank at ``step``."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:  # one permutation per epoch, kept for its steps
            self._epoch = epoch
            self._perm = np.random.default_rng([self.seed, _ORDER_STREAM, epoch]).permutation(len(self.ds))
        start = (pos * self.world_size + self.rank) * self.batch_size
        return self._perm[start: start + self.batch_size]

    def __getitem__(self, step: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        idx = self.indices(step)
        images = torch.from_numpy(self.ds.images[idx]).permute(0, 3, 1, 2)  # (B, S, S, 3) -> (B, 3, S, S)
        # one stream per step for the global batch (the trailing 0 keeps earlier runs' draws)
        state = np.random.SeedSequence([self.seed, _VIEW_STREAM, step, 0]).generate_state(2, np.uint32)
        g = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        with _one_thread():
            views = self.transform.batch(images, Draws.shard(g, self.batch_size, self.rank, self.world_size))
        return views, torch.from_numpy(self.ds.labels[idx])


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run small-tensor ops on one thread: for 32 px crops a thread pool costs more than it
    gives (10x slower on 2 busy cores); workers already run on one, the main process needs this."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class _Steps(Sampler[int]):
    """start, start + 1, ...: forever."""

    def __init__(self, start: int):
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.count(self.start)


def build_loader(cfg: Config, spec: ViewSpec, split: str = "train", start_step: int = 0, rank: int = 0,
                 world_size: int = 1, dataset: ImageDataset | None = None) -> Iterator[Batch]:
    """Infinite iterator of ``Batch`` (views in ``spec`` order, globals first) from ``start_step`` on.

    ``cfg.data.batch_size`` images per batch and rank; ``cfg.data.num_workers`` worker processes
    (0 = in this process). ``dataset`` reuses an already built split instead of building it.
    """
    ds = dataset if dataset is not None else build_dataset(cfg.data, split, cfg.run.seed)
    steps = StepBatches(ds, build_view_transform(spec), cfg.data.batch_size, cfg.run.seed, rank, world_size)
    workers = cfg.data.num_workers
    loader = DataLoader(
        steps, batch_size=None, sampler=_Steps(start_step), num_workers=workers,
        persistent_workers=workers > 0, prefetch_factor=2 if workers > 0 else None,
        pin_memory=torch.cuda.is_available() and cfg.run.device != "cpu",
    )
    return (Batch(views, labels) for views, labels in loader)


def epoch_of(step: int, cfg: Config, n_train: int, world_size: int = 1) -> float:
    """Epochs done after ``step`` steps (drop_last epochs of n_train // (batch x world) steps)."""
    return step / max(1, n_train // (cfg.data.batch_size * world_size))


def eval_tensor(ds: ImageDataset) -> torch.Tensor:
    """All images of ``ds`` normalised, without augmentation: float (N, 3, S, S) for k-NN and probes."""
    return normalize(ds.images)
