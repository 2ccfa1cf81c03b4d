"""MAE and I-JEPA end to end on CPU, through the real loop and store.

- MAE's masked-patch loss on held-out images ends well below that of filling each masked patch
  with a flat mean colour: the dataset's mean colour at that patch, or the mean colour of the
  image's visible patches. The oracle that is given each hidden patch's own mean colour is
  beaten where it makes its error (the variation around that mean: edges, texture), not in
  total: MAE must infer the means it is given (docs/architecture.md).
- I-JEPA without EMA (the target is the context encoder under stop-gradient, no regulariser)
  collapses: RankMe of the target features and the target std fall, while the same run with EMA
  keeps them, and so does the default run (EMA and KoLeo).
- Both resume exactly (masks are redrawn from (seed, step); the EMA target is checkpointed).
- Each method's online k-NN (average-pooled patch tokens, 1,000 queries) ends clearly above the
  same backbone at random initialisation (step 0 of the same run).
"""

import shutil

import numpy as np
import pytest
import torch

from tests.trainer.knn_lift import assert_knn_lift
from trainer.config import Config
from trainer.data import build_dataset, eval_tensor
from trainer.data.masking import step_generator
from trainer.loading import load_method
from trainer.loop import resume, train
from trainer.methods.mae import masked_mse, pixel_targets
from trainer.store import list_checkpoints, load_checkpoint, read_metric

# A small ViT (width 64, 3 blocks) on 32 px shapes (an 8 x 8 patch grid: 16 patches visible to
# MAE; room for I-JEPA's 4 target blocks beside a context). Sections mae / ijepa keep their defaults.
SMALL = ["model.preset=custom", "model.embed_dim=64", "model.depth=3", "model.num_heads=2", "data.image_size=32",
         "data.batch_size=64", "data.num_val=1000", "data.num_workers=0", "run.log_every=10"]
MAE = SMALL + ["run.method=mae", "optim.steps=1000", "run.eval_every=500", "run.ckpt_every=1000"]
IJEPA = SMALL + ["run.method=ijepa", "optim.steps=500", "run.eval_every=250", "run.ckpt_every=500"]
IJEPA_SHORT = SMALL + ["run.method=ijepa", "optim.steps=250", "run.eval_every=250", "run.ckpt_every=250",
                       "ijepa.reg=none"]  # the paper's I-JEPA: nothing but the EMA against collapse


def _final(run_dir, name, last=3):
    """Mean of the last ``last`` logged values (damps step-to-step noise)."""
    return float(np.mean(read_metric(run_dir, name)[1][-last:]))


def _first(run_dir, name, first=3):
    return float(np.mean(read_metric(run_dir, name)[1][:first]))


def _train(root, name, overrides):
    return train(Config().with_overrides(overrides + [f"run.runs_dir={root}", f"run.name={name}"]))


@pytest.fixture(scope="module")
def mae_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("mae"), "mae", MAE)


@pytest.fixture(scope="module")
def ijepa_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ijepa")
    return {"ijepa": _train(root, "ijepa", IJEPA),
            "ijepa-no-reg": _train(root, "ijepa-no-reg", IJEPA_SHORT),
            "ijepa-no-ema": _train(root, "ijepa-no-ema", IJEPA_SHORT + ["ijepa.ema=false"])}


def _held_out_losses(run_dir):
    """Masked-patch loss of the trained MAE on 500 held-out images, its two parts (mean colour,
    variation around it) and the loss of three flat-colour predictors under the same masks, all
    in the loss's own target space."""
    method, cfg, _ = load_method(run_dir)
    val = build_dataset(cfg.data, "val", cfg.run.seed)
    imgs = eval_tensor(val)[:500]
    train_imgs = eval_tensor(build_dataset(cfg.data, "train", cfg.run.seed))
    p = method.patch_size
    with torch.no_grad():
        loss, pred, mask, _ = method.forward_parts(imgs, step_generator(cfg.run.seed, 10_000))
        target = pixel_targets(imgs, p, cfg.mae.norm_pix_loss)  # (N, L, p*p*3), what the loss scores
        colours = target.reshape(*target.shape[:2], p * p, 3)  # (N, L, pixels, RGB)
        visible = (1 - mask)[..., None, None]
        visible_mean = (colours * visible).sum(dim=(1, 2), keepdim=True) / (visible.sum(dim=1, keepdim=True) * p * p)
        train_t = pixel_targets(train_imgs, p, cfg.mae.norm_pix_loss)
        dataset_mean = train_t.reshape(*train_t.shape[:2], p * p, 3).mean(dim=(0, 2), keepdim=True)  # (1, L, 1, 3)

        def part(a, b):  # masked MSE of a against b, each broadcastable to (N, L, pixels, 3)
            return float(masked_mse(*(x.expand_as(colours).reshape(target.shape) for x in (a, b)), mask))

        def flat(c):  # a flat colour per patch, (N or 1, L or 1, 1, 3) -> loss
            return part(c, colours)

        # MAE's error per patch = the error of its mean colour + the error of its variation around
        # that mean (orthogonal parts). The oracle is given the true mean and predicts no
        # variation, so its error is the truth's within-patch variation alone.
        own_mean = colours.mean(dim=2, keepdim=True)  # (N, L, 1, 3)
        pred_colours = pred.float().reshape(colours.shape)
        pred_mean = pred_colours.mean(dim=2, keepdim=True)

        return {"mae": float(loss), "dataset mean at the patch": flat(dataset_mean),
                "visible mean": flat(visible_mean), "own mean (oracle)": flat(own_mean),
                "mae's mean-colour error": part(pred_mean, own_mean),
                "mae's error around the mean": part(pred_colours - pred_mean, colours - own_mean)}


