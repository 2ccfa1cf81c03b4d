"""``python -m sslscope.monitor import-log``: the official DINO ``log.txt``, DINOv2's
``training_metrics.json`` and TensorBoard event files become runs that the dashboard shows
beside ours, official names mapped where they mean ours, the rest under ``imported/``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sslscope.monitor.__main__ import main
from sslscope.monitor.logs import ImportLogError, import_log
from tests.dashboard.conftest import no_exception, page_app, plotly_specs
from tests.dashboard.synthetic import write_run
from trainer.store import read_events, read_run_info, read_scalars

# main_dino.py writes one line per epoch: {**{f"train_{k}": v for k, v in train_stats.items()}, "epoch": epoch}
DINO_LOG = [{"train_loss": 10.91, "train_lr": 0.00025, "train_wd": 0.04, "epoch": 0},
            {"train_loss": 9.72, "train_lr": 0.0005, "train_wd": 0.05, "epoch": 1},
            {"train_loss": 8.64, "train_lr": 0.00049, "train_wd": 0.07, "epoch": 2}]
# dinov2 MetricLogger.dump_in_output_file: iteration, times, then the median of each meter
DINOV2_LOG = [{"iteration": i, "iter_time": 0.61, "data_time": 0.02, "lr": 1e-5 * i, "wd": 0.04, "mom": 0.992,
               "last_layer_lr": 0.0, "current_batch_size": 64.0, "total_loss": 12.0 - i / 10,
               "dino_local_crops_loss": 8.0, "dino_global_crops_loss": 1.1, "koleo_loss": -0.28,
               "ibot_loss": 2.9} for i in range(0, 50, 10)]


def _lines(path, objs) -> None:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))


def _values(run_dir) -> dict[str, list[tuple[int, float, float]]]:
    cols, _ = read_scalars(run_dir)
    out: dict[str, list[tuple[int, float, float]]] = {}
    for s, e, n, v in zip(cols["step"], cols["epoch"], cols["name"], cols["value"]):
        out.setdefault(str(n), []).append((int(s), float(e), float(v)))
    return out


def test_official_dino_log_txt_lands_on_our_names_at_the_end_of_each_epoch(tmp_path, capsys):
    log = tmp_path / "vits16" / "log.txt"
    log.parent.mkdir()
    _lines(log, DINO_LOG)
    code = main(["import-log", str(log), "--runs-dir", str(tmp_path / "runs"), "--steps-per-epoch", "100",
                 "--method", "dino"])
    assert code == 0 and "imported into" in capsys.readouterr().out
    run = tmp_path / "runs" / "vits16"  # named after the log's folder
    v = _values(run)
    assert set(v) == {"train/loss", "opt/lr", "opt/wd"}
    assert v["train/loss"] == [(100, 1.0, 10.91), (200, 2.0, 9.72), (300, 3.0, 8.64)]
    assert [x[2] for x in v["opt/wd"]] == [0.04, 0.05, 0.07]
    info = read_run_info(run)
    assert info["status"] == "finished" and info["method"] == "dino" and info["step"] == 300
    assert info["config"]["imported"]["format"] == "json-lines"
    assert "imported 9 values of 3 metrics" in read_events(run)[0]["message"]


def test_dinov2_training_metrics_maps_schedules_and_keeps_the_rest_under_imported(tmp_path):
    log = tmp_path / "training_metrics.json"
    _lines(log, DINOV2_LOG)
    with log.open("a") as f:
        f.write('{"iteration": 50, "total_lo')  # the trainer is writing this line right now
    run = import_log(log, tmp_path / "runs", name="dinov2")
    v = _values(run)
    assert read_run_info(run)["method"] == "dino"  # guessed from the dino_* / ibot_* terms
    assert [s for s, _, _ in v["train/loss"]] == [0, 10, 20, 30, 40]
    assert v["train/loss"][-1][2] == pytest.approx(8.0) and v["ema/momentum"][0][2] == 0.992
    assert {"opt/lr", "opt/wd", "imported/koleo_loss", "imported/ibot_loss", "imported/iter_time",
            "imported/dino_local_crops_loss"} <= set(v)
    assert "imported/iteration" not in v and "koleo_loss" not in v  # the step key places rows; nothing raw
    assert any("unfinished last line" in e["message"] for e in read_events(run))


def test_a_broken_line_inside_the_log_is_named_with_its_fix(tmp_path, capsys):
    log = tmp_path / "log.txt"
    log.write_text(json.dumps(DINO_LOG[0]) + "\n{not json\n" + json.dumps(DINO_LOG[1]) + "\n")
    assert main(["import-log", str(log), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: line 2 of ") and "fix or remove that line" in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()  # nothing half-imported
    with pytest.raises(ImportLogError, match="does not exist"):
        import_log(tmp_path / "nope.txt", tmp_path / "runs")
    (tmp_path / "empty").mkdir()
    assert main(["import-log", str(tmp_path / "empty"), "--runs-dir", str(tmp_path / "r2")]) == 2
    assert "holds no log.txt" in capsys.readouterr().err


def test_tensorboard_event_file_keeps_steps_wall_times_and_epochs(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    logdir = tmp_path / "lightning_logs" / "version_0"
    w = SummaryWriter(str(logdir))
    for step in range(0, 30, 10):
        w.add_scalar("train/loss", 5.0 - step / 10, step, walltime=1_000_000.0 + step)
        w.add_scalar("lr", 0.1 * (1 + step), step, walltime=1_000_000.0 + step)
        w.add_scalar("val/acc_top1", 0.1 + step / 100, step, walltime=1_000_000.0 + step)
        w.add_scalar("epoch", step // 10, step, walltime=1_000_000.0 + step)
    w.close()
    run = import_log(logdir, tmp_path / "runs")
    cols, _ = read_scalars(run)
    assert sorted(set(cols["name"].tolist())) == ["imported/val/acc_top1", "opt/lr", "train/loss"]
    sel = cols["name"] == "train/loss"
    assert cols["step"][sel].tolist() == [0, 10, 20] and cols["value"][sel].tolist() == [5.0, 4.0, 3.0]
    np.testing.assert_allclose(cols["wall_time"][sel], [1_000_000.0, 1_000_010.0, 1_000_020.0])
    assert cols["epoch"][sel].tolist() == [0.0, 1.0, 2.0]  # from the "epoch" tag, not a curve of its own
    info = read_run_info(run)
    assert info["config"]["imported"]["format"] == "tensorboard" and info["started"] == 1_000_000.0


@pytest.mark.slow  # three AppTest pages
def test_the_dashboard_shows_imported_runs_beside_ours(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    write_run(root, "ours", "dino", steps=20)
    log = tmp_path / "training_metrics.json"
    _lines(log, DINOV2_LOG)
    import_log(log, root, name="dinov2")
    (tmp_path / "dino").mkdir()
    _lines(tmp_path / "dino" / "log.txt", DINO_LOG)
    import_log(tmp_path / "dino" / "log.txt", root, name="official", method="dino", steps_per_epoch=10)

    at = page_app("live", root, monkeypatch)
    at.session_state["selected_runs"] = ["ours", "dinov2", "official"]
    at.run()
    no_exception(at)
    figs = plotly_specs(at)
    losses = figs["family_Losses"]
    loss_curves = {t["name"] for t in losses["data"] if t.get("opacity") != 0.25 and t.get("xaxis", "x") == "x"}
    assert loss_curves == {"ours", "dinov2", "official"}  # train/loss of all three in one panel
    imported = [a["text"] for a in figs["family_Imported"]["layout"]["annotations"]]
    assert any("imported/koleo_loss" in t for t in imported)
    assert "collapse_panel" in figs  # ours still draws its DINO figure

    at = page_app("compare", root, monkeypatch)
    at.session_state["cmp_mode"] = "runs"
    at.session_state["selected_runs"] = ["ours", "dinov2", "official"]
    at.run()
    no_exception(at)
    assert sorted(at.dataframe[0].value["run"]) == ["dinov2", "official", "ours"]

    at = page_app("runs", root, monkeypatch).run()
    no_exception(at)
    df = at.dataframe[0].value
    assert set(df["run"]) == {"ours", "dinov2", "official"} and set(df["status"]) == {"finished"}
