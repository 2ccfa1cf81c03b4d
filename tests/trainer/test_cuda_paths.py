"""The CUDA path on a CPU-only machine: every probe, statistic and evaluation of a run whose
model and batches live on ``cuda:0`` reaches the host correctly, with the values of a CPU run.

``tests.fake_cuda.FakeCuda`` reports the run's tensors as CUDA tensors and refuses what CUDA
refuses (``.numpy()`` of a device tensor, ops mixing device and host tensors), so the code
that only runs on a GPU machine runs here.
"""

import numpy as np
import pytest
import torch

from tests.fake_cuda import CUDA, FakeCuda
from trainer import runtime
from trainer.config import Config
from trainer.evaluate import knn_eval
from trainer.loop import train
from trainer.methods import build_method
from trainer.metrics_db import read_metric
from trainer.runtime import Runtime
from trainer.store import list_checkpoints, load_checkpoint, load_probe

TINY = [
    "model.preset=custom", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.patch_size=4",
    "data.image_size=16", "data.num_train=128", "data.num_val=32", "data.batch_size=16", "data.num_workers=0",
    "dino.out_dim=16", "dino.hidden_dim=32", "dino.bottleneck_dim=16", "dino.n_local=2", "optim.warmup_steps=1",
    "ijepa.pred_dim=16", "ijepa.pred_depth=1", "mae.decoder_dim=16", "mae.decoder_depth=1", "mae.decoder_heads=2",
    "run.log_every=1", "run.eval_every=2", "run.ckpt_every=2", "run.probe_size=4", "optim.steps=2",
]


def _cfg(method: str, *extra: str) -> Config:
    return Config().with_overrides(TINY + [f"run.method={method}", *extra]).validate()


def test_fake_cuda_refuses_what_cuda_refuses():
    with FakeCuda() as fc:
        x = torch.ones(3, 2)
        fc.put(x)
        y = (x * 2)[:, 0]
        assert y.device == CUDA and y.is_cuda
        with pytest.raises(TypeError, match="cuda:0 device type tensor to numpy"):
            y.numpy()
        with pytest.raises(TypeError, match="cuda:0"):
            np.asarray(y)
        with pytest.raises(RuntimeError, match="same device"):
            y + torch.ones(3)  # a host tensor of 3 elements
        assert float((y + torch.tensor(1.0)).sum()) == 9.0  # a 0-dim host scalar is allowed
        assert y.cpu().numpy().tolist() == [2.0, 2.0, 2.0] and fc.host_copies == 1
        z = torch.zeros(2, device=y.device)  # a factory asked for the device
        assert fc.on_device(z) and fc.on_device(torch.ones(2).to("cuda"))
        m = torch.nn.Linear(2, 2)
        fc.put(m)
        assert m(x).device == CUDA and not fc.on_device(m(x).to("cpu"))


@pytest.mark.parametrize("method,extra", [("dino", ["model.reg_tokens=2"]), ("mae", []), ("ijepa", [])])
def test_probe_and_stats_on_the_device_equal_the_cpu(method, extra):
    cfg = _cfg(method, *extra)
    torch.manual_seed(0)
    m = build_method(cfg)
    images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    ref_arrays, ref_stats = m.probe(images)
    with FakeCuda() as fc:
        fc.put(m, images)
        arrays, stats = m.probe(images)
    assert ref_arrays.keys() == arrays.keys() and ref_stats.keys() == stats.keys()
    for k in ref_arrays:
        assert isinstance(arrays[k], np.ndarray)
        np.testing.assert_allclose(arrays[k], ref_arrays[k], atol=1e-6, err_msg=k)
    for k in ref_stats:
        assert stats[k] == pytest.approx(ref_stats[k], abs=1e-6, nan_ok=True), k


def test_knn_eval_on_the_device_equals_the_cpu():
    torch.manual_seed(0)
    vit = build_method(_cfg("dino")).encoder()
    g = torch.Generator().manual_seed(3)
    bank, query = torch.randn(40, 3, 16, 16, generator=g), torch.randn(12, 3, 16, 16, generator=g)
    bl, ql = torch.arange(40) % 4, torch.arange(12) % 4
    ref = knn_eval(vit, bank, bl, query, ql, torch.device("cpu"), 5, 0.07)
    with FakeCuda() as fc:
        fc.put(vit)
        got = knn_eval(vit, bank, bl, query, ql, CUDA, 5, 0.07)
    assert got == pytest.approx(ref, abs=1e-6) and 0 <= ref <= 1


