"""Where a run executes: device choice, torchrun (DDP) set-up, seeding, autocast.

Under ``torchrun --nproc_per_node=N -m trainer train ...`` each process reads RANK /
WORLD_SIZE / LOCAL_RANK, joins the process group (NCCL on CUDA, Gloo on CPU) and only rank 0
writes the run store.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA; fp32 on CPU (bf16 matmuls are ~100x slower on these cores)."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


class DeviceError(RuntimeError):
    """The requested device is not available."""


def setup_runtime(device: str) -> Runtime:
    """Pick the device ('auto' | 'cpu' | 'cuda') and join torchrun's process group if any."""
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceError("run.device=cuda but no CUDA GPU is visible; use --device cpu or auto")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Runtime(dev, rank, world)


def teardown_runtime() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
