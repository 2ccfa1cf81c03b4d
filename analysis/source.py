"""What the user points at -- a run folder, one of its checkpoints, or a weights file from
elsewhere -- resolved to a backbone, the data to analyse it on and the cache its results go to.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.cache import ResultCache, default_cache_root, file_hash
from analysis.checkpoints import CheckpointError, load_backbone
from analysis.vit_sizes import HeadCount
from core.vit import ViT
from trainer.config import Config, Data, preset_shape
from trainer.store import StoreError

# Data for checkpoints from elsewhere: small splits of the built-in shapes.
EXTERNAL_TRAIN, EXTERNAL_VAL = 2000, 500


class SourceError(ValueError):
    """A target that is neither a run folder nor a loadable weights file."""


@dataclass
class Source:
    """A backbone to analyse and everything needed to analyse it reproducibly."""

    vit: ViT  # eval mode, CPU
    name: str  # run id (with step) or file name, for titles
    checkpoint: str  # content hash of the weights (+ part): the cache key
    cache: ResultCache
    data: Data  # the dataset to analyse on
    seed: int  # data seed (shapes are generated from it)
    layout: str  # sslscope | dino | dinov2 | mae | ijepa | timm | plain ...
    run_dir: Path | None = None
    step: int | None = None
    method: str | None = None  # dino | mae | ijepa for SSLScope runs
    config: Config | None = None
    heads: HeadCount | None = None  # the backbone's head count and where it came from (a guess: warn)
    mae: Any = None  # analysis.mae_file.FileMAE of an official MAE file with its decoder
    notes: list[str] = dataclasses.field(default_factory=list)  # what the page and the CLI should say

    def data_params(self) -> dict[str, Any]:
        """What identifies the analysed data in a cache key."""
        return {"data": dataclasses.asdict(self.data), "seed": self.seed}


def _external_data(vit: ViT, data: Data | None) -> Data:
    if data is not None:
        return data
    patch = vit.patch_embed.patch_size[0]
    native = vit.patch_embed.img_size[0]
    # at least an 8 x 8 patch grid, without generating 224 px images for every ViT-S/16
    size = native if native <= 64 else 8 * patch
    return Data(name="shapes", image_size=size, num_train=EXTERNAL_TRAIN, num_val=EXTERNAL_VAL)


def open_source(target: Path | str, step: int | None = None, part: str | None = None,
                model_name: str | None = None, num_heads: int | None = None,
                data: Data | None = None) -> Source:
    """Resolve ``target``: a run folder (its checkpoint at ``step``, default the latest), a
    checkpoint file inside a run, or any weights file (see ``analysis.checkpoints``).

    ``part``: another backbone of the file (e.g. ``student``); ``data``: analyse on other
    data than the run's own (default: the run's; external weights: shapes at a size that
    gives the model at least an 8 x 8 patch grid).
    """
    t = Path(target)
    try:
        if (t / "run.json").is_file():
            return _open_run(t, step, part, data)
        if t.is_file() and t.suffix == ".safetensors" and (t.parent.parent / "run.json").is_file() and step is None:
            try:
                run_step = int(json.loads(t.with_suffix(".json").read_text())["step"])
            except (OSError, ValueError, KeyError, json.JSONDecodeError):
                run_step = None
            if run_step is not None:
                return _open_run(t.parent.parent, run_step, part, data)
        if t.is_dir():
            raise SourceError(f"'{t}' is a folder without run.json; point at a run folder or a weights file")
        loaded = load_backbone(t, part=part, model_name=model_name, num_heads=num_heads)
    except (CheckpointError, StoreError) as e:
        raise SourceError(str(e)) from None
    from analysis.mae_file import file_mae

    mae, note = file_mae(loaded)
    root = default_cache_root()
    key = (file_hash(t, root) + (f"|{part}" if part else "") + (f"|{model_name}" if model_name else "")
           + (f"|heads={loaded.heads.heads}" if loaded.heads else ""))  # another head count, other features
    return Source(loaded.vit, t.name, key, ResultCache(root), _external_data(loaded.vit, data), 0, loaded.layout,
                  heads=loaded.heads, mae=mae, notes=[note] if note else [])


def _open_run(run_dir: Path, step: int | None, part: str | None, data: Data | None) -> Source:
    from trainer.loading import load_encoder, pick_checkpoint, run_config

    cfg = run_config(run_dir)
    ck = pick_checkpoint(run_dir, step)
    if part is None:
        vit, _, ck = load_encoder(run_dir, ck.step)
    else:
        vit = load_backbone(ck.path, part=part, num_heads=preset_shape(cfg.model)[3]).vit
    cache = ResultCache(run_dir / "analysis")
    key = file_hash(ck.path, cache.root) + (f"|{part}" if part else "")
    return Source(vit, f"{run_dir.name}@{ck.step}", key, cache, data or cfg.data, cfg.run.seed, "sslscope",
                  run_dir, ck.step, cfg.run.method, cfg, HeadCount(int(vit.blocks[0].attn.num_heads),
                                                                   "the run's config", True))


def split_images(source: Source, split: str, max_images: int = 0,
                 image_size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]:
    """uint8 images (N, S, S, 3), labels (N,), object masks (N, S, S) or None, class names of
    ``split`` of the source's data; the first ``max_images`` (0 = all). ``image_size``: another
    side than the data's (an official MAE decoder's fixed positions need its own, e.g. 224)."""
    from trainer.data.datasets import DataError, build_dataset

    data = source.data
    if image_size and image_size != data.image_size:
        data = dataclasses.replace(data, image_size=image_size)
        if data.name == "shapes" and max_images > 0:  # generate only what is shown, at the bigger size
            data = dataclasses.replace(data, num_train=max(max_images, 1), num_val=max(max_images, 1))
    try:
        ds = build_dataset(data, split, source.seed)
    except DataError as e:
        raise SourceError(str(e)) from None
    n = len(ds) if max_images <= 0 else min(max_images, len(ds))
    masks = None if ds.masks is None else ds.masks[:n]
    return ds.images[:n], ds.labels[:n], masks, list(ds.classes)
