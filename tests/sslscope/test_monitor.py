"""``sslscope.monitor.Monitor``: the statistics of our own training steps, recomputed from their
tensors by the monitor, equal what the built-in methods logged; skipped steps touch nothing;
only rank 0 writes; bad input gets one clear line; a failing store never stops the training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import trainer.methods.base as base
import trainer.methods.dino as dino_module
from core.metrics import METRICS
from sslscope.monitor import Monitor, flat_config, loss_params
from trainer.config import Config
from trainer.loop import train
from trainer.methods.dino import DINO
from trainer.methods.dino_loss import DINOLoss
from trainer.methods.ijepa import IJEPA
from trainer.methods.mae import MAE
from trainer.store import StoreError, StoreWriteError, list_runs, read_run_info, read_scalars

TINY = ["model.preset=custom", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.patch_size=4",
        "data.image_size=16", "data.num_train=64", "data.num_val=16", "data.batch_size=8", "data.num_workers=0",
        "dino.out_dim=16", "dino.hidden_dim=32", "dino.bottleneck_dim=16", "dino.n_local=2",
        "mae.decoder_dim=32", "mae.decoder_depth=1", "mae.decoder_heads=2", "ijepa.pred_dim=32",
        "ijepa.pred_depth=1", "optim.steps=2", "optim.warmup_steps=1", "run.log_every=1", "run.eval_every=100",
        "run.ckpt_every=100", "run.probe_size=2", "run.device=cpu"]


def _logged(run_dir) -> dict[tuple[int, str], float]:
    cols, _ = read_scalars(run_dir)
    return {(int(s), str(n)): float(v) for s, n, v in zip(cols["step"], cols["name"], cols["value"])}


def _assert_same(ours: dict, theirs: dict, names: set[str], steps: list[int]) -> None:
    for step in steps:
        for name in sorted(names):
            a, b = ours[(step, name)], theirs[(step, name)]
            assert abs(a - b) <= 1e-6, f"step {step} {name}: trainer {a!r}, monitor {b!r}"


@pytest.mark.parametrize("extra", [["model.reg_tokens=1", "dino.koleo_weight=0.1"], ["dino.centering=sinkhorn"]],
                         ids=["mean-centre", "sinkhorn"])
def test_monitor_dino_logs_what_our_dino_step_logged(tmp_path, monkeypatch, extra):
    """Drive Monitor.dino / vit-level calls with the tensors of two of our own DINO steps."""
    steps: dict[int, dict] = {}
    state = {"it": None}
    forward, loss_forward = DINO.forward, DINOLoss.forward

    def dino_forward(self, batch, it, with_stats=True):
        state["it"] = it
        try:
            return forward(self, batch, it, with_stats)
        finally:
            state["it"] = None

    def loss_forward_spy(self, t, s, it, update_center=True, with_stats=True):
        steps[it] = {"t": [x.detach().clone() for x in t], "s": [x.detach().clone() for x in s],
                     "params": loss_params(self, step=it)}  # centre copied before the loss moves it
        return loss_forward(self, t, s, it, update_center, with_stats)

    def spy(fn, key):
        def wrapped(x, *args, **kwargs):
            if state["it"] is not None:
                steps[state["it"]][key] = x.detach().clone()
            return fn(x, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(DINO, "forward", dino_forward)
    monkeypatch.setattr(DINOLoss, "forward", loss_forward_spy)
    monkeypatch.setattr(base, "collapse_stats", spy(base.collapse_stats, "z"))
    monkeypatch.setattr(dino_module, "high_norm_frac", spy(dino_module.high_norm_frac, "tokens"))
    cfg = Config().with_overrides(TINY + extra + [f"run.runs_dir={tmp_path}", "run.name=ours", "run.method=dino"])
    ours = _logged(train(cfg))
    assert sorted(steps) == [0, 1]

    with Monitor(tmp_path, "watched", "dino", every=1) as mon:
        for it, step in steps.items():
            p = step["params"]
            mon.dino(it + 1, step["t"], step["s"], teacher_temp=p["teacher_temp"], student_temp=p["student_temp"],
                     center=p["center"], centering=p["centering"], center_momentum=p["center_momentum"],
                     sinkhorn_iters=cfg.dino.sinkhorn_iters)
            mon.embeddings(it + 1, step["z"])
            mon.tokens(it + 1, step["tokens"])
    theirs = _logged(tmp_path / "watched")
    names = {n for _, n in theirs}
    dino_names = {n for n in METRICS if n.startswith("dino/")} - {"dino/koleo"}
    assert names == dino_names | {"collapse/std_l2", "collapse/rankme", "collapse/mean_cosine",
                                  "tokens/high_norm_frac"}
    _assert_same(ours, theirs, names, [1, 2])
    assert ours[(1, "dino/teacher_entropy")] != ours[(2, "dino/teacher_entropy")]  # two different steps compared


def test_loss_params_read_the_same_settings_from_dino_object_that_the_loss_uses():
    cfg = Config().with_overrides(TINY + ["dino.teacher_temp_warmup_steps=2", "dino.warmup_teacher_temp=0.02"])
    ours = DINOLoss.from_config(cfg)
    ours.center.fill_(0.5)
    p = loss_params(ours, step=1)
    assert p["teacher_temp"] == ours.teacher_temp(1) and p["centering"] == "mean"
    ours.center.fill_(0.0)
    assert p["center"].sum() == 0.5 * cfg.dino.out_dim  # a copy: later moves of the centre do not change it
    from lightly.loss import DINOLoss as LightlyLoss

    lightly = LightlyLoss(output_dim=8, warmup_teacher_temp=0.01, teacher_temp=0.05, warmup_teacher_temp_epochs=3)
    assert loss_params(lightly, epoch=1)["teacher_temp"] == pytest.approx(0.03)  # linspace(0.01, 0.05, 3)[1]
    assert loss_params(lightly, epoch=7)["teacher_temp"] == 0.05  # after the warm-up
    assert loss_params(lightly, epoch=0)["center"].shape == (1, 1, 8)
    with pytest.raises(ValueError, match="step="):
        loss_params(ours)


@pytest.mark.parametrize("norm_pix", [False, True])
def test_monitor_mae_logs_what_our_mae_step_logged(tmp_path, monkeypatch, norm_pix):
    captured = {}
    parts = MAE.forward_parts

    def spy(self, imgs, g, mask_ratio=None, **kw):
        loss, pred, mask, pre = parts(self, imgs, g, mask_ratio, **kw)
        from core.patches import pixel_targets

        if torch.is_grad_enabled():  # a training step (the probe runs without gradients)
            captured[len(captured)] = (pred.detach().clone(), pixel_targets(imgs, self.patch_size, norm_pix),
                                       mask.clone(), imgs.clone())
        return loss, pred, mask, pre

    monkeypatch.setattr(MAE, "forward_parts", spy)
    cfg = Config().with_overrides(TINY + [f"mae.norm_pix_loss={str(norm_pix).lower()}", f"run.runs_dir={tmp_path}",
                                          "run.name=ours", "run.method=mae", "run.eval_every=100"])
    ours = _logged(train(cfg))
    mon = Monitor(tmp_path, "watched", "mae", every=1)
    for i, (pred, target, mask, imgs) in captured.items():
        mon.mae(i + 1, pred, target, mask, images=imgs, norm_pix_loss=norm_pix)
    mon.close()
    theirs = _logged(tmp_path / "watched")
    _assert_same(ours, theirs, {"mae/loss", "mae/psnr_masked"}, [1, 2])


def test_monitor_jepa_logs_what_our_ijepa_step_logged(tmp_path, monkeypatch):
    captured = {}
    parts = IJEPA.forward_parts

    def spy(self, imgs, masks):
        out = parts(self, imgs, masks)
        if torch.is_grad_enabled():  # a training step (the probe runs without gradients)
            captured[len(captured)] = (out[1].detach().clone(), out[2].detach().clone())
        return out

    monkeypatch.setattr(IJEPA, "forward_parts", spy)
    cfg = Config().with_overrides(TINY + [f"run.runs_dir={tmp_path}", "run.name=ours", "run.method=ijepa"])
    ours = _logged(train(cfg))
    mon = Monitor(tmp_path, "watched", "ijepa", every=1)
    for i, (pred, target) in captured.items():
        mon.jepa(i + 1, pred, target, loss=cfg.ijepa.loss)
    mon.close()
    _assert_same(ours, _logged(tmp_path / "watched"), {"ijepa/loss", "ijepa/target_std", "ijepa/pred_std"}, [1, 2])


class _Ops(TorchDispatchMode):
    """Records every aten operator that runs."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def _inputs(device: str = "cpu") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g).to(device)  # noqa: E731
    return {"t": [r(4, 8), r(4, 8)], "s": [r(4, 8) for _ in range(3)], "c": r(1, 8), "z": r(4, 6),
            "patches": r(2, 9, 6), "attn": torch.softmax(r(2, 2, 11, 11), -1), "vit": r(2, 11, 6),
            "pred": r(2, 4, 48), "target": r(2, 4, 48), "mask": (r(2, 4) > 0).float(), "f": r(8, 6), "loss": r(())}


