"""MAE as a module: what the encoder sees, what the loss scores, and the pixel maths, checked
against hand-worked values."""

import math

import pytest
import torch

from trainer.config import Config, ConfigError
from trainer.data import Batch
from trainer.data.datasets import MEAN, STD, normalize
from trainer.data.masking import random_masking, step_generator
from trainer.methods import build_method
from trainer.methods.mae import masked_mse, patchify, pixel_targets, psnr_masked, unpatchify
from trainer.models.mae_decoder import MAEDecoder


def _cfg(**over):
    cfg = Config().with_overrides([
        "run.method=mae", "model.preset=custom", "model.embed_dim=32", "model.depth=2", "model.num_heads=2",
        "model.patch_size=4", "data.image_size=16", "mae.decoder_dim=16", "mae.decoder_depth=1",
        "mae.decoder_heads=2", "optim.steps=10", "optim.warmup_steps=0",
    ] + [f"{k}={v}" for k, v in over.items()])
    return cfg.validate()


@pytest.mark.parametrize("reg_tokens", [0, 3])
@pytest.mark.parametrize("ratio", [0.25, 0.75, 0.9])
def test_encoder_sequence_is_visible_patches_plus_prefix(reg_tokens, ratio):
    m = build_method(_cfg(**{"model.reg_tokens": reg_tokens, "mae.mask_ratio": ratio}))
    seen = []
    m.encoder().blocks[0].register_forward_pre_hook(lambda _mod, args: seen.append(args[0].shape[1]))
    m(Batch([torch.randn(3, 3, 16, 16)], torch.zeros(3, dtype=torch.long)), it=0)
    n = 16  # (16 / 4) ** 2 patches
    assert seen == [1 + reg_tokens + n - round(ratio * n)]


def test_changing_the_prediction_at_a_visible_patch_leaves_the_loss_unchanged():
    torch.manual_seed(0)
    pred, target = torch.randn(2, 6, 12), torch.randn(2, 6, 12)
    mask = torch.tensor([[1, 0, 1, 1, 0, 1], [0, 1, 1, 0, 1, 1]], dtype=torch.float)
    base = masked_mse(pred, target, mask)
    moved = pred.clone()
    moved[0, 1] += 100.0  # visible
    moved[1, 3] -= 50.0  # visible
    assert masked_mse(moved, target, mask) == base
    moved[0, 2] += 1.0  # masked
    assert masked_mse(moved, target, mask) != base


def test_masked_mse_equals_hand_computed_value():
    pred = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]])
    target = torch.tensor([[[1.0, 1.0], [1.0, 3.0], [0.0, 0.0]]])
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    # per-patch mean squared errors 1, 2, 4; masked patches 0 and 2 -> (1 + 4) / 2
    assert masked_mse(pred, target, mask).item() == pytest.approx(2.5)


def test_norm_pix_targets_have_zero_mean_and_unit_variance_per_patch():
    torch.manual_seed(1)
    imgs = torch.randn(3, 3, 16, 16) * 2.0 + 0.7
    t = pixel_targets(imgs, 4, norm_pix_loss=True)  # (3, 16, 48)
    assert t.mean(dim=-1).abs().max() < 1e-5
    assert (t.var(dim=-1) - 1).abs().max() < 1e-4
    raw = pixel_targets(imgs, 4, norm_pix_loss=False)
    assert torch.equal(raw, patchify(imgs, 4))


def test_patchify_layout_and_roundtrip():
    imgs = torch.arange(2 * 3 * 8 * 8, dtype=torch.float).reshape(2, 3, 8, 8)
    x = patchify(imgs, 4)  # (2, 4, 48)
    # patch 1 is the top-right 4x4 square, pixels in (row, col, channel) order
    assert torch.equal(x[1, 1], imgs[1, :, 0:4, 4:8].permute(1, 2, 0).reshape(-1))
    assert torch.equal(unpatchify(x, 4), imgs)