@pytest.mark.parametrize("method", ["dino", "mae", "ijepa"])
def test_a_run_on_the_device_trains_evaluates_and_saves_as_on_the_cpu(method, tmp_path, monkeypatch):
    """The whole loop with the model and every batch on ``cuda:0``: step-0 and final
    evaluations, logged statistics and checkpoints, equal to the same run on the CPU."""
    ref = train(_cfg(method, f"run.runs_dir={tmp_path}", "run.name=cpu"))
    real_setup = runtime.setup_runtime
    monkeypatch.setattr("trainer.loop.setup_runtime",
                        lambda device: Runtime(CUDA) if device == "cuda" else real_setup(device))
    with FakeCuda() as fc:
        monkeypatch.setattr(Runtime, "autocast", lambda self: torch.autocast("cpu", enabled=False))
        run = train(_cfg(method, f"run.runs_dir={tmp_path}", "run.name=cuda", "run.device=cuda"))
    assert fc.host_copies > 0  # the probes and statistics did cross to the host
    for name in ("train/loss", "eval/knn_top1"):
        (s0, v0), (s1, v1) = read_metric(ref, name), read_metric(run, name)
        assert s0.tolist() == s1.tolist() and len(s0)
        np.testing.assert_allclose(v1, v0, atol=1e-5, err_msg=name)
    a, b = load_probe(ref, 2), load_probe(run, 2)
    assert a.keys() == b.keys()
    for k in a:
        if a[k].dtype.kind == "f":
            np.testing.assert_allclose(b[k], a[k], atol=1e-5, err_msg=k)
        else:  # images, masks, the layout
            np.testing.assert_array_equal(b[k], a[k], err_msg=k)
    ca, cb = (load_checkpoint(list_checkpoints(r)[-1].path) for r in (ref, run))
    for k in ca:
        assert not fc.on_device(cb[k]), f"{k} was saved as a device tensor"
        torch.testing.assert_close(cb[k], ca[k], atol=1e-5, rtol=0, msg=k)


@pytest.mark.parametrize("method,extra", [
    ("dino", []), ("mae", []), ("ijepa", []),
    ("dino", ["dino.ibot_weight=1.0", "dino.centering=sinkhorn", "dino.gram_weight=1.0", "dino.gram_teacher_step=1",
              "dino.gram_start=1"]),
], ids=["dino", "mae", "ijepa", "dinov2-v3"])
def test_a_step_that_does_not_log_reads_nothing_back_from_the_device(method, extra, tmp_path, monkeypatch):
    """Steps 1, 2 and 4 of a 5-step run that logs every 3 steps (and evaluates and saves only at
    the end) make no device -> host copy and no ``.item()`` / ``float`` / ``bool`` read: on a GPU
    the host keeps queueing work instead of waiting for it. Step 3, which logs, does read."""
    cls = type(build_method(_cfg(method, *extra)))
    real_forward = cls.forward
    seen: list[tuple[int, int, int]] = []  # (it, syncs, host copies) as each step's forward starts

    def counting(self, batch, it, with_stats=True):
        seen.append((it, fc.syncs, fc.host_copies))
        return real_forward(self, batch, it, with_stats)

    monkeypatch.setattr(cls, "forward", counting)
    real_setup = runtime.setup_runtime
    monkeypatch.setattr("trainer.loop.setup_runtime",
                        lambda device: Runtime(CUDA) if device == "cuda" else real_setup(device))
    monkeypatch.setattr(Runtime, "autocast", lambda self: torch.autocast("cpu", enabled=False))
    with FakeCuda() as fc:
        run = train(_cfg(method, *extra, f"run.runs_dir={tmp_path}", "run.name=r", "run.device=cuda", "optim.steps=5",
                         "run.log_every=3", "run.eval_every=100", "run.ckpt_every=100"))
    assert [it for it, *_ in seen] == [0, 1, 2, 3, 4]
    # what step it + 1 read: from its forward's start to the next step's
    reads = {it + 1: (b[1] - a[1], b[2] - a[2]) for it, (a, b) in enumerate(zip(seen, seen[1:]))}
    assert reads[1] == reads[2] == reads[4] == (0, 0), reads
    assert reads[3][0] + reads[3][1] > 0  # the logged step does cross: the counters see these reads
    assert read_metric(run, "train/loss")[0].tolist() == [3, 5]
