"""A folder of the user's own images: one sub-folder per class, or unlabelled.

Layouts (``data.path`` = ROOT):
- ROOT/<class>/**/*.png ...   labelled; labels index the sorted class-folder names
- ROOT/*.jpg ...              unlabelled (no sub-folder holds images): labels -1
- ROOT/train/... + ROOT/val/... either of the above per side; the sides are the splits
Otherwise the split is drawn from the seed: ``num_val`` files (0 = a tenth; never more than a
fifth) go to validation, the rest to training, in a seeded order so ``num_train`` takes a
class-mixed subset.

A file counts as an image if its extension says so AND it decodes (``trainer.data.decode``:
16-bit, float, CMYK, palette and alpha images included, within a pixel budget). Anything else
(text, zero-byte or truncated files, images too large) is skipped and counted with its reason,
never a crash; only a folder with no readable image at all is an error. Images are
centre-cropped to a square and resized to ``data.image_size`` (JPEGs decode straight at a
reduced scale via ``draft``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from trainer.config import Data
from trainer.data import decode
from trainer.data.datasets import DataError, ImageDataset

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
NEEDED = ("images PIL can open (.png, .jpg, ...), one sub-folder per class or all in one folder; "
          "pass --data-path DIR")
_SPLIT_STREAM = 9  # the seeded split's own random stream


def load(data: Data, split: str, seed: int) -> ImageDataset:
    """The ``split`` of the folder ``data.path`` at ``data.image_size`` px."""
    if not data.path:
        raise DataError(f"the folder dataset needs a folder of {NEEDED}")
    root = Path(data.path).expanduser()
    if not root.exists():
        raise DataError(f"image folder '{root}' does not exist; it must hold {NEEDED}")
    if not root.is_dir():
        raise DataError(f"'{root}' is a file, not a folder; it must be a folder of {NEEDED}")

    where = root
    if (root / "train").is_dir() and (root / "val").is_dir():
        where = root / split
        sides = {s: _scan(root / s) for s in ("train", "val")}
        files, junk = sides[split]
        classes = sorted({c for fs, _ in sides.values() for _, c in fs if c is not None})
        if not any(fs for fs, _ in sides.values()):
            _no_images(root, [j for _, js in sides.values() for j in js])
        order = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(len(files))
        chosen = [files[i] for i in order]
    else:
        files, junk = _scan(root)
        classes = sorted({c for _, c in files if c is not None})
        if not files:
            _no_images(root, junk)
        order = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(len(files))
        n_val = min(data.num_val if data.num_val > 0 else len(files) // 10, len(files) // 5)
        chosen = [files[i] for i in (order[:n_val] if split == "val" else order[n_val:])]
    n = data.num_train if split == "train" else data.num_val
    if n > 0:
        chosen = chosen[:n]

    budget = decode.PixelBudget(decode.PIXEL_BUDGET)  # bounds the pixels all threads decode at once
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
        decoded = list(pool.map(lambda f: decode.decode_square(f[0], data.image_size, budget), chosen))
    keep = [i for i, im in enumerate(decoded) if not isinstance(im, str)]
    reasons = [f"{chosen[i][0].name}: {im}" for i, im in enumerate(decoded) if isinstance(im, str)]
    skipped = junk + [chosen[i][0] for i, im in enumerate(decoded) if isinstance(im, str)]
    if not keep and split == "train":
        _no_images(where, skipped, reasons)
    size = data.image_size
    images = np.stack([decoded[i] for i in keep]) if keep else np.zeros((0, size, size, 3), np.uint8)
    index = {c: k for k, c in enumerate(classes)}
    labels = np.array([index[chosen[i][1]] if chosen[i][1] is not None else -1 for i in keep], np.int64)
    return ImageDataset(images, labels, classes, "folder", skipped=len(skipped),
                        skipped_examples=[p.name for p in skipped[:3]], skipped_reasons=reasons[:3])


def _scan(root: Path) -> tuple[list[tuple[Path, str | None]], list[Path]]:
    """(image-named files with their class or None, other files); hidden files are ignored.

    Labelled (class = first folder below ROOT) as soon as a sub-folder holds image-named
    files; images lying directly in ROOT then belong to no class and are skipped.
    """
    found: list[tuple[Path, str | None]] = []
    junk: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith("."):
                continue
            if path.suffix.lower() in IMAGE_EXTS:
                found.append((path, rel.parts[0] if rel.parts else None))
            else:
                junk.append(path)
    if not any(c is not None for _, c in found):
        return found, junk
    return [f for f in found if f[1] is not None], junk + [p for p, c in found if c is None]


def _no_images(root: Path, skipped: list[Path], reasons: list[str] | None = None) -> None:
    if not skipped:
        raise DataError(f"image folder '{root}' is empty; it must hold {NEEDED}")
    examples = "; ".join(reasons[:2]) if reasons else ", ".join(p.name for p in skipped[:3])
    raise DataError(f"image folder '{root}' has no readable image ({len(skipped)} files skipped, e.g. "
                    f"{examples}); it must hold {NEEDED}")
