"""iBOT across processes (Gloo on CPU): ranks hold different numbers of masked tokens, and the
Sinkhorn-Knopp assignments and the patch centre are those of all masked tokens together."""

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainer.methods.ibot_loss import IBOTPatchLoss

pytestmark = pytest.mark.slow  # spawns two processes

COUNTS = (3, 7)  # masked tokens on rank 0 and rank 1


def _tokens() -> torch.Tensor:
    return torch.randn(sum(COUNTS), 4, generator=torch.Generator().manual_seed(0)) * 3


def _worker(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        t = _tokens()
        start = sum(COUNTS[:rank])
        mine = t[start:start + COUNTS[rank]]
        sk = IBOTPatchLoss(4, 0.1, np.full(4, 0.5), "sinkhorn").teacher_probs(mine, it=0)
        mean = IBOTPatchLoss(4, 0.1, np.full(4, 0.5), "mean", center_momentum=0.0)
        mean.update_center(mine)
        torch.save({"sk": sk, "center": mean.center}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_sinkhorn_and_centre_span_the_masked_tokens_of_every_rank(tmp_path):
    init = f"file://{tmp_path / 'rendezvous'}"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(init, str(tmp_path / "out")), nprocs=2, join=True)
    parts = [torch.load(tmp_path / f"out.{r}") for r in range(2)]
    t = _tokens()
    whole = IBOTPatchLoss(4, 0.1, np.full(4, 0.5), "sinkhorn").teacher_probs(t, it=0)  # one process, all 10 rows
    torch.testing.assert_close(torch.cat([p["sk"] for p in parts]), whole, rtol=1e-5, atol=1e-6)
    for p in parts:  # momentum 0: the centre is the mean over all 10 tokens, not the mean of the ranks' means
        torch.testing.assert_close(p["center"], t.mean(0, keepdim=True), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(t[:3].mean(0) / 2 + t[3:].mean(0) / 2, t.mean(0), atol=1e-3)
