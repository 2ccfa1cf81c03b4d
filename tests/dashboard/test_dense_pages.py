"""The Live and Inspect pages on a DINO run with iBOT and Gram anchoring and on an outside
DINOv3 checkpoint: the iBOT panel with the patch head's ln K line, the dense family, the PCA
view of the probe's patch features and the clickable similarity map."""

from __future__ import annotations

import math

import pytest
from safetensors.torch import save_file

from tests.dashboard.conftest import no_exception, page_app, plotly_array, plotly_specs
from tests.dashboard.fixture_runs import tiny_config

pytestmark = pytest.mark.slow  # trains a tiny run


@pytest.fixture(scope="module")
def ibot_store(tmp_path_factory):
    from trainer.loop import train

    root = tmp_path_factory.mktemp("dense") / "runs"
    train(tiny_config(root, "v3", "dino", 8, ["dino.ibot_weight=1", "dino.ibot_separate_head=true",
                                              "dino.ibot_out_dim=16", "dino.gram_weight=2",
                                              "dino.gram_teacher_step=2", "dino.gram_start=4",
                                              "dino.gram_ramp_steps=2"]))
    return root


def test_live_page_draws_the_ibot_panel_dense_family_and_probe_views(ibot_store, monkeypatch):
    at = page_app("live", ibot_store, monkeypatch)
    at.session_state["selected_runs"] = ["v3"]
    at.run()
    no_exception(at)
    figs = plotly_specs(at)
    ibot = figs["family_iBOT patch loss"]
    titles = [a["text"] for a in ibot["layout"]["annotations"]]
    assert any("ibot/teacher_entropy" in t for t in titles) and any("ibot/ce" in t for t in titles)
    assert {round(s["y0"], 6) for s in ibot["layout"]["shapes"]} == {round(math.log(16), 6), 0.0}
    dense = [a["text"] for a in figs["family_Dense features"]["layout"]["annotations"]]
    assert any("dense/cls_patch_cosine" in t for t in dense) and any("gram/loss" in t for t in dense)
    pca, sim = figs["probe_v3_patches_pca"], figs["probe_v3_patches_sim"]
    assert len(pca["data"]) == 2 * 4  # 4 probe images and their PCA colours
    heat = [t for t in sim["data"] if t["type"] == "heatmap"][0]
    z = plotly_array(heat["z"]).astype(float).reshape(8, 8)  # 32 px, 4 px patches
    assert z[4, 4] == pytest.approx(1.0) and z.min() < 0.999  # the default patch (the grid's centre) is itself


def test_inspect_dense_tab_on_a_run_and_on_an_outside_dinov3_checkpoint(ibot_store, tmp_path, monkeypatch):
    at = page_app("inspect", ibot_store, monkeypatch, timeout=300)
    at.session_state["selected_runs"] = ["v3"]
    at.session_state["tab"] = "Dense features"
    at.run()
    no_exception(at)
    assert not at.error
    figs = plotly_specs(at)
    assert "insp_dense_pca" in figs and "insp_dense_sim" in figs
    assert any("Jaccard of the PCA foreground" in c.value for c in at.caption)  # shapes: exact masks

    from tests.analysis.test_checkpoints_dinov3 import _dinov3, to_meta_layout

    save_file(to_meta_layout(_dinov3()), tmp_path / "dinov3_vits16.safetensors")
    at = page_app("inspect", ibot_store, monkeypatch, timeout=300)
    at.session_state["insp_mode"] = "a weights file"
    at.session_state["insp_path"] = str(tmp_path / "dinov3_vits16.safetensors")
    at.session_state["tab"] = "Dense features"
    at.run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    sim = plotly_specs(at)["insp_dense_sim"]
    markers = [t for t in sim["data"] if t["type"] == "scatter"][0]
    assert plotly_array(markers["customdata"]).size == 2 * 14 * 14  # native 56 px (14 x 4): a 14 x 14 grid
    assert any("dinov3" in c.value for c in at.caption)


def test_a_clicked_patch_becomes_the_similarity_query(ibot_store, monkeypatch):
    at = page_app("live", ibot_store, monkeypatch)
    at.session_state["selected_runs"] = ["v3"]
    at.run()
    at.session_state["probe_v3_patches_sim"] = {"selection": {"points": [{"customdata": [1, 6]}]}}  # a click
    at.run()
    no_exception(at)
    sim = plotly_specs(at)["probe_v3_patches_sim"]
    z = plotly_array([t for t in sim["data"] if t["type"] == "heatmap"][0]["z"]).astype(float).reshape(8, 8)
    assert z[1, 6] == pytest.approx(1.0)
    rect = sim["layout"]["shapes"][0]
    assert (rect["x0"], rect["y0"]) == (6 * 4 - 0.5, 1 * 4 - 0.5)
    assert any("Patch (1, 6) of 8 x 8" in c.value for c in at.caption)