def _call_all(mon: Monitor, step: int, x: dict[str, torch.Tensor]) -> None:
    mon.dino(step, x["t"], x["s"], teacher_temp=0.04, center=x["c"], center_momentum=0.9)
    mon.embeddings(step, x["z"])
    mon.tokens(step, x["patches"], attn=x["attn"], num_registers=1)
    mon.vit_tokens(step, x["vit"], num_registers=1)
    mon.mae(step, x["pred"], x["target"], x["mask"])
    mon.jepa(step, x["pred"], x["target"])
    mon.scalars(step, {"train/loss": x["loss"], "opt/lr": 0.1})


def _all_calls(mon: Monitor, step: int, device: str = "cpu") -> None:
    _call_all(mon, step, _inputs(device))


def test_skipped_steps_run_no_operator_and_copy_nothing_to_the_host(tmp_path):
    mon = Monitor(tmp_path, "skip", every=10)
    x = _inputs()
    with _Ops() as inside:
        _call_all(mon, 3, x)
    assert inside.ops == []  # not one operator inside the monitor on a skipped step
    with _Ops() as logged:
        _call_all(mon, 20, x)
    assert any("svd" in op for op in logged.ops)  # the check above can fail: a logged step computes
    # tensors without data (meta) pass a skipped step, so nothing reads their values there ...
    _all_calls(mon, 7, device="meta")
    with pytest.raises((RuntimeError, NotImplementedError)):  # ... while a logged step must copy them to the host
        _all_calls(mon, 10, device="meta")
    mon.close()
    cols, _ = read_scalars(tmp_path / "skip")
    assert set(cols["step"].tolist()) == {20}


