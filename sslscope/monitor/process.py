"""What a monitor records about the process it watches: its rank under DDP (only rank 0
writes) and its trainer's own config, as JSON the run store can hold."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

import torch.distributed as dist


def process_rank() -> int:
    """This process's rank: ``torch.distributed``'s when a group runs, else torchrun's or
    SLURM's environment (a monitor may be built before ``init_process_group``), else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def flat_config(config: Any) -> dict[str, Any]:
    """A trainer's config (a mapping, ``argparse.Namespace``, dataclass or object with
    ``__dict__``) as one flat JSON-safe mapping: nested keys joined by dots, values that JSON
    cannot hold (paths, tensors, NaN) written as text."""
    if config is None:
        return {}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    elif not isinstance(config, Mapping):
        config = vars(config)
    out: dict[str, Any] = {}

    def put(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                put(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, bool | int | str) or value is None:
            out[prefix] = value
        elif isinstance(value, float):
            out[prefix] = value if math.isfinite(value) else str(value)
        elif isinstance(value, list | tuple) and all(isinstance(v, bool | int | float | str) for v in value):
            out[prefix] = [v if not isinstance(v, float) or math.isfinite(v) else str(v) for v in value]
        else:
            out[prefix] = str(value)

    put("", config)
    return out
