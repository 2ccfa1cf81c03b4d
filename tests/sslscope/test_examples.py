"""The adapters' examples run as users would run them (tiny, on the CPU): lightly's DINO loop
and the official ``main_dino.py`` loop, each watched; the runs read back through the store and
the Live page. In both the logged DINO cross-entropy equals the trainer's own loss, which holds
only if ``Monitor.dino`` saw the centre the loss used (called before the loss moves it)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from dashboard import charts
from tests.dashboard.conftest import REPO, no_exception, page_app, plotly_array, plotly_specs
from trainer.store import list_checkpoints, list_probes, list_runs, load_checkpoint, read_metric, read_run_info

EXAMPLES = REPO / "examples"
pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm:FutureWarning")  # lightly's DINO head


def _example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _patch_lines(name: str) -> int:
    return sum("# + sslscope" in line for line in (EXAMPLES / f"{name}.py").read_text().splitlines())


@pytest.fixture(scope="module")
def lightly_run(tmp_path_factory) -> Path:
    """lightly's DINO example, 2 epochs of 2 steps on a 2-block timm ViT, logged every 2 steps."""
    pytest.importorskip("lightly")
    root = tmp_path_factory.mktemp("lightly") / "runs"
    return _example("lightly_dino").main(["--runs-dir", str(root), "--name", "lightly", "--epochs", "2",
                                          "--images", "16", "--every", "2"])


def test_lightly_dino_patched_in_fewer_than_ten_lines_logs_its_collapse_stats(lightly_run):
    assert _patch_lines("lightly_dino") < 10  # the promise: lightly's loop patched in fewer than ten lines
    runs = list_runs(lightly_run.parent)
    assert [r["run_id"] for r in runs] == ["lightly"] and runs[0]["status"] == "finished"
    assert runs[0]["config"]["external"]["out_dim"] == 64
    steps, ce = read_metric(lightly_run, "dino/ce")
    _, loss = read_metric(lightly_run, "train/loss")
    assert steps.tolist() == [2, 4]  # 2 steps per epoch, logged every 2
    np.testing.assert_allclose(ce, loss, rtol=1e-5)  # our cross-entropy of lightly's tensors = lightly's loss
    _, entropy = read_metric(lightly_run, "dino/teacher_entropy")
    _, log_k = read_metric(lightly_run, "dino/log_k")
    assert np.all((entropy > 0) & (entropy < log_k)) and log_k[0] == pytest.approx(math.log(64))
    for name in ("collapse/rankme", "tokens/high_norm_frac", "dino/kl_teacher_student", "ema/momentum"):
        assert len(read_metric(lightly_run, name)[0]) == 2, name


def test_lightly_dino_run_on_the_live_page(lightly_run, monkeypatch):
    at = page_app("live", lightly_run.parent, monkeypatch)
    at.session_state["selected_runs"] = ["lightly"]
    at.run()
    no_exception(at)
    collapse = plotly_specs(at)["collapse_panel"]
    assert round(math.log(64), 6) in {round(s["y0"], 6) for s in collapse["layout"]["shapes"]}
    curve = [t for t in collapse["data"] if t.get("xaxis", "x") == "x" and t.get("opacity") != 0.25]
    _, entropy = read_metric(lightly_run, "dino/teacher_entropy")
    np.testing.assert_array_equal(plotly_array(curve[0]["x"]), [2, 4])
    np.testing.assert_allclose(plotly_array(curve[0]["y"]), charts.smooth_ema(entropy, 0.6))


def test_official_dino_loop_watched_with_probe_and_checkpoint(tmp_path):
    run = _example("official_dino").main(["--runs-dir", str(tmp_path), "--epochs", "2", "--iters", "4"])
    assert read_run_info(run)["status"] == "finished"
    steps, ce = read_metric(run, "dino/ce")
    _, loss = read_metric(run, "train/loss")
    assert steps.tolist() == [2, 4, 6, 8]
    np.testing.assert_allclose(ce, loss, rtol=1e-5)  # the stand-in loss (written apart from ours) agrees
    _, temp = read_metric(run, "dino/teacher_temp")
    assert temp.tolist() == pytest.approx([0.04, 0.04, 0.07, 0.07])  # tau_t of each epoch, read from the loss
    assert list_probes(run) == [4, 8]
    ck = list_checkpoints(run)[-1]
    assert ck.step == 8 and "backbone.cls_token" in load_checkpoint(ck.path)
    assert _patch_lines("official_dino") > 0


@pytest.mark.parametrize("name", ["lightly_dino", "official_dino"])
def test_examples_say_how_to_run_them(name):
    text = Path(EXAMPLES / f"{name}.py").read_text()
    assert f"python examples/{name}.py" in text and "# + sslscope" in text


@pytest.mark.slow  # the Inspect page imports its analysis stack
def test_inspect_and_resume_say_a_watched_run_has_no_model_to_load(tmp_path, monkeypatch):
    from trainer.loading import run_config
    from trainer.store import StoreError

    run = _example("official_dino").main(["--runs-dir", str(tmp_path), "--epochs", "1", "--iters", "2"])
    with pytest.raises(StoreError, match="not trained by SSLScope's trainer"):
        run_config(run)
    at = page_app("inspect", tmp_path, monkeypatch)
    at.session_state["selected_runs"] = ["official-dino"]
    at.run()
    no_exception(at)
    assert any("not trained by SSLScope's trainer" in e.value for e in at.error)


def test_guide_has_a_watch_your_own_training_section(tmp_path, monkeypatch):
    at = page_app("guide", tmp_path, monkeypatch).run()
    no_exception(at)
    assert "watch-your-own-training" in {h.proto.anchor for h in at.header}
    assert any("from sslscope.monitor import Monitor" in m.value for m in at.markdown)
