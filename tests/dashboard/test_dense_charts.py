"""Figures of dense features: the PCA colours patch by patch, the similarity map's clickable
patch markers and the outline of the picked patch, and the family figure's reference lines."""

import numpy as np

from dashboard import charts, dense_charts


def test_pca_picture_repeats_each_patch_colour_over_its_pixels():
    rgb = np.zeros((2, 2, 3))
    rgb[0, 1] = (1.0, 0.5, 0.0)
    img = dense_charts.pca_rgb_image(rgb, 8)
    assert img.shape == (8, 8, 3) and img.dtype == np.uint8
    assert (img[:4, 4:] == (255, 128, 0)).all() and (img[4:] == 0).all() and (img[:4, :4] == 0).all()
    fig = dense_charts.pca_grid_figure(np.zeros((3, 8, 8, 3), np.uint8), np.stack([rgb] * 3))
    assert len(fig.data) == 6  # pictures on top, colours below


def test_similarity_map_carries_every_patch_and_outlines_the_picked_one():
    sim = np.linspace(-1, 1, 12).reshape(3, 4)
    fig = dense_charts.similarity_figure(np.zeros((12, 16, 3), np.uint8)[:, :12], sim, (2, 1))
    heat = [t for t in fig.data if t.type == "heatmap"][0]
    np.testing.assert_array_equal(np.asarray(heat.z), sim)
    markers = [t for t in fig.data if t.type == "scatter"][0]
    cd = np.asarray(markers.customdata)
    assert cd.shape == (12, 2) and {tuple(r) for r in cd.tolist()} == {(r, c) for r in range(3) for c in range(4)}
    rect = fig.layout.shapes[0]  # patch (2, 1) on a 12 px picture of 3 x 4 patches: 4 x 3 px each
    assert (rect.x0, rect.x1, rect.y0, rect.y1) == (1 * 3 - 0.5, 2 * 3 - 0.5, 2 * 4 - 0.5, 3 * 4 - 0.5)


def test_clicked_patch_reads_the_selection_event():
    assert dense_charts.clicked_patch(None) is None
    assert dense_charts.clicked_patch({"selection": {"points": []}}) is None
    assert dense_charts.clicked_patch({"selection": {"points": [{"customdata": [3, 1]}]}}) == (3, 1)


def test_family_figure_draws_reference_lines_on_the_chosen_panel():
    c = charts.Curve("a", "#000", np.arange(3), np.arange(3.0))
    fig = charts.family_figure([("one", [c]), ("two", [c])], hlines={1: [(2.5, "ln K"), (0.0, "0")]})
    ys = sorted(s.y0 for s in fig.layout.shapes)
    assert ys == [0.0, 2.5] and all(s.yref == "y2" for s in fig.layout.shapes)