@pytest.mark.slow
def test_mae_masked_loss_falls_well_below_a_flat_colour_per_patch(mae_run):
    f = _held_out_losses(mae_run)
    psnr = read_metric(mae_run, "mae/psnr_masked")[1]
    print("\nMAE held-out masked loss " + ", ".join(f"{k} {v:.4f}" for k, v in f.items())
          + f"; train PSNR {psnr[0]:.1f} -> {psnr[-1]:.1f} dB")
    assert f["mae"] < 0.75 * f["dataset mean at the patch"]
    assert f["mae"] < 0.5 * f["visible mean"]
    assert abs(f["mae's mean-colour error"] + f["mae's error around the mean"] - f["mae"]) < 1e-3 * f["mae"]
    # the oracle is given each hidden patch's mean colour and fills it flat; around the mean MAE's
    # predicted detail (object edges, texture) beats that flat fill: it reconstructs shapes, not
    # just colours. Its total stays above the oracle's: it must infer every mean (docs/architecture.md)
    assert f["mae's error around the mean"] < 0.9 * f["own mean (oracle)"]
    assert _final(mae_run, "mae/loss") < 0.5 * _first(mae_run, "mae/loss")


@pytest.mark.slow
def test_mae_knn_ends_clearly_above_random_init(mae_run):
    assert_knn_lift(mae_run, "MAE (1,000 steps)")


@pytest.mark.slow
def test_ijepa_knn_ends_clearly_above_random_init(ijepa_runs):
    assert_knn_lift(ijepa_runs["ijepa"], "I-JEPA (500 steps)")


@pytest.mark.slow
def test_ijepa_without_ema_collapses_while_with_ema_it_does_not(ijepa_runs):
    fig = {}
    for arm in ("ijepa", "ijepa-no-reg", "ijepa-no-ema"):
        rd = ijepa_runs[arm]
        fig[arm] = {n: (_first(rd, n), _final(rd, n)) for n in
                    ("collapse/rankme", "ijepa/target_std", "collapse/std_l2", "ijepa/loss")}
        print(f"\n{arm:13s} " + " ".join(f"{n.split('/')[1]} {a:.3f}->{b:.3f}" for n, (a, b) in fig[arm].items()))
    on, off = fig["ijepa-no-reg"], fig["ijepa-no-ema"]
    _, rank_off_curve = read_metric(ijepa_runs["ijepa-no-ema"], "collapse/rankme")
    print(f"ijepa-no-ema lowest RankMe {rank_off_curve.min():.2f} at step "
          f"{read_metric(ijepa_runs['ijepa-no-ema'], 'collapse/rankme')[0][rank_off_curve.argmin()]}")
    # without EMA the targets lose most of their effective rank (fastest at the peak learning
    # rate) and their spread over the batch ...
    assert rank_off_curve.min() < 0.45 * off["collapse/rankme"][0]
    assert off["collapse/rankme"][1] < 0.7 * on["collapse/rankme"][1]
    assert off["ijepa/target_std"][1] < min(on["ijepa/target_std"][1], off["ijepa/target_std"][0]) - 0.05
    assert off["ijepa/target_std"][1] < 0.5 * off["ijepa/target_std"][0]  # tokens become alike
    # ... while with EMA (everything else equal) they keep them, as does the default run
    for arm in ("ijepa-no-reg", "ijepa"):
        assert fig[arm]["collapse/rankme"][1] > 0.8 * fig[arm]["collapse/rankme"][0], arm
        assert fig[arm]["ijepa/target_std"][1] > 0.97 * fig[arm]["ijepa/target_std"][0], arm


TINY = ["model.preset=custom", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "data.image_size=32",
        "data.num_train=128", "data.num_val=32", "data.batch_size=8", "data.num_workers=0", "optim.steps=6",
        "optim.warmup_steps=2", "run.log_every=1", "run.eval_every=100", "run.ckpt_every=3", "run.keep_ckpts=0",
        "run.probe_size=2", "mae.decoder_dim=16", "mae.decoder_depth=1", "ijepa.pred_dim=16", "ijepa.pred_depth=1"]


@pytest.mark.parametrize("method", ["mae", "ijepa"])
def test_resume_continues_masks_and_ema_exactly(tmp_path, method):
    ref = _train(tmp_path, "ref", TINY + [f"run.method={method}"])
    # a copy of the run that lost everything after step 3, then resumed
    cut = tmp_path / "cut"
    shutil.copytree(ref, cut)
    for f in (cut / "checkpoints").glob("step_6*"):
        f.unlink()
    assert [c.step for c in list_checkpoints(cut)] == [3]
    resume(cut)
    a = load_checkpoint(list_checkpoints(ref)[-1].path)
    b = load_checkpoint(list_checkpoints(cut)[-1].path)
    assert list_checkpoints(cut)[-1].step == 6 and a.keys() == b.keys()
    if method == "ijepa":
        assert any(k.startswith("target_encoder.") for k in a)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    la, lb = read_metric(ref, "train/loss")[1], read_metric(cut, "train/loss")[1]
    assert len(la) == len(lb) == 6 and np.allclose(la, lb, atol=1e-5)
