"""The ``core.measures`` numbers of one finished run, computed from its last checkpoint and
cached beside it (``analysis.cache``): the report computes them, the pages only read the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core.measures import ATTENTION_JACCARD, LINEAR_TOP1, MEASURES

JACCARD_IMAGES = 256  # val images of the attention Jaccard (per-image Jaccard std ~0.15: SE ~0.01)
KIND = "study_measure"


def _linear_top1(source) -> float:
    from analysis.features import split_features
    from analysis.scores import linear_probe
    from trainer.methods import method_class

    feature = method_class(source.method).feature
    tr, va = split_features(source, "train"), split_features(source, "val")
    return linear_probe(tr.get(feature), tr.labels, va.get(feature), va.labels)[0]


def _attention_jaccard(source) -> float:
    from analysis.attention import attention_jaccard
    from analysis.source import split_images
    from trainer.data.datasets import normalize

    images, _, masks, _ = split_images(source, "val", JACCARD_IMAGES)
    if masks is None or source.vit.cls_token is None:
        return float("nan")  # no object masks (not shapes) or no [CLS] (I-JEPA): not defined
    return attention_jaccard(source.vit, normalize(images), masks).mean


COMPUTE: dict[str, Callable] = {LINEAR_TOP1: _linear_top1, ATTENTION_JACCARD: _attention_jaccard}
assert set(COMPUTE) == set(MEASURES), "every declared measure has exactly one computation here"


def run_measure(run_dir: Path | str, name: str, compute: bool = True) -> float | None:
    """Measure ``name`` of a run at its last checkpoint; with ``compute=False`` only a cached
    value (None when it was never computed). NaN where it is not defined for the run."""
    from analysis.cache import ResultCache, file_hash
    from trainer.loading import pick_checkpoint
    from trainer.store import StoreError

    run_dir = Path(run_dir)
    try:
        ck = pick_checkpoint(run_dir)
    except StoreError:  # no checkpoint (deleted by hand): nothing to measure
        return None
    cache = ResultCache(run_dir / "analysis")
    key, params = file_hash(ck.path, cache.root), {"measure": name, "step": ck.step}
    hit = cache.get(KIND, key, params)
    if hit is not None:
        return float(hit["value"])
    if not compute:
        return None
    from analysis.source import open_source

    value = float(COMPUTE[name](open_source(run_dir, ck.step)))
    try:
        cache.put(KIND, key, params, {"value": value})
    except OSError:  # a read-only run folder still gets its answer
        pass
    return value
