"""Promise: a non-finite loss or gradient stops the run with the step and the cause (status
failed, exit 1, one line), and the last good checkpoint stays, untouched by the bad step."""

from __future__ import annotations

import pytest
import torch

from tests.faults.helpers import main_in_process, one_line, tiny, tiny_argv
from trainer.loop import train
from trainer.methods import dino
from trainer.store import list_checkpoints, load_checkpoint, load_optim_state, read_events, read_run_info

STEPS = ["optim.steps=20", "run.ckpt_every=5", "run.keep_ckpts=0"]


class _InfGrad(torch.autograd.Function):
    """Identity forward, infinite gradient backward: a finite loss whose gradients blow up."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("inf")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return train(tiny(tmp_path_factory.mktemp("ref"), "ref", *STEPS))


@pytest.mark.parametrize("poison, cause", [("loss", "non-finite loss (nan) at step 13"),
                                           ("grad", "non-finite gradient norm at step 13")])
def test_a_non_finite_step_fails_the_run_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch,
                                                                              reference, poison, cause):
    real_forward = dino.DINO.forward

    def poisoned(self, batch, it, with_stats=True):
        out = real_forward(self, batch, it, with_stats)
        if it == 12:  # the 13th step
            out.loss = out.loss * float("nan") if poison == "loss" else _InfGrad.apply(out.loss)
        return out

    monkeypatch.setattr(dino.DINO, "forward", poisoned)
    code, err = main_in_process(tiny_argv(tmp_path, "bad", *STEPS), capsys)
    assert code == 1
    assert one_line(err) == f"error: training diverged: {cause}. Lower --set optim.lr or raise optim.warmup_steps"
    run = tmp_path / "bad"
    info = read_run_info(run)
    assert info["status"] == "failed" and info["reason"] == f"{cause}; the last good checkpoint is kept"
    assert (12, "error", cause) in [(e["step"], e["level"], e["message"]) for e in read_events(run)]
    cks = list_checkpoints(run)
    assert [c.step for c in cks] == [5, 10]
    good, ref = load_checkpoint(cks[-1].path), load_checkpoint(list_checkpoints(reference)[1].path)
    for k in ref:  # the step-10 checkpoint is exactly the healthy run's, nothing non-finite in it
        assert torch.isfinite(good[k]).all() and torch.equal(good[k], ref[k]), k
    assert load_optim_state(cks[-1]) is not None
