"""The batch stream: order and views a function of (seed, step, global index), resumable, DDP slices."""

import numpy as np
import pytest
import torch

from trainer.config import Config
from trainer.data import DataError, build_dataset, build_loader, epoch_of
from trainer.data.loader import StepBatches
from trainer.data.multicrop import build_view_transform
from trainer.data.views import ViewSpec

SPEC = ViewSpec("multicrop", global_size=16, n_global=2, local_size=8, n_local=2)


@pytest.fixture(scope="module")
def cfg():
    return Config().with_overrides(["data.image_size=16", "data.num_train=96", "data.num_val=8",
                                    "data.batch_size=16", "data.num_workers=0", "run.seed=3"])


@pytest.fixture(scope="module")
def ds(cfg):
    return build_dataset(cfg.data, "train", cfg.run.seed)


def _take(it, n):
    return [next(it) for _ in range(n)]


def _same(a, b):
    return torch.equal(a.labels, b.labels) and all(torch.equal(u, v) for u, v in zip(a.views, b.views))


def test_batches_have_the_spec_views(cfg, ds):
    b = next(build_loader(cfg, SPEC, dataset=ds))
    assert [tuple(v.shape) for v in b.views] == [(16, 3, 16, 16)] * 2 + [(16, 3, 8, 8)] * 2
    assert b.labels.dtype == torch.int64 and b.labels.shape == (16,)


def test_resume_at_start_step_reproduces_images_and_crops(cfg, ds):
    full = _take(build_loader(cfg, SPEC, dataset=ds), 9)  # crosses an epoch (6 steps)
    resumed = _take(build_loader(cfg, SPEC, start_step=5, dataset=ds), 4)
    assert all(_same(a, b) for a, b in zip(full[5:], resumed))
    assert not _same(full[0], full[1])


def test_worker_process_gives_the_same_stream(cfg, ds):
    it = build_loader(cfg.set("data.num_workers", 1), SPEC, start_step=2, dataset=ds)
    with_worker = _take(it, 3)
    it.close()
    in_process = _take(build_loader(cfg, SPEC, start_step=2, dataset=ds), 3)
    assert all(_same(a, b) for a, b in zip(with_worker, in_process))


def test_epochs_are_permutations_and_ranks_split_each_step(ds):
    t = build_view_transform(SPEC)
    one = StepBatches(ds, t, 16, seed=3)
    epoch0 = np.concatenate([one.indices(s) for s in range(6)])
    epoch1 = np.concatenate([one.indices(s) for s in range(6, 12)])
    assert sorted(epoch0.tolist()) == list(range(96)) == sorted(epoch1.tolist())
    assert not np.array_equal(epoch0, epoch1)
    r0, r1 = StepBatches(ds, t, 8, 3, rank=0, world_size=2), StepBatches(ds, t, 8, 3, rank=1, world_size=2)
    for step in (0, 4, 7):
        a, b = r0.indices(step), r1.indices(step)
        assert len(set(a) | set(b)) == 16
        np.testing.assert_array_equal(np.concatenate([a, b]), one.indices(step))  # same global batch
    assert not torch.equal(r0[0][0][0], r1[0][0][0])


def test_too_few_images_for_a_batch_is_a_one_line_error(cfg, ds):
    with pytest.raises(DataError) as e:
        build_loader(cfg.set("data.batch_size", 64), SPEC, world_size=2, dataset=ds)
    assert "data.batch_size=64" in str(e.value) and "96 images" in str(e.value) and "\n" not in str(e.value)


def test_epoch_of(cfg):
    assert epoch_of(12, cfg, 96) == 2.0 and epoch_of(3, cfg, 96) == 0.5
    assert epoch_of(3, cfg, 100, world_size=2) == 1.0  # 100 // 32 = 3 steps per epoch


@pytest.mark.parametrize("spec", [SPEC, ViewSpec("single", global_size=16)], ids=["multicrop", "single"])
def test_two_ranks_of_8_build_the_views_one_process_of_16_builds(ds, spec):
    """Every crop, flip, jitter, blur and solarisation of an image is a function of (seed,
    step, its place in the global batch), not of the rank that builds it."""
    t = build_view_transform(spec)
    one = StepBatches(ds, t, 16, seed=3)
    ranks = [StepBatches(ds, t, 8, 3, rank=r, world_size=2) for r in (0, 1)]
    for step in (0, 5):
        views, labels = one[step]
        parts = [r[step] for r in ranks]
        assert len(views) == len(parts[0][0]) == (4 if spec.kind == "multicrop" else 1)
        for v, whole in enumerate(views):
            torch.testing.assert_close(torch.cat([p[0][v] for p in parts]), whole, rtol=0, atol=1e-6)
        assert torch.equal(torch.cat([p[1] for p in parts]), labels)
    assert not torch.equal(one[0][0][0], one[1][0][0])  # the draws do change with the step
