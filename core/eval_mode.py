"""Run a module in eval mode for a while (probes, online k-NN) and give it back in the mode
it had: one context manager instead of a save / ``eval()`` / restore in every caller."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``with eval_mode(m):`` m and its children are in eval mode inside; afterwards each
    submodule is back in its own earlier mode (a frozen teacher kept in eval stays there)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training
