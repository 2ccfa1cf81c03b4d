"""Methods behind one interface (``base.Method``); ``build_method`` picks one by name."""

from __future__ import annotations

import importlib

from core.probes import Layout
from trainer.config import Config
from trainer.methods.base import Method, StepOutput

# name -> "module:Class"; imported lazily so one method's import cost is not paid by the others
_REGISTRY = {"dino": "trainer.methods.dino:DINO", "mae": "trainer.methods.mae:MAE",
             "ijepa": "trainer.methods.ijepa:IJEPA"}


def method_class(name: str) -> type[Method]:
    """The class of method ``name`` (dino | mae | ijepa), without building it."""
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_method(cfg: Config) -> Method:
    """The method ``cfg.run.method``, built from the whole config (fresh weights)."""
    return method_class(cfg.run.method)(cfg)


def probe_layout(name: str) -> Layout:
    """The probe layout method ``name`` declares (for probe files that do not carry theirs);
    empty for an unknown name."""
    return method_class(name).probe_layout if name in _REGISTRY else ()


__all__ = ["Method", "StepOutput", "build_method", "method_class", "probe_layout"]
