"""Figure builders, called directly: values of the smoothing, the reference lines of the
collapse panels, colours, selections and the probe grid."""

from __future__ import annotations

import math

import numpy as np

from core.probes import Probe, ProbeEntry, read_probe
from dashboard import charts


def test_smooth_ema_matches_hand_computed_debiased_values():
    # w = 0.5: acc = 0.5, 1.25, 2.125; debiased by 1 - 0.5^n = 0.5, 0.75, 0.875
    out = charts.smooth_ema(np.array([1.0, 2.0, 3.0]), 0.5)
    np.testing.assert_allclose(out, [1.0, 1.25 / 0.75, 2.125 / 0.875])


def test_smooth_ema_keeps_constants_and_skips_non_finite():
    np.testing.assert_array_equal(charts.smooth_ema(np.full(50, 0.3), 0.99), np.full(50, 0.3))
    out = charts.smooth_ema(np.array([1.0, np.nan, 3.0]), 0.5)
    assert math.isnan(out[1])
    assert np.isclose(out[2], (0.5 * 0.5 + 0.5 * 3.0) / 0.75)  # the NaN is neither averaged nor counted
    np.testing.assert_array_equal(charts.smooth_ema(np.array([4.0, 1.0]), 0.0), [4.0, 1.0])


def _curve(label="a", n=10, color="#123456"):
    return charts.Curve(label, color, np.arange(n), np.linspace(1, 2, n))


def test_collapse_figure_draws_ln_k_and_zero_lines_on_the_entropy_panels():
    log_k = math.log(32)
    fig = charts.collapse_figure({"dino/teacher_entropy": [_curve()], "dino/kl_teacher_student": [_curve()]}, log_k)
    lines = {(round(s.y0, 6), s.yref) for s in fig.layout.shapes}
    # panel 1 (y) and panel 3 (y3, batch entropy) get ln K even without data; panel 1 gets 0
    assert lines == {(round(log_k, 6), "y"), (round(log_k, 6), "y3"), (0.0, "y")}
    # panel titles are the declared labels of the four metrics
    assert [a.text for a in fig.layout.annotations][:4] == ["Teacher entropy (nats)", "KL teacher-student (nats)",
                                                             "Teacher batch entropy (nats)", "Center norm"]


def test_smoothing_adds_a_faint_raw_curve_under_each_smoothed_one():
    fig = charts.family_figure([("loss", [_curve("a"), _curve("b")])], smoothing=0.9)
    assert len(fig.data) == 4
    faint = [t for t in fig.data if t.opacity == 0.25]
    assert [t.name for t in faint] == ["a", "b"]
    np.testing.assert_allclose(fig.data[1].y, charts.smooth_ema(np.linspace(1, 2, 10), 0.9))


def test_run_colours_do_not_change_when_a_run_is_added():
    before = charts.run_colors(["r1", "r2", "r3"])
    after = charts.run_colors(["r1", "r2", "r3", "r4"])
    assert all(before[r] == after[r] for r in before)
    assert len(set(after.values())) == 4


def test_embedding_selection_maps_back_to_row_indices():
    coords = np.array([[0, 0], [1, 1], [2, 2], [3, 3]], float)
    labels = np.array([1, 0, 1, 0])
    fig = charts.embedding_figure(coords, labels, ["disc", "square"])
    assert [t.name for t in fig.data] == ["disc", "square"]
    assert list(fig.data[1].customdata) == [0, 2]
    selection = {"selection": {"points": [{"customdata": [2]}, {"customdata": 1}, {"x": 0}]}}
    assert charts.selected_indices(selection) == [1, 2]
    assert charts.selected_indices(None) == []


def test_heat_map_over_an_image_covers_it_patch_by_patch():
    fig = charts.image_grid_figure([("a", np.zeros((32, 32, 3), np.uint8), np.ones((8, 8)))])
    heat = fig.data[1]
    assert heat.dx == 4 and heat.x0 == 1.5  # centre of the first 4-px patch, pixel centres at 0..31


def test_probe_grid_draws_each_entry_by_its_declared_kind():
    p, img = 3, np.zeros((3, 32, 32, 3), np.uint8)
    layout = (ProbeEntry("original", "image", ("H", "W", "3"), "image"),
              ProbeEntry("attn", "heatmap", ("heads", "h", "w"), "attention"),
              ProbeEntry("blocks", "mask", ("T", "h", "w"), "blocks"),
              ProbeEntry("embeddings", "embedding", ("D",), "emb"))
    blocks = np.zeros((p, 2, 8, 8), np.uint8)
    blocks[:, 0, :2], blocks[:, 1, -1:] = 1, 1
    arrays = {"original": img, "attn": np.random.rand(p, 2, 8, 8), "blocks": blocks, "embeddings": np.zeros((p, 16))}
    fig, skipped = charts.probe_figure(Probe(arrays, layout))
    assert skipped == ["embeddings"]
    assert [a.text for a in fig.layout.annotations if a.text] == ["image", "attention", "blocks"]
    heat = np.asarray(fig.data[2].z)  # mosaic of the 3 attention maps on the 32 px grid, 2 px NaN gaps
    assert heat.shape == (32, 3 * 32 + 2 * 2)
    np.testing.assert_allclose(heat[:, -32:], np.repeat(np.repeat(arrays["attn"][-1].mean(axis=0), 4, 0), 4, 1))
    assert np.isnan(heat[:, 32:34]).all()
    union = np.asarray(fig.data[-1].z)[:, :32]  # a mask stack is drawn as its union, not its mean
    np.testing.assert_array_equal(union, np.repeat(np.repeat(blocks[0].max(axis=0), 4, 0), 4, 1))
    # the same arrays under another layout draw otherwise: nothing is read from the shapes
    as_image_only = (layout[0], ProbeEntry("attn", "embedding", ("heads", "h", "w"), "attention"))
    fig, skipped = charts.probe_figure(Probe({k: arrays[k] for k in ("original", "attn")}, as_image_only))
    assert [a.text for a in fig.layout.annotations if a.text] == ["image"] and skipped == ["attn"]
    assert charts.probe_figure(Probe({"embeddings": np.zeros((2, 4))}, layout)) == (None, ["embeddings"])


def test_old_probe_files_draw_with_the_methods_layout():
    from trainer.methods import probe_layout

    p, img = 3, np.zeros((3, 32, 32, 3), np.uint8)
    # written before layouts: the loop's "images" beside the method's arrays, no layout stored
    dino = read_probe({"images": img, "attn": np.random.rand(p, 2, 8, 8), "embeddings": np.zeros((p, 16))},
                      probe_layout("dino"))
    fig, skipped = charts.probe_figure(dino)
    assert [a.text for a in fig.layout.annotations if a.text] == ["image", "[CLS] attention, mean of heads"]
    assert skipped == ["embeddings"]
    mae = read_probe({"original": img, "masked": img, "reconstruction": img, "mask": np.ones((p, 8, 8)),
                      "images": img}, probe_layout("mae"))
    fig, skipped = charts.probe_figure(mae)
    assert [a.text for a in fig.layout.annotations if a.text] == ["image", "MAE input (masked)", "reconstruction",
                                                                 "removed patches"]
    assert skipped == []  # the old "images" is the same picture as "original"