def test_psnr_masked_equals_hand_value():
    # error of 0.1 in [0, 1] pixel units on the masked patch, huge error on the visible one
    unit = torch.full((1, 3, 8, 8), 0.5)
    imgs = (unit - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    pred = patchify(imgs, 4).clone()  # (1, 4, 48)
    std = torch.tensor(STD).repeat(16)
    pred[0, 2] += 0.1 / std  # 0.1 in pixel units for every value of patch 2
    pred[0, 0] += 3.0
    mask = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    assert psnr_masked(pred, imgs, mask, 4).item() == pytest.approx(10 * math.log10(1 / 0.01), abs=1e-3)


def test_decoder_puts_visible_tokens_and_mask_tokens_at_their_raster_places():
    torch.manual_seed(2)
    dec = MAEDecoder(embed_dim=8, decoder_dim=8, depth=1, num_heads=2, grid=3, patch_size=1, num_prefix=2, in_chans=8)
    # strip everything but the unshuffle: identity maps, no blocks, no positions
    dec.decoder_embed = dec.decoder_norm = dec.decoder_pred = torch.nn.Identity()
    dec.decoder_blocks = torch.nn.ModuleList()
    dec.decoder_pos_embed.zero_()
    with torch.no_grad():
        dec.mask_token.fill_(-7.0)
    ids_keep, ids_restore, mask = random_masking(4, 9, 0.5, step_generator(0, 0))
    latent = torch.randn(4, 2 + ids_keep.shape[1], 8)
    out = dec(latent, ids_restore)  # (4, 9, 8)
    for b in range(4):
        for j, pos in enumerate(ids_keep[b].tolist()):
            assert torch.equal(out[b, pos], latent[b, 2 + j])
    assert (out[mask == 1] == -7.0).all()


def test_forward_loss_uses_the_step_masks_and_every_parameter_learns():
    torch.manual_seed(3)
    m = build_method(_cfg(**{"model.reg_tokens": 2, "run.seed": 4}))
    imgs = torch.randn(4, 3, 16, 16)
    out = m(Batch([imgs], torch.zeros(4, dtype=torch.long)), it=6)
    again = m.forward_parts(imgs, step_generator(4, 6))[0]
    other = m.forward_parts(imgs, step_generator(4, 7))[0]
    assert out.loss.item() == pytest.approx(again.item(), rel=1e-6) and out.loss.item() != pytest.approx(other.item())
    out.loss.backward()
    dead = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert dead == []
    names = {"mae/loss", "mae/psnr_masked", "collapse/std_l2", "collapse/rankme", "collapse/mean_cosine"}
    assert set(out.stats) >= names
    # encoder_prefix names exactly the encoder's weights in the method's state dict
    prefixed = {k[len(m.encoder_prefix):]: v for k, v in m.state_dict().items() if k.startswith(m.encoder_prefix)}
    assert m.encoder_prefix == "encoder." and prefixed.keys() == m.encoder().state_dict().keys()


@pytest.mark.parametrize("norm_pix", [False, True])
def test_probe_pastes_visible_pixels_and_masks_round_ratio_n(norm_pix):
    m = build_method(_cfg(**{"mae.norm_pix_loss": norm_pix}))
    raw = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)
    arrays, stats = m.probe(normalize(raw.numpy()))
    assert (arrays["mask"].reshape(3, -1).sum(1) == 12).all()  # round(0.75 * 16)
    visible = ~torch.from_numpy(arrays["mask"]).bool().repeat_interleave(4, 1).repeat_interleave(4, 2)  # (3, 16, 16)
    orig, pasted = torch.from_numpy(arrays["original"]), torch.from_numpy(arrays["reconstruction_pasted"])
    assert torch.equal(orig, raw)
    assert torch.equal(pasted[visible], orig[visible])
    assert not torch.equal(pasted[~visible], orig[~visible])
    assert math.isfinite(stats["mae/psnr_masked_probe"])
    again, _ = m.probe(normalize(raw.numpy()))
    assert (again["mask"] == arrays["mask"]).all()  # one fixed probe mask


def test_bad_decoder_width_is_refused_clearly():
    with pytest.raises(ConfigError, match="mae.decoder_dim=18"):
        build_method(_cfg(**{"mae.decoder_dim": 18}))


def test_collapse_stats_read_the_pooled_feature_that_knn_reads():
    """MAE declares ``feature = "pooled"``: its collapse/* are computed on the pooled visible
    tokens (norm of their mean, as core.features pools for the k-NN), no longer on [CLS]."""
    from core.collapse import rankme, std_l2
    from core.features import pooled
    from trainer.models.backbone import forward_masked

    torch.manual_seed(5)
    m = build_method(_cfg(**{"run.seed": 2}))
    imgs = torch.randn(8, 3, 16, 16)
    out = m(Batch([imgs], torch.zeros(8, dtype=torch.long)), it=3)
    ids_keep = random_masking(8, 16, m.cfg.mae.mask_ratio, step_generator(2, 3))[0]
    with torch.no_grad():
        pre = forward_masked(m.encoder(), imgs, ids_keep, norm=False)
        z = pooled(m.encoder(), pre)
        cls = m.encoder().norm(pre[:, 0])
    assert m.feature == "pooled"
    assert out.stats["collapse/rankme"].item() == pytest.approx(rankme(z).item(), rel=1e-5)
    assert out.stats["collapse/std_l2"].item() == pytest.approx(std_l2(z).item(), rel=1e-5)
    assert out.stats["collapse/std_l2"].item() != pytest.approx(std_l2(cls).item(), rel=1e-3)  # the old [CLS]
