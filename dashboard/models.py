"""Models and analysis inputs for the Inspect page, cached across reruns and sessions.

Backbones and whole methods are ``st.cache_resource`` (a few kept: they are big), data
tables ``st.cache_data``. Heavy results (features, UMAP, scores) are cached on disk by
``analysis.cache`` beside the run, so they survive a restart of the app too. Every loader
returns a value or raises ``InspectError`` with a one-line message for the page.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import streamlit as st

from trainer.config import ConfigError
from trainer.store import StoreError


class InspectError(ValueError):
    """Something the page cannot analyse; the message says what and what to do."""


def analysis_errors() -> tuple[type[Exception], ...]:
    from analysis.source import SourceError
    from trainer.data.datasets import DataError

    return SourceError, StoreError, DataError, ConfigError, ValueError, OSError


@st.cache_resource(max_entries=4, show_spinner="Loading the checkpoint...")
def source(target: str, step: int | None, num_heads: int | None = None):
    """``analysis.source.open_source`` of a run folder (at ``step``) or a weights file
    (``num_heads``: the user's head count when the file's cannot be known)."""
    from analysis.source import open_source

    try:
        return open_source(target, step, num_heads=num_heads)
    except analysis_errors() as e:
        raise InspectError(str(e)) from None


@st.cache_resource(max_entries=2, show_spinner="Loading the whole model...")
def method(run_dir: str, step: int | None):
    """The run's whole method (MAE decoder, I-JEPA predictor included), eval mode."""
    from trainer.loading import load_method

    try:
        return load_method(run_dir, step)[0]
    except (StoreError, ConfigError, RuntimeError) as e:
        raise InspectError(str(e)) from None


@st.cache_data(max_entries=8, show_spinner="Diagnosing the checkpoint...")
def diagnosis(target: str, step: int | None):
    """``analysis.collapse.diagnose_source`` of a run checkpoint or a weights file."""
    from analysis.collapse import diagnose_source

    try:
        return diagnose_source(source(target, step))
    except analysis_errors() as e:
        raise InspectError(str(e)) from None


@st.cache_data(max_entries=16, show_spinner="Loading images...")
def split_images(target: str, step: int | None, split: str, n: int,
                 image_size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]:
    """uint8 images (N, S, S, 3), labels, object masks or None, class names of a split
    (``image_size``: at another side than the source's data, e.g. an MAE file's 224 px)."""
    from analysis.source import split_images as load

    try:
        return load(source(target, step), split, n, image_size)
    except analysis_errors() as e:
        raise InspectError(str(e)) from None


@st.cache_data(max_entries=8, show_spinner="Patch features...")
def patch_features(target: str, step: int | None, split: str, n: int) -> np.ndarray:
    """Final-norm patch features (N, h, w, D) of the first ``n`` images of a split."""
    from analysis.dense import dense_features

    images = split_images(target, step, split, n)[0]
    try:
        return dense_features(source(target, step).vit, images)
    except analysis_errors() as e:
        raise InspectError(str(e)) from None


BUNDLED = ("astronaut", "chelsea", "coffee")  # photos shipped with scikit-image


@st.cache_data(max_entries=8, show_spinner=False)
def bundled_photo(name: str, size: int) -> np.ndarray:
    """A scikit-image sample photo, centre-cropped square and resized to ``size`` px, uint8 (S, S, 3)."""
    from skimage import data

    return square_resize(getattr(data, name)(), size)


def square_resize(img: np.ndarray, size: int) -> np.ndarray:
    """Centre crop to a square, then resize to ``size`` px (anti-aliased): uint8 (S, S, 3)."""
    from PIL import Image

    img = np.asarray(img)
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    img = img[..., :3]
    h, w = img.shape[:2]
    s = min(h, w)
    crop = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return np.asarray(Image.fromarray(crop.astype(np.uint8)).resize((size, size), Image.LANCZOS))


def uploaded_image(data: bytes, size: int) -> np.ndarray:
    """An uploaded file as a uint8 (S, S, 3) image, or InspectError if it is no image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return square_resize(np.asarray(im.convert("RGB")), size)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InspectError(f"the uploaded file is not a readable image ({type(e).__name__}); "
                           "upload a PNG, JPEG or WebP picture") from None


def save_upload(root: Path, name: str, data: bytes) -> Path:
    """Keep an uploaded weights file under ``<runs dir>/.uploads`` (analysis needs a path)."""
    from trainer.store import atomic_write_bytes

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "weights"
    path = root / ".uploads" / safe
    atomic_write_bytes(path, data)
    return path