def test_every_name_the_monitor_logs_is_declared(tmp_path):
    mon = Monitor(tmp_path, "names", every=1)
    _all_calls(mon, 1)
    mon.close()
    cols, _ = read_scalars(tmp_path / "names")
    names = set(cols["name"].tolist())
    assert names <= set(METRICS), sorted(names - set(METRICS))
    assert {"dino/teacher_entropy", "tokens/register_attn_share", "mae/psnr_masked", "ijepa/target_std"} <= names


def test_concatenated_official_layout_equals_per_view_lists(tmp_path):
    g = torch.Generator().manual_seed(1)
    t, s = torch.randn(2 * 4, 8, generator=g), torch.randn(4 * 4, 8, generator=g)
    c = torch.randn(1, 8, generator=g)
    mon = Monitor(tmp_path, "cat", every=1)
    mon.dino(1, t, s, teacher_temp=0.05, center=c)
    mon.dino(2, list(t.chunk(2)), list(s.chunk(4)), teacher_temp=0.05, center=c)
    with pytest.raises(ValueError, match="whole views"):
        mon.dino(3, t, s[:-1], teacher_temp=0.05, center=c)
    mon.close()
    v = _logged(tmp_path / "cat")
    names = {n for _, n in v}
    assert len(names) == 9 and all(v[(1, n)] == v[(2, n)] for n in names)
    # hand-checked: the entropy of the centred, sharpened teacher over all its rows
    p = torch.softmax((t - c) / 0.05, -1)
    assert v[(1, "dino/teacher_entropy")] == pytest.approx(float(-(p * p.log()).sum(-1).mean()), abs=1e-6)
    assert v[(1, "dino/log_k")] == pytest.approx(math.log(8))


