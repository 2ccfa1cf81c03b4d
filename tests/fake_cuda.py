"""A CUDA stand-in for CPU-only test machines: ``FakeCuda`` runs code on CPU tensors while
reporting the tagged ones as living on ``cuda:0`` and refusing, as CUDA does, what only works
on host memory.

Inside ``with FakeCuda() as fc``, tensors given to ``fc.put`` (a module's parameters and
buffers, an input batch) and every tensor computed from them are "on the device":

- ``t.device`` says ``cuda:0``, so code that branches on the device takes its CUDA branch;
- ``t.numpy()`` / ``np.asarray(t)`` raise CUDA's error, until ``t.cpu()`` / ``t.to("cpu")``;
- an op mixing a device tensor with a host tensor of one element or more raises CUDA's
  device-mismatch error (0-dim host scalars pass, as on CUDA; so do CPU index tensors);
- factories and ``.to`` with ``device="cuda"`` make device tensors; ``.to`` an already
  device-resident tensor returns it (so ``module.to(cuda)`` after ``put`` changes nothing).

``clip_grad_norm_`` groups the gradients by device in C++ (no torch function sees it); inside
the mode that grouping reports device gradients under ``cuda:0``, so its clip factor stays on
the device as on CUDA instead of reading as a host copy.

The values are the CPU's, so a test checks the results too. ``fc.host_copies`` counts the
device -> host copies (``.cpu()`` / ``.to(cpu)``), ``fc.syncs`` the ``.item()`` / ``float``
reads. A tool for tests, not for the package: the maths is run as written, only the device
rules are simulated.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.utils.clip_grad as _clip_grad
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

CUDA = torch.device("cuda", 0)
_NUMPY = {torch.Tensor.numpy, torch.Tensor.__array__}
_SYNCS = {torch.Tensor.item, torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__bool__,
          torch.Tensor.tolist}
_INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__}
# ops that may see tensors of two devices: copies across, and module.to()'s type check
_ANY_DEVICE = {torch.Tensor.copy_, torch._has_compatible_shallow_copy_type}
_MOVES = {torch.Tensor.to, torch.Tensor.cpu, torch.Tensor.cuda}


def _is_cuda(d: object) -> bool:
    return (isinstance(d, torch.device) and d.type == "cuda") or (isinstance(d, str) and d.startswith("cuda"))


def _is_cpu(d: object) -> bool:
    return (isinstance(d, torch.device) and d.type == "cpu") or d == "cpu"


class FakeCuda(TorchFunctionMode):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self._on: weakref.WeakValueDictionary[int, torch.Tensor] = weakref.WeakValueDictionary()
        self.host_copies = 0
        self.syncs = 0

    def __enter__(self) -> FakeCuda:
        self._group = _clip_grad._group_tensors_by_device_and_dtype
        _clip_grad._group_tensors_by_device_and_dtype = self._grouped_on_device
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        _clip_grad._group_tensors_by_device_and_dtype = self._group
        super().__exit__(*exc)

    def _grouped_on_device(self, tensorlistlist, *args, **kwargs):
        """The grouping of ``clip_grad_norm_``, device tensors filed under ``cuda:0``."""
        out = self._group(tensorlistlist, *args, **kwargs)
        return {((CUDA if self.on_device(lists[0][0]) else dev), dt): v
                for (dev, dt), v in out.items() for lists in [v[0]]}

    # --- tagging -----------------------------------------------------------------------
    def on_device(self, t: object) -> bool:
        return isinstance(t, torch.Tensor) and self._on.get(id(t)) is t

    def _tag(self, out: object) -> object:
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._on[id(t)] = t
        return out

    def put(self, *items: torch.Tensor | nn.Module | Iterable[torch.Tensor]) -> None:
        """Place tensors, or a module's parameters and buffers, "on the device"."""
        for item in items:
            if isinstance(item, nn.Module):
                self._tag(list(item.parameters()) + list(item.buffers()))
            elif isinstance(item, torch.Tensor):
                self._tag(item)
            else:
                self._tag(list(item))

    # --- the rules -----------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: C901 - one rule per branch
        kwargs = dict(kwargs or {})
        self_t = args[0] if args else None
        prop = getattr(func, "__self__", None)  # a property's getter / setter: bound to its descriptor
        if prop is torch.Tensor.device:
            return CUDA if self.on_device(self_t) else func(*args)
        if prop is torch.Tensor.is_cuda:
            return self.on_device(self_t) or func(*args)
        if prop is torch.Tensor.data or prop is torch.Tensor.grad:
            out = func(*args)  # module.to() sets param.data; the grads of device params live there
            if self.on_device(self_t) or (len(args) > 1 and self.on_device(args[1])):
                self._tag([self_t] + ([] if out is None else [out]))
            return out
        if func in _NUMPY and self.on_device(self_t):
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the "
                            "tensor to host memory first.")
        if func in _SYNCS and self.on_device(self_t):
            self.syncs += 1
        if func in _MOVES and isinstance(self_t, torch.Tensor):
            return self._move(func, self_t, args[1:], kwargs)
        # factories: device="cuda" -> a CPU tensor that is tagged
        wants_cuda = _is_cuda(kwargs.get("device"))
        if wants_cuda:
            kwargs["device"] = "cpu"
        tensors = [t for t in tree_flatten((args[1:] if func in _INDEXING else args, kwargs))[0]
                   if isinstance(t, torch.Tensor)]
        if func in _INDEXING and isinstance(self_t, torch.Tensor):
            tensors.append(self_t)
            if func is torch.Tensor.__setitem__ and len(args) > 2 and isinstance(args[2], torch.Tensor):
                tensors = [self_t, args[2]]
        on = [self.on_device(t) for t in tensors]
        if any(on):
            host = [t for t, o in zip(tensors, on) if not o and t.dim() > 0]
            if host and func not in _ANY_DEVICE:
                raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two "
                                   f"devices, cuda:0 and cpu! ({getattr(func, '__name__', func)} of shapes "
                                   f"{[tuple(t.shape) for t in host]} on the host)")
        out = func(*args, **kwargs)
        if wants_cuda or (any(on) and func not in _SYNCS):
            self._tag(out)
        return out

    def _move(self, func, t: torch.Tensor, rest: tuple, kwargs: dict) -> torch.Tensor:
        """``.cpu()``, ``.cuda()`` and ``.to(...)``: where the result lives."""
        if func is torch.Tensor.cpu:
            target = "cpu"
        elif func is torch.Tensor.cuda:
            target = "cuda"
        else:
            target = kwargs.get("device")
            for a in rest:
                if isinstance(a, (torch.device, str)):
                    target = a
                elif isinstance(a, torch.Tensor):  # .to(other): other's device
                    target = "cuda" if self.on_device(a) else "cpu"
            if target is None:  # .to(dtype): stays where it is
                target = "cuda" if self.on_device(t) else "cpu"
        kw = {k: v for k, v in kwargs.items() if k not in ("device", "non_blocking")}
        dtype = next((a for a in rest if isinstance(a, torch.dtype)), kw.pop("dtype", None))
        out = t if dtype is None or dtype == t.dtype else t.to(dtype, **kw)
        if _is_cuda(target):
            return out if self.on_device(out) else self._tag(out.clone() if out is t else out)
        if self.on_device(t):
            self.host_copies += 1
            return out.clone() if out is t else out  # a fresh, untagged host tensor
        return out


def host(tree: object) -> object:
    """``tree`` with every tensor as a NumPy array (for comparing results)."""
    return tree_map(lambda t: t.numpy() if isinstance(t, torch.Tensor) else np.asarray(t), tree)
