"""Several processes through torchrun (Gloo on CPU): one run folder, written by rank 0 only, and
the same run as one process on the same global batch."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from trainer.store import list_checkpoints, load_checkpoint, read_metric, read_run_info

pytestmark = pytest.mark.slow


def test_torchrun_two_processes_train_one_run(tmp_path):
    sets = ["model.preset=custom", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "data.image_size=16",
            "data.num_train=256", "data.num_val=64", "data.batch_size=8", "data.num_workers=0", "dino.out_dim=16",
            "dino.n_local=2", "run.log_every=2", "run.eval_every=10", "run.ckpt_every=5"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "trainer",
           "train", "--steps", "10", "--runs-dir", str(tmp_path), "--name", "ddp", "--device", "cpu"]
    cmd += [x for s in sets for x in ("--set", s)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]
    assert read_run_info(tmp_path / "ddp")["status"] == "finished"
    steps, loss = read_metric(tmp_path / "ddp", "train/loss")
    assert steps.tolist() == [2, 4, 6, 8, 10]  # one writer: no duplicated rows
    ck = load_checkpoint(list_checkpoints(tmp_path / "ddp")[-1].path)
    # the EMA teacher followed the (all-reduced) student: not still at its initialisation
    first = load_checkpoint(list_checkpoints(tmp_path / "ddp")[0].path)
    assert not torch.equal(ck["teacher.backbone.cls_token"], first["teacher.backbone.cls_token"]) or \
        not torch.equal(ck["loss.center"], first["loss.center"])


# 2 ranks x 8 images against 1 process x 16: the same global batch, so the same run
EQUAL = ["model.preset=custom", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.patch_size=4",
         "data.image_size=16", "data.num_train=64", "data.num_val=16", "data.num_workers=0",
         "dino.out_dim=16", "dino.hidden_dim=32", "dino.bottleneck_dim=16", "dino.n_local=2",
         "mae.decoder_dim=16", "mae.decoder_depth=1", "mae.decoder_heads=2", "ijepa.pred_dim=16",
         "ijepa.pred_depth=1", "optim.warmup_steps=1", "optim.steps=4", "dino.freeze_last_layer_steps=1",
         "run.log_every=1", "run.eval_every=100", "run.ckpt_every=100", "run.probe_size=2", "run.device=cpu"]


def _one_thread_train(cfg):
    from trainer.loop import train

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun rank runs: sums in one order
    try:
        return train(cfg)
    finally:
        torch.set_num_threads(n)


@pytest.mark.parametrize("method,extra,weights_tol", [
    ("dino", [], 1e-5),  # mean centre, KoLeo on (its nearest neighbours over the global batch)
    # iBOT masks drawn for the global batch (each rank its rows), the patch centre over every
    # rank's masked tokens; Gram anchoring on from step 2 against the copy taken after step 1
    ("dino", ["dino.ibot_weight=1", "dino.gram_weight=1", "dino.gram_teacher_step=1", "dino.gram_start=2",
              "dino.gram_ramp_steps=1"], 1e-5),
    # MAE: 1.4e-5 after 4 steps, at the decoder's qkv bias: the key bias has a zero gradient in
    # exact arithmetic (softmax ignores a constant per query), so its gradient is rounding noise,
    # which Adam scales up to ~lr per step; the loss agrees to 1e-5. Documented tolerance 5e-5
    ("mae", [], 5e-5),
    ("ijepa", [], 1e-5),  # KoLeo regulariser on, over the global batch
])
def test_two_ranks_of_8_train_what_one_process_of_16_trains(tmp_path, method, extra, weights_tol):
    from trainer.config import Config

    sets = EQUAL + [f"run.method={method}", *extra]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "trainer",
           "train", "--runs-dir", str(tmp_path), "--name", "ddp", "--set", "data.batch_size=8"]
    cmd += [x for s in sets for x in ("--set", s)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-2000:]
    one = _one_thread_train(Config().with_overrides(sets + ["data.batch_size=16", f"run.runs_dir={tmp_path}",
                                                            "run.name=one"]))
    ddp = tmp_path / "ddp"
    # the loss to 1e-5; the gradient norm (10 to 4000 here) to 1e-5 of itself
    for name, atol, rtol in (("train/loss", 1e-5, 0), ("grad/norm", 0, 1e-5)):
        (s1, v1), (s2, v2) = read_metric(one, name), read_metric(ddp, name)
        assert s1.tolist() == s2.tolist() == [1, 2, 3, 4]
        np.testing.assert_allclose(v2, v1, rtol=rtol, atol=atol, err_msg=name)
    # the k-NN, each rank extracting half of the bank's and the queries' features, gathered
    (s1, v1), (s2, v2) = read_metric(one, "eval/knn_top1"), read_metric(ddp, "eval/knn_top1")
    assert s1.tolist() == s2.tolist() == [0, 4]
    np.testing.assert_allclose(v2, v1, atol=1e-6, err_msg="eval/knn_top1")
    a, b = (load_checkpoint(list_checkpoints(d)[-1].path) for d in (one, ddp))
    assert a.keys() == b.keys()
    if method == "dino":
        assert "loss.center" in a and a["loss.center"].abs().sum() > 0  # the centre moved, equally
    gap = {k: (a[k] - b[k]).abs().max().item() for k in a if a[k].is_floating_point()}
    worst = max(gap, key=gap.get)
    assert gap[worst] <= weights_tol, f"weights {gap[worst]:.2e} apart at {worst}"


def _knn_rank(rank: int, world: int, store: str, out: str) -> None:
    """One rank of the sharded k-NN: its score, and how many images its own encoder pass saw."""
    import json

    import torch.distributed as dist

    import trainer.evaluate as ev
    from tests.trainer.test_cuda_paths import _cfg
    from trainer.methods import build_method

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        seen, real = [], ev.encode
        ev.encode = lambda enc, images, *a, **k: (seen.append(len(images)), real(enc, images, *a, **k))[1]
        torch.manual_seed(0)
        vit = build_method(_cfg("dino")).encoder()
        g = torch.Generator().manual_seed(3)
        bank, query = torch.randn(41, 3, 16, 16, generator=g), torch.randn(13, 3, 16, 16, generator=g)
        bl, ql = torch.arange(41) % 4, torch.arange(13) % 4
        bl[5] = -1  # an unlabelled bank image: left out before the bank is split
        top1 = ev.knn_eval(vit, bank, bl, query, ql, torch.device("cpu"), 5, 0.07)
        feats = ev.encode_sharded(vit, bank, torch.device("cpu"))
        torch.save(feats, f"{out}/feats{rank}.pt")
        with open(f"{out}/rank{rank}.json", "w") as f:
            json.dump({"top1": top1, "seen": seen}, f)
    finally:
        dist.destroy_process_group()


def test_the_knn_of_two_ranks_is_one_process_knn_with_each_rank_extracting_half(tmp_path):
    """Sharded k-NN evaluation: each of 2 ranks extracts the features of its half of the bank
    (40 labelled: 20 + 20) and of the queries (13: 7 + 6); gathered, they are one process's
    features, row for row, and the top-1 equals one process's on every rank."""
    import json

    import torch.multiprocessing as mp

    from tests.trainer.test_cuda_paths import _cfg
    from trainer.evaluate import encode, knn_eval
    from trainer.methods import build_method

    mp.spawn(_knn_rank, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    torch.manual_seed(0)
    vit = build_method(_cfg("dino")).encoder()
    g = torch.Generator().manual_seed(3)
    bank, query = torch.randn(41, 3, 16, 16, generator=g), torch.randn(13, 3, 16, 16, generator=g)
    bl, ql = torch.arange(41) % 4, torch.arange(13) % 4
    bl[5] = -1
    one = knn_eval(vit, bank, bl, query, ql, torch.device("cpu"), 5, 0.07)
    assert [r["seen"] for r in ranks] == [[20, 7, 21], [20, 6, 20]]  # k-NN bank, queries, then all 41
    assert ranks[0]["top1"] == ranks[1]["top1"] == pytest.approx(one, abs=1e-9) and 0 < one < 1
    ref = encode(vit, bank, torch.device("cpu"))
    for r in range(2):
        torch.testing.assert_close(torch.load(tmp_path / f"feats{r}.pt"), ref, atol=1e-6, rtol=0)