def test_only_rank_zero_writes_and_other_ranks_do_nothing(tmp_path):
    mon = Monitor(tmp_path / "runs", "r1", rank=1, every=1)
    _all_calls(mon, 1)
    mon.probe(1, torch.zeros(2, 3, 8, 8))
    mon.checkpoint(1, {"w": torch.ones(2)})
    mon.close()
    assert mon.run_dir is None and not (tmp_path / "runs").exists()


def _ddp_worker(rank: int, world: int, init: str, root: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        mon = Monitor(root, "ddp", every=1)  # the rank comes from the process group
        for step in (1, 2, 3):
            t = [torch.randn(4, 8) + rank for _ in range(2)]
            # Sinkhorn on rank 0 alone: a collective here would hang, the other rank never joins it
            mon.dino(step, t, t + [torch.randn(4, 8)], teacher_temp=0.05, centering="sinkhorn")
            mon.scalars(step, {"train/loss": float(rank + 1)})
            dist.barrier()
        mon.close()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_one_run_written_by_rank_zero(tmp_path):
    import torch.multiprocessing as mp

    mp.start_processes(_ddp_worker, args=(2, f"file://{tmp_path}/pg", str(tmp_path / "runs")), nprocs=2,
                       start_method="spawn", join=True)
    runs = list_runs(tmp_path / "runs")
    assert [r["run_id"] for r in runs] == ["ddp"] and runs[0]["status"] == "finished"
    v = _logged(tmp_path / "runs" / "ddp")
    assert [v[(s, "train/loss")] for s in (1, 2, 3)] == [1.0, 1.0, 1.0]  # rank 0's values, once per step
    cols, _ = read_scalars(tmp_path / "runs" / "ddp", names=["dino/teacher_entropy"])
    assert cols["step"].tolist() == [1, 2, 3]


def test_resume_replaces_rows_from_the_first_new_step_on(tmp_path):
    mon = Monitor(tmp_path, "res", every=2, config={"lr": 0.1})
    for step in (2, 4, 6):
        mon.scalars(step, {"train/loss": float(step)})
    mon.close("stopped", "preempted")
    with pytest.raises(StoreError, match="resume=True"):
        Monitor(tmp_path, "res")
    mon = Monitor(tmp_path, "res", every=2, resume=True)
    assert read_run_info(tmp_path / "res")["status"] == "running"
    for step in (4, 6, 8):
        mon.scalars(step, {"train/loss": 10.0 * step})
    mon.close()
    cols, _ = read_scalars(tmp_path / "res")
    assert list(zip(cols["step"].tolist(), cols["value"].tolist())) == [(2, 2.0), (4, 40.0), (6, 60.0), (8, 80.0)]
    info = read_run_info(tmp_path / "res")
    assert info["status"] == "finished" and info["config"]["external"] == {"lr": 0.1}


def test_context_manager_records_how_the_loop_ended(tmp_path):
    with pytest.raises(RuntimeError), Monitor(tmp_path, "boom") as mon:
        mon.scalars(10, {"train/loss": 1.0})
        raise RuntimeError("CUDA out of memory")
    info = read_run_info(tmp_path / "boom")
    assert info["status"] == "failed" and info["reason"] == "RuntimeError: CUDA out of memory"
    with Monitor(tmp_path, "ok"):
        pass
    assert read_run_info(tmp_path / "ok")["status"] == "finished"


def test_bad_arguments_get_one_clear_line(tmp_path):
    with pytest.raises(ValueError, match="every=0"):
        Monitor(tmp_path, "a", every=0)
    with pytest.raises(ValueError, match="folder name"):
        Monitor(tmp_path, "a/b")
    mon = Monitor(tmp_path, "bad", every=1)
    with pytest.raises(ValueError, match="teacher temperature"):
        mon.dino(1, [torch.ones(2, 4)] * 2, [torch.ones(2, 4)] * 2)
    with pytest.raises(ValueError, match="needs the centre"):
        mon.dino(1, [torch.ones(2, 4)] * 2, [torch.ones(2, 4)] * 2, teacher_temp=0.1, centering="mean")
    with pytest.raises(ValueError, match="'train/loss' is 'high'"):
        mon.scalars(1, {"train/loss": "high"})
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        mon.embeddings(1, torch.ones(4))
    with pytest.raises(ValueError, match="uint8"):
        mon.probe(1, np.zeros((2, 8, 8, 3), np.float32))
    mon.close()


def test_a_store_that_fails_stops_the_logging_not_the_training(tmp_path, monkeypatch, capsys):
    mon = Monitor(tmp_path, "full", every=1)
    mon.scalars(1, {"train/loss": 1.0})

    def full(*_a, **_k):
        raise StoreWriteError("cannot write metrics (No space left on device); free some space")

    monkeypatch.setattr(type(mon.writer), "log_scalars", full)
    mon.scalars(2, {"train/loss": 2.0})  # no exception into the training loop
    mon.scalars(3, {"train/loss": 3.0})
    assert capsys.readouterr().err.count("stops logging") == 1
    info = read_run_info(tmp_path / "full")
    assert info["status"] == "failed" and "No space left" in info["reason"]
    assert not mon.due(4)


def test_probe_and_checkpoint_are_what_the_dashboard_and_the_store_read(tmp_path):
    from core.probes import read_probe
    from trainer.store import list_checkpoints, load_checkpoint, load_probe

    mon = Monitor(tmp_path, "pc", every=5)
    images = torch.zeros(2, 3, 8, 8)
    mon.probe(3, images, attention=torch.rand(2, 2, 4, 4), mask=torch.ones(2, 4, 4), embeddings=torch.ones(2, 5))
    mon.checkpoint(3, {"backbone.w": torch.arange(4.0), "epoch": 3}, prefix="backbone.")
    mon.close()
    probe = read_probe(load_probe(tmp_path / "pc", 3))
    assert [e.name for e in probe.drawn()] == ["original", "attn", "mask"]
    assert probe.arrays["original"].dtype == np.uint8 and probe.arrays["attn"].shape == (2, 2, 4, 4)
    (ck,) = list_checkpoints(tmp_path / "pc")
    assert ck.step == 3 and ck.meta["encoder_prefix"] == "backbone."
    assert torch.equal(load_checkpoint(ck.path)["backbone.w"], torch.arange(4.0))


def test_flat_config_keeps_any_trainer_config_as_json():
    import argparse
    from pathlib import Path

    ns = argparse.Namespace(lr=0.1, output_dir=Path("/x"), crops=(0.4, 1.0), opt={"name": "adamw", "betas": [0.9]},
                            nan=float("nan"))
    assert flat_config(ns) == {"lr": 0.1, "output_dir": "/x", "crops": [0.4, 1.0], "opt.name": "adamw",
                               "opt.betas": [0.9], "nan": "nan"}


def test_statistics_are_full_precision_under_the_callers_autocast(tmp_path):
    z = torch.randn(64, 32, generator=torch.Generator().manual_seed(3))
    mon = Monitor(tmp_path, "amp", every=1)
    mon.embeddings(1, z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mon.embeddings(2, z)
        rounded = float((z @ z.T).float().sum())  # what a bf16 matmul would have given
    mon.close()
    v = _logged(tmp_path / "amp")
    assert rounded != float((z @ z.T).sum())  # autocast is on: the check below can fail
    for name in ("collapse/mean_cosine", "collapse/std_l2", "collapse/rankme"):
        assert v[(1, name)] == v[(2, name)], name


def test_after_resume_a_probe_first_is_kept_and_the_old_tail_cut(tmp_path):
    from trainer.store import list_probes

    mon = Monitor(tmp_path, "rp", every=1)
    for step in (1, 2, 3):
        mon.scalars(step, {"train/loss": 1.0})
        mon.probe(step, torch.zeros(1, 3, 4, 4))
    mon.close()
    mon = Monitor(tmp_path, "rp", every=1, resume=True)
    mon.probe(2, torch.zeros(1, 3, 4, 4))
    mon.scalars(2, {"train/loss": 5.0})
    mon.close()
    assert list_probes(tmp_path / "rp") == [1, 2]
    cols, _ = read_scalars(tmp_path / "rp")
    assert list(zip(cols["step"].tolist(), cols["value"].tolist())) == [(1, 1.0), (2, 5.0)]
