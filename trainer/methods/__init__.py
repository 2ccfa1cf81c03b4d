"""Methods behind one interface (``base.Method``); ``build_method`` picks one by name."""

from __future__ import annotations

import importlib

from trainer.config import Config
from trainer.methods.base import Batch, Method, StepOutput, ViewSpec

# name -> "module:Class"; imported lazily so one method's import cost is not paid by the others
_REGISTRY = {"dino": "trainer.methods.dino:DINO", "mae": "trainer.methods.mae:MAE",
             "ijepa": "trainer.methods.ijepa:IJEPA"}


def build_method(cfg: Config) -> Method:
    """The method ``cfg.run.method``, built from the whole config (fresh weights)."""
    module, cls = _REGISTRY[cfg.run.method].split(":")
    return getattr(importlib.import_module(module), cls)(cfg)


__all__ = ["Batch", "Method", "StepOutput", "ViewSpec", "build_method"]
