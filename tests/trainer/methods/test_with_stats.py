"""``with_stats=False`` (the steps that do not log) skips the statistics only: the loss, its
gradients and every state update (the DINO centre) equal those of a step that computes them."""

import copy

import pytest
import torch

from tests.trainer.test_cuda_paths import _cfg
from trainer.data import build_dataset, build_loader
from trainer.methods import build_method


@pytest.mark.parametrize("method,extra", [
    ("dino", []), ("mae", []), ("ijepa", []),
    ("dino", ["dino.ibot_weight=1.0"]),  # iBOT: its patch centre moves alike too
    # the Gram term at weight 0 (step 3 < gram_start) is computed only to be logged; at weight 1 it trains
    ("dino", ["dino.gram_weight=1.0", "dino.gram_teacher_step=0", "dino.gram_start=5", "optim.steps=10"]),
    ("dino", ["dino.gram_weight=1.0", "dino.gram_teacher_step=0", "dino.gram_start=0", "dino.gram_ramp_steps=0"]),
], ids=["dino", "mae", "ijepa", "ibot", "gram-weight-0", "gram-weight-1"])
def test_a_step_without_stats_trains_exactly_as_one_with_them(method, extra):
    cfg = _cfg(method, *extra)
    torch.manual_seed(0)
    with_stats = build_method(cfg)
    without = copy.deepcopy(with_stats)
    batch = next(build_loader(cfg, with_stats.views(), dataset=build_dataset(cfg.data, "train", 0)))
    a, b = with_stats(batch, 3, with_stats=True), without(batch, 3, with_stats=False)
    assert b.stats == {} and len(a.stats) >= 4  # the statistics, and only they, are skipped
    assert torch.equal(a.loss, b.loss)
    a.loss.backward()
    b.loss.backward()
    for (name, p), q in zip(with_stats.named_parameters(), without.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad), name
    for (name, x), y in zip(with_stats.named_buffers(), without.buffers()):  # loss.center moved alike
        assert torch.equal(x, y), name
    if method == "dino":
        assert with_stats.loss.center.abs().sum() > 0  # the centre did move in both
