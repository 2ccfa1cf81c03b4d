"""Probe layouts: what each array of a ``probes/step_<N>.npz`` file is, declared by the method
that writes it, so the charts draw each entry by its declared kind and never guess from shapes.

An entry has a name (the npz key), a kind and a shape per probe image, whose axes are named
("H", "W", "3", "heads", "h", "w", "D"); a number is a fixed size, a name must take the same
size in every entry of one probe, and every array starts with the probe-image axis P:

- image: (H, W, 3) uint8 pictures; the first image entry is what maps and masks are drawn over;
- heatmap: (h, w) or a stack (n, h, w) drawn as its mean over n (heads, blocks);
- mask: (h, w) or a stack (n, h, w) of 0/1, drawn as its union over n;
- embedding: (D,) feature vectors, not drawn in the grid;
- dense: (h, w, D) patch features, drawn by the dense views (PCA colours, patch similarity:
  ``analysis.dense``), not in the grid;
- scalar: () one number per image, not drawn in the grid.

New probe files carry their layout (``LAYOUT_KEY``, JSON in a 0-d string array: no pickle);
older files get the layout of the run's method (``Method.probe_layout``), after ``LEGACY_KEYS``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

KINDS = ("image", "heatmap", "mask", "embedding", "dense", "scalar")
DRAWN = ("image", "heatmap", "mask")
LAYOUT_KEY = "_layout"
# Probes written before layouts existed: the loop added the probe pictures as "images"
# (the methods' "original"; DINO's probe had no picture of its own).
LEGACY_KEYS = {"images": "original"}


class ProbeLayoutError(ValueError):
    """A probe whose arrays do not fit the method's declared layout."""


@dataclass(frozen=True)
class ProbeEntry:
    """One array of a probe file: ``shape`` is per probe image (without the leading P axis)."""

    name: str
    kind: str
    shape: tuple[str, ...]
    title: str

    def __post_init__(self) -> None:
        assert self.kind in KINDS, f"probe entry {self.name}: kind '{self.kind}' is not one of {KINDS}"


Layout = tuple[ProbeEntry, ...]

# The probe pictures themselves, first in every method's layout: what its maps are drawn over.
ORIGINAL = ProbeEntry("original", "image", ("H", "W", "3"), "image")


@dataclass
class Probe:
    """The arrays of one probe file and the layout that says what each one is."""

    arrays: dict[str, np.ndarray]
    layout: Layout

    def drawn(self) -> list[ProbeEntry]:
        """Entries drawn in the probe grid (image, heatmap, mask) that the file holds, in layout order."""
        return [e for e in self.layout if e.kind in DRAWN and e.name in self.arrays]

    def not_drawn(self) -> list[str]:
        """Keys of the file that the grid does not draw (embeddings, scalars, undeclared keys)."""
        shown = {e.name for e in self.drawn()}
        return [k for k in self.arrays if k not in shown]

    def dense(self) -> list[ProbeEntry]:
        """Entries of kind dense (patch features) that the file holds, in layout order."""
        return [e for e in self.layout if e.kind == "dense" and e.name in self.arrays]

    def base_image(self) -> np.ndarray | None:
        """The first image entry (P, H, W, 3): the pictures maps and masks are drawn over."""
        images = [e for e in self.drawn() if e.kind == "image"]
        return self.arrays[images[0].name] if images else None


def check_probe(layout: Layout, arrays: Mapping[str, np.ndarray]) -> None:
    """Raise ``ProbeLayoutError`` unless ``arrays`` holds exactly the declared entries with
    shapes (P, *shape), named axes taking one size across entries."""
    names = [e.name for e in layout]
    if sorted(names) != sorted(arrays):
        raise ProbeLayoutError(f"probe arrays {sorted(arrays)} are not the declared layout {sorted(names)}")
    sizes: dict[str, int] = {}
    for e in layout:
        shape = np.shape(arrays[e.name])
        if len(shape) != 1 + len(e.shape):
            raise ProbeLayoutError(f"probe entry '{e.name}' has shape {shape}; declared (P, {', '.join(e.shape)})")
        for axis, size in zip(("P", *e.shape), shape):
            want = int(axis) if axis.isdigit() else sizes.setdefault(axis, size)
            if size != want:
                raise ProbeLayoutError(f"probe entry '{e.name}' has {size} along '{axis}' where the layout "
                                       f"needs {want} (shape {shape}, declared (P, {', '.join(e.shape)}))")


def layout_array(layout: Layout) -> np.ndarray:
    """The layout as a 0-d string array, to store beside the arrays in the npz file."""
    return np.array(json.dumps([asdict(e) for e in layout]))


def read_probe(arrays: Mapping[str, np.ndarray], fallback: Sequence[ProbeEntry] = ()) -> Probe:
    """A probe file's arrays with their layout: the stored one, else ``fallback`` (the run's
    method's layout) after renaming ``LEGACY_KEYS``."""
    arrays = dict(arrays)
    stored = arrays.pop(LAYOUT_KEY, None)
    if stored is not None:
        entries = json.loads(str(stored))
        return Probe(arrays, tuple(ProbeEntry(d["name"], d["kind"], tuple(d["shape"]), d["title"]) for d in entries))
    for old, new in LEGACY_KEYS.items():
        if old in arrays:
            value = arrays.pop(old)
            arrays.setdefault(new, value)
    return Probe(arrays, tuple(fallback))
