"""One AppTest per page on a store of real short training runs: no exception, and the key
elements present; plus the bad inputs (empty runs dir, deleted run, corrupt probe)."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from analysis.study import load_group
from analysis.verdict import VERDICTS
from dashboard import charts
from tests.dashboard.conftest import REPO, no_exception, page_app, plotly_array, plotly_specs
from trainer.store import read_metric
from trainer.studies import STUDIES

pytestmark = pytest.mark.slow  # the session fixture trains seven tiny runs


def test_runs_page_lists_every_run_with_its_group_and_status(real_store, monkeypatch):
    at = page_app("runs", real_store, monkeypatch).run()
    no_exception(at)
    df = at.dataframe[0].value
    assert sorted(df["run"]) == sorted(["dino", "mae", "ijepa", "cs-both", "cs-centering-only",
                                        "cs-sharpening-only", "cs-neither"])
    assert set(df.loc[df["group"] == "cs", "method"]) == {"dino"}
    assert set(df["status"]) == {"finished"}
    assert (df["progress"] == 1.0).all() and set(df["step"]) == {6, 10}
    assert df.loc[df["run"] == "dino", "diagnosis"].iloc[0] != ""
    assert [b.label for b in at.button][:3] == ["Watch live", "Compare", "Stop"]
    groups = at.dataframe[1].value  # each group's verdict: the demo-style grid is matched to its study
    assert list(groups["group"]) == ["cs"] and list(groups["study"]) == ["centering-sharpening"]
    assert groups["runs"].iloc[0] == "4 of 4 finished" and groups["verdict"].iloc[0] in VERDICTS


def test_live_page_shows_the_collapse_panel_with_ln_k_and_the_probe(real_store, monkeypatch):
    at = page_app("live", real_store, monkeypatch)
    at.session_state["selected_runs"] = ["dino"]
    at.run()
    no_exception(at)
    figs = plotly_specs(at)
    collapse = figs["collapse_panel"]
    hlines = {round(s["y0"], 6) for s in collapse["layout"]["shapes"]}
    assert round(math.log(32), 6) in hlines and 0.0 in hlines
    entropy = [t for t in collapse["data"] if t.get("xaxis", "x") == "x" and t.get("opacity") != 0.25]
    steps, values = read_metric(real_store / "dino", "dino/teacher_entropy")
    assert len(entropy) == 1 and len(steps) >= 4
    np.testing.assert_array_equal(plotly_array(entropy[0]["x"]), steps)
    np.testing.assert_allclose(plotly_array(entropy[0]["y"]), charts.smooth_ema(values, 0.6))
    losses = [a["text"] for a in figs["family_Losses"]["layout"]["annotations"]]
    assert any("train/loss" in t for t in losses)
    assert any("opt/lr" in a["text"] for a in figs["family_Schedules"]["layout"]["annotations"])
    titles = [a["text"] for a in figs["probe_fig"]["layout"]["annotations"] if a["text"]]
    assert titles == ["image", "[CLS] attention, mean of heads"]
    assert any("**dino** (finished) step 10," in c.value for c in at.caption)


@pytest.mark.parametrize("run, rows", [("mae", ["image", "MAE input (masked)", "reconstruction",
                                                  "reconstruction + visible", "removed patches"]),
                                        ("ijepa", ["image", "I-JEPA context", "targets", "cos(pred, target)"])])
def test_live_page_probe_rows_of_mae_and_ijepa(real_store, monkeypatch, run, rows):
    at = page_app("live", real_store, monkeypatch)
    at.session_state["selected_runs"] = [run]
    at.run()
    no_exception(at)
    figs = plotly_specs(at)
    assert "collapse_panel" not in figs  # no DINO stats in these runs
    assert [a["text"] for a in figs["probe_fig"]["layout"]["annotations"] if a["text"]] == rows


def test_compare_page_draws_the_collapse_study_one_curve_per_arm(real_store, monkeypatch):
    at = page_app("compare", real_store, monkeypatch).run()
    no_exception(at)
    study = plotly_specs(at)["collapse_study"]
    arms = sorted(t["name"] for t in study["data"] if t.get("xaxis", "x") == "x" and t.get("opacity") != 0.25)
    assert arms == sorted(["centering, sharpening", "centering, no sharpening", "no centering, sharpening",
                           "no centering, no sharpening"])
    claims, spreads, table = (d.value for d in at.dataframe)
    result = load_group(real_store, "cs")  # what the page shows is analysis's verdict
    assert list(claims["verdict"]) == [c.verdict for c in result.verdict.claims]
    assert list(claims["the paper"]) == [c.text for c in STUDIES["centering-sharpening"].claims]
    boxes = [*at.success, *at.error, *at.warning, *at.info]
    assert any(b.value.startswith(f"**{result.verdict.verdict}**") for b in boxes)
    assert list(spreads["arm"]) == ["both", "centering-only", "sharpening-only", "neither"]
    assert set(spreads["seeds"]) == {"1 of 1"}
    assert len(table) == 4 and table["k-NN"].between(0, 1).all()
    assert len(at.get("download_button")) == 4  # + the report


def test_compare_page_shows_spreads_over_seeds_and_computes_pending_measures(tmp_path, monkeypatch):
    from tests.trainer.test_launcher import TINY
    from trainer.__main__ import main

    sets = [x for s in TINY for x in ("--set", s)]
    assert main(["ablate", "registers", "--seeds", "2", "--steps", "4", "--group", "reg", "--runs-dir",
                 str(tmp_path), *sets]) == 0
    at = page_app("compare", tmp_path, monkeypatch).run()
    no_exception(at)
    claims, spreads = at.dataframe[0].value, at.dataframe[1].value
    assert claims["verdict"].iloc[1] == "pending" and "not measured yet" in claims["why (our figures)"].iloc[1]
    knn = next(c for c in spreads.columns if c.startswith("k-NN top-1"))
    assert set(spreads["seeds"]) == {"2 of 2"} and spreads[knn].str.contains(" ± ").all()
    button = next(b for b in at.button if b.label.startswith("Compute attention jaccard"))
    button.click().run()
    no_exception(at)
    result = load_group(tmp_path, "reg")  # computed and cached: the page and the report agree
    assert result.verdict.claims[1].verdict in ("reproduced", "not reproduced", "inconclusive")
    assert list(at.dataframe[0].value["verdict"]) == [c.verdict for c in result.verdict.claims]


def test_guide_page_has_a_formula_per_documented_metric(real_store, monkeypatch):
    from core.metrics import METRICS
    from dashboard.glossary import METHODS

    at = page_app("guide", real_store, monkeypatch).run()
    no_exception(at)
    assert len(at.latex) == len(METHODS) + sum(1 for d in METRICS.values() if d.formula)
    assert "dino-teacher-entropy" in {h.proto.anchor for h in at.subheader}


def test_welcome_page_offers_the_demo(tmp_path, monkeypatch):
    at = page_app("first_start", tmp_path / "empty", monkeypatch).run()
    no_exception(at)
    assert at.button(key="welcome_demo").label == "Start the demo"
    from dashboard.first_start import demo_times_sentence

    assert demo_times_sentence() in at.markdown[1].value
    # the README states the same measured times (benchmarks/demo_timing.py)
    readme = " ".join((REPO / "README.md").read_text().split())
    assert demo_times_sentence() in readme


def test_welcome_page_says_how_far_the_demo_has_got(tmp_path, monkeypatch):
    from trainer.config import Config
    from trainer.launcher import Plan
    from trainer.stopping import StopFlag
    from trainer.store import RunWriter

    cfgs = [Config().with_overrides([f"run.runs_dir={tmp_path}", f"run.name=r{i}", "optim.steps=150"])
            for i in range(3)]
    plan = Plan(cfgs, "demo-t", "demo", 2)  # this process plays the launcher, so the plan is alive
    plan.write()
    w = RunWriter.create(tmp_path, "r0", {"optim": {"steps": 150}}, "dino")
    w.log_scalars(60, 0.5, {"train/loss": 2.0})
    at = page_app("first_start", tmp_path, monkeypatch).run()
    no_exception(at)
    assert at.info[0].value.startswith("**The demo** is running: 1 of 3 runs training (step 60 of 150 on average), "
                                       "2 waiting; started ")
    df = at.dataframe[0].value
    assert df[["run", "status", "step"]].values.tolist() == [["r0", "running", 60], ["r1", "waiting", 0],
                                                            ["r2", "waiting", 0]]
    assert at.button(key="welcome_stop").label == "Stop the demo"
    w.set_status("stopped", "stopped by signal SIGTERM")
    flag = StopFlag()
    flag.reason = "stopped by signal SIGTERM"
    plan.end(flag, cfgs[1:])
    at = page_app("first_start", tmp_path, monkeypatch).run()
    no_exception(at)
    assert at.dataframe[0].value["status"].tolist() == ["stopped", "not started", "not started"]
    assert not [b for b in at.button if b.key == "welcome_stop"]
    assert any("1 stopped, 2 not started; ended after" in c.value for c in at.caption)


@pytest.mark.parametrize("page", ["runs", "live", "compare"])
def test_empty_runs_directory_says_so(tmp_path, monkeypatch, page):
    at = page_app(page, tmp_path / "nothing-here", monkeypatch).run()
    no_exception(at)
    assert any("No runs in" in i.value for i in at.info)


def test_app_opens_on_welcome_without_runs_and_on_runs_with_them(real_store, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("SSLSCOPE_RUNS", str(tmp_path / "none"))
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60).run()
    no_exception(at)
    assert at.title[0].value == "Welcome to SSLScope"
    monkeypatch.setenv("SSLSCOPE_RUNS", str(real_store))
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60).run()
    no_exception(at)
    assert at.title[0].value == "Runs"
    assert at.sidebar.text_input[0].value == str(real_store)


def test_runs_directory_that_is_a_file_is_refused_in_the_sidebar(tmp_path, monkeypatch):
    bad = tmp_path / "file.txt"
    bad.write_text("x")
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("SSLSCOPE_RUNS", str(bad))
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60).run()
    no_exception(at)
    assert "is a file, not a folder" in at.sidebar.error[0].value


def test_run_deleted_while_open_and_corrupt_probe_give_messages(real_store, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    shutil.copytree(real_store / "dino", root / "dino")
    shutil.copytree(real_store / "mae", root / "mae")
    at = page_app("live", root, monkeypatch)
    at.session_state["selected_runs"] = ["dino", "mae"]
    at.run()
    no_exception(at)
    last = max(int(p.stem.split("_")[1]) for p in (root / "mae" / "probes").glob("step_*.npz"))
    (root / "mae" / "probes" / f"step_{last}.npz").write_bytes(b"not a zip")
    at.selectbox(key="probe_run").set_value("mae")
    shutil.rmtree(root / "dino")
    at.run()
    no_exception(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "Run 'dino' is gone" in warnings
    assert "unreadable" in warnings


def _inspect(root, monkeypatch, run: str, tab: str) -> AppTest:
    at = page_app("inspect", root, monkeypatch, timeout=300)
    at.session_state["selected_runs"] = [run]
    at.session_state["tab"] = tab
    return at.run()


def test_inspect_opens_on_the_newest_finished_run_at_its_last_checkpoint(real_store, tmp_path, monkeypatch):
    import json

    root = tmp_path / "runs"
    for name, status, started in [("older", "finished", 1.0), ("done", "finished", 2.0), ("halted", "stopped", 3.0)]:
        shutil.copytree(real_store / "dino", root / name)
        info = json.loads((root / name / "run.json").read_text())
        info.update(run_id=name, status=status, started=started)
        (root / name / "run.json").write_text(json.dumps(info))
    at = page_app("inspect", root, monkeypatch, timeout=300)
    at.session_state["tab"] = "Scores"
    at.run()
    no_exception(at)
    assert at.selectbox(key="insp_run").value == "done"  # not 'halted', the newest with a checkpoint
    steps = sorted(int(p.stem.split("_")[1]) for p in (root / "done" / "checkpoints").glob("step_*.json"))
    assert at.select_slider(key="insp_step_done").value == steps[-1] and len(steps) > 1
    # a run chosen here is the one the other pages open on, first
    at.session_state["selected_runs"] = ["older"]
    at.selectbox(key="insp_run").set_value("halted").run()
    assert at.session_state["selected_runs"] == ["halted", "older"]
    assert at.query_params["run"] == "halted"
    # and the link it leaves (?run=halted) opens the same run on another page, in a new session
    live = page_app("live", root, monkeypatch)
    live.query_params["run"] = "halted"
    assert live.run().multiselect(key="live_runs").value == ["halted"]


def test_inspect_embeddings_tab_draws_the_umap_coloured_by_class(real_store, monkeypatch):
    at = _inspect(real_store, monkeypatch, "dino", "Embeddings")
    no_exception(at)
    fig = plotly_specs(at)["embedding"]
    assert fig["layout"]["title"]["text"].startswith("UMAP of 128 cls features")
    names = [t["name"] for t in fig["data"]]
    assert len(names) > 1 and "disc" in names
    assert sum(len(plotly_array(t["customdata"])) for t in fig["data"]) == 128


def test_inspect_attention_tab_draws_the_per_head_grid_and_jaccard(real_store, monkeypatch):
    at = _inspect(real_store, monkeypatch, "dino", "Attention")
    no_exception(at)
    grid = plotly_specs(at)["attention_grid"]
    titles = [a["text"] for a in grid["layout"]["annotations"]]
    assert titles == ["image", "mean over heads", "kept mass mask", "head 0", "head 1"]
    jac = float(at.metric[0].value)
    assert 0.0 <= jac <= 1.0


@pytest.mark.parametrize("run, tab, key", [("mae", "Reconstructions", "reconstructions"),
                                           ("ijepa", "Predictions", "predictions"),
                                           ("dino", "Attribution", "attribution"), ("dino", "Scores", "scores")])
def test_inspect_tabs_of_each_method(real_store, monkeypatch, run, tab, key):
    at = _inspect(real_store, monkeypatch, run, tab)
    no_exception(at)
    assert not at.error
    assert key in plotly_specs(at)


def test_inspect_scores_tab_diagnoses_the_checkpoint_with_the_runs_loss_object(real_store, monkeypatch):
    from analysis.collapse import diagnose_source
    from analysis.source import open_source

    at = _inspect(real_store, monkeypatch, "dino", "Scores")
    no_exception(at)
    rep = diagnose_source(open_source(real_store / "dino"))
    assert f"Collapse diagnosis: {rep.checkpoint.label}" in [h.value for h in at.subheader]
    table = at.dataframe[0].value.set_index("metric")
    for name in ("dino/teacher_entropy", "dino/kl_teacher_student", "collapse/rankme"):
        assert table.loc[name, "value"] == pytest.approx(rep.checkpoint.values[name], rel=1e-6)
    assert table.loc["dino/teacher_entropy", "healthy"] == "0.3-0.9 ln K"


def test_inspect_refuses_mismatched_method_and_corrupt_checkpoint(real_store, tmp_path, monkeypatch):
    at = _inspect(real_store, monkeypatch, "mae", "Predictions")
    no_exception(at)
    assert "need an I-JEPA run" in at.info[0].value
    root = tmp_path / "runs"
    shutil.copytree(real_store / "dino", root / "dino")
    for ck in (root / "dino" / "checkpoints").glob("*.safetensors"):
        ck.write_bytes(b"\0" * 64)
    at = _inspect(root, monkeypatch, "dino", "Attention")
    no_exception(at)
    assert "corrupt" in at.error[0].value


def test_inspect_unreadable_upload_and_missing_weights_file(real_store, tmp_path, monkeypatch):
    at = page_app("inspect", real_store, monkeypatch, timeout=300)
    at.session_state["insp_mode"] = "a weights file"
    at.session_state["insp_path"] = str(tmp_path / "missing.pth")
    at.run()
    no_exception(at)
    assert "missing.pth" in at.error[0].value
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    at.text_input(key="insp_path").set_value(str(junk)).run()
    no_exception(at)
    assert at.error and "junk.pth" in at.error[0].value


def test_inspect_warns_when_a_files_head_count_is_a_guess_and_takes_the_users(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import save_file
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, embed_dim=80, depth=1, num_heads=5, num_classes=0)
    save_file(vit.state_dict(), tmp_path / "mine.safetensors")
    at = page_app("inspect", tmp_path, monkeypatch, timeout=300)
    at.session_state["insp_mode"] = "a weights file"
    at.session_state["insp_path"] = str(tmp_path / "mine.safetensors")
    at.session_state["tab"] = "Attention"
    at.run()
    no_exception(at)
    assert "a guess: width 80 is no official ViT size" in at.warning[0].value
    assert at.number_input(key="insp_heads").value == 1
    at.number_input(key="insp_heads").set_value(5).run()
    no_exception(at)
    assert "5 heads (your setting)" in at.caption[1].value
    titles = [a["text"] for a in plotly_specs(at)["attention_grid"]["layout"]["annotations"]]
    assert titles[-1] == "head 4"  # five heads drawn
    # an official size needs no box
    big = VisionTransformer(img_size=32, patch_size=16, embed_dim=384, depth=1, num_heads=6, num_classes=0)
    save_file(big.state_dict(), tmp_path / "s16.safetensors")
    at.text_input(key="insp_path").set_value(str(tmp_path / "s16.safetensors")).run()
    no_exception(at)
    assert not at.warning and not [n for n in at.number_input if n.key == "insp_heads"]
    assert "6 heads (the official size of width 384" in at.caption[1].value


def test_inspect_reconstructs_with_an_official_mae_files_decoder(tmp_path, monkeypatch):
    import argparse

    import torch

    from tests.analysis.test_mae_file import MaskedAutoencoderViT

    torch.manual_seed(0)
    path = tmp_path / "mae_visualize_vit_tiny.pth"
    torch.save({"model": MaskedAutoencoderViT().state_dict(), "args": argparse.Namespace(mask_ratio=0.75)}, path)
    at = page_app("inspect", tmp_path, monkeypatch, timeout=300)
    at.session_state["insp_mode"] = "a weights file"
    at.session_state["insp_path"] = str(path)
    at.session_state["tab"] = "Reconstructions"
    at.run()
    no_exception(at)
    assert not at.error and "reconstructions" in plotly_specs(at)
    assert at.slider(key="rec_ratio").value == 0.75
    assert any("MAE decoder: width 64, 2 blocks, 16 heads" in c.value for c in at.caption)
    at.slider(key="rec_ratio").set_value(0.5).run()
    no_exception(at)
    assert "reconstructions" in plotly_specs(at)


def test_unreadable_picture_upload_is_refused():
    from dashboard import models

    with pytest.raises(models.InspectError, match="not a readable image"):
        models.uploaded_image(b"\x89PNG broken", 32)
    img = models.uploaded_image(_png(40, 20), 32)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8


def _png(w: int, h: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def test_live_page_shows_failure_reason_events_and_collapse_banner(tmp_path, monkeypatch):
    from tests.dashboard.synthetic import write_run
    from trainer.store import RunWriter

    root = tmp_path / "runs"
    write_run(root, "uniform", "dino", arm="centering-only")  # entropy -> ln K, KL -> 0
    write_run(root, "nan", "dino", steps=20, status="failed", reason="non-finite loss at step 17")
    w = RunWriter.reopen(root / "nan")
    w.log_event(12, "warning", "grad norm spike 1e4")
    w.set_status("failed", "non-finite loss at step 17")
    w.close()
    at = page_app("live", root, monkeypatch)
    at.session_state["selected_runs"] = ["uniform", "nan"]
    at.run()
    no_exception(at)
    assert "**nan** failed: non-finite loss at step 17" in at.error[0].value
    warnings = [w.value for w in at.warning]
    assert any("step 12: grad norm spike 1e4" in w for w in warnings)
    banner = next(w for w in warnings if w.startswith("**uniform: uniform collapse** (rule `uniform-collapse`"))
    assert "ln K" in banner and "**Try:** sharpening is off (dino.sharpening=false" in banner


def test_live_banner_and_runs_table_say_what_the_alarms_say_on_a_real_run(tmp_path, monkeypatch):
    from analysis.collapse import diagnose_run
    from tests.analysis.test_alarm_calibration import TINY
    from tests.dashboard.synthetic import write_run
    from trainer.config import Config
    from trainer.loop import train

    root = tmp_path / "runs"
    run = train(Config().with_overrides(TINY + ["dino.centering=none", f"run.runs_dir={root}", "run.name=sharp"]))
    write_run(root, "young", "mae", steps=4)  # 3 logs: too young for a window of 5
    d = diagnose_run(run)
    assert d.label == "one-hot collapse" and d.first_step is not None
    at = page_app("live", root, monkeypatch)
    at.session_state["selected_runs"] = ["sharp", "young"]
    at.run()
    no_exception(at)
    banner = next(w.value for w in at.warning if w.value.startswith("**sharp:"))
    assert banner.startswith(f"**sharp: one-hot collapse** (rule `one-hot-collapse`, first flagged at step "
                             f"{d.first_step}).")
    assert d.advice in banner and "turn centering on" not in banner
    assert any(c.value.startswith("**young**: warming up, no verdict yet.") for c in at.caption)
    at = page_app("runs", root, monkeypatch).run()
    df = at.dataframe[0].value.set_index("run")
    assert df.loc["sharp", "diagnosis"] == f"one-hot collapse since step {d.first_step}"
    assert df.loc["young", "diagnosis"] == "warming up"
