"""``Monitor`` fed a user's CUDA tensors (``tests.fake_cuda``): every statistic, probe array and
checkpoint tensor reaches the host, with the values the same calls give on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sslscope.monitor import Monitor
from tests.fake_cuda import FakeCuda
from tests.sslscope.test_monitor import _call_all, _inputs, _logged
from trainer.store import list_checkpoints, load_checkpoint, load_probe


def _watch(root, name: str, fake: FakeCuda | None) -> None:
    x = _inputs()
    g = torch.Generator().manual_seed(4)
    images, attn = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 2, 4, 4, generator=g)
    state = {"backbone.w": torch.arange(4.0), "epoch": 3}
    if fake is not None:
        fake.put(*[t for v in x.values() for t in (v if isinstance(v, list) else [v])], images, attn,
                 state["backbone.w"])
    mon = Monitor(root, name, every=1)
    for step in (1, 2):
        _call_all(mon, step, x)
    mon.probe(2, images, attention=attn, mask=attn[:, 0] > 0.5, embeddings=x["z"][:2])
    mon.checkpoint(2, state, prefix="backbone.")
    mon.close()


def test_monitor_on_cuda_tensors_logs_probes_and_saves_what_it_does_on_the_cpu(tmp_path):
    _watch(tmp_path, "cpu", None)
    with FakeCuda() as fc:
        _watch(tmp_path, "cuda", fc)
    assert fc.host_copies > 0
    a, b = _logged(tmp_path / "cpu"), _logged(tmp_path / "cuda")
    assert a.keys() == b.keys() and len(a) > 20
    for k in a:
        assert b[k] == pytest.approx(a[k], abs=1e-6, nan_ok=True), k
    pa, pb = load_probe(tmp_path / "cpu", 2), load_probe(tmp_path / "cuda", 2)
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_array_equal(pb[k], pa[k], err_msg=k)
    (ck,) = list_checkpoints(tmp_path / "cuda")
    assert torch.equal(load_checkpoint(ck.path)["backbone.w"], torch.arange(4.0))
