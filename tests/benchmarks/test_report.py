"""The benchmark table is assembled right: each figure becomes its ratio against the peer or the
peak of the same run, judged against issue 17's target, in the Markdown table and the JSON
(synthetic figures; the benchmarks themselves are never timed in tests)."""

import json

import pytest

from benchmarks import report


def _throughput(ours_full, lightly_full, ours_model, lightly_model, flop, model_s, full_s, peak, shapes):
    return {"ours_full_images_per_s": ours_full, "lightly_full_images_per_s": lightly_full,
            "ours_model_images_per_s": ours_model, "lightly_model_images_per_s": lightly_model,
            "full_ratio": ours_full / lightly_full, "model_ratio": ours_model / lightly_model,
            "flop_per_step": flop, "model_step_s": model_s, "full_step_s": full_s, "peak_1024_flop_per_s": peak,
            "peak_shapes_flop_per_s": shapes, "mfu_model_vs_1024": flop / model_s / peak,
            "mfu_model_vs_shapes": flop / model_s / shapes, "mfu_full_vs_1024": flop / full_s / peak}


RESULTS = {
    "throughput": {"cpu-small": {
        # DINO: 400 vs 200 img/s full (2.0x, target 1.8 met); 300 vs 250 model (1.2x, 1.3 not met);
        # 10 GFLOP in 0.05 s = 200 GFLOP/s of a 400 peak = 0.5 (target 0.5 met), of a 250 shape peak 0.8
        "dino": _throughput(400, 200, 300, 250, 10e9, 0.05, 0.08, 400e9, 250e9),
        # MAE: 110 vs 100 full (1.1x, 1.2 not met); 2 GFLOP in 0.02 s = 100 of 400 = 0.25 (0.35 not met)
        "mae": _throughput(110, 100, 150, 100, 2e9, 0.02, 0.025, 400e9, 200e9)}},
    "phases": {"dino": {"share": {"data": 0.04, "forward": 0.5, "backward": 0.46}, "step_s": 0.1}},
    "mae_encoder": {"1": {"mask_0_s": 0.6, "mask_075_s": 0.1, "speedup": 6.0},
                    "2": {"mask_0_s": 0.4, "mask_075_s": 0.1, "speedup": 4.0}},
    "memory": {"rss_from_mb": 800.0, "rss_to_mb": 820.0, "growth": 0.025, "peak_rss_mb": 830.0, "from_step": 100,
               "to_step": 1000},
    "dashboard": {"server_cpu_share": 0.2, "seconds": 60.0},
}


def _by_figure(rows):
    return {r.figure: r for r in rows}


def test_rows_are_ratios_against_the_peer_or_the_peak_with_the_issues_targets():
    rows = _by_figure(report.rows_of(RESULTS))
    full, model = rows["DINO cpu-small: full step (data + model)"], rows["DINO cpu-small: model step"]
    assert (full.ratio, full.target, full.meets) == (pytest.approx(2.0), ">= 1.8", True)
    assert (model.ratio, model.target, model.meets) == (pytest.approx(1.2), ">= 1.3", False)
    assert full.measured == "400 img/s" and full.against == "lightly 200 img/s"
    mfu = rows["DINO cpu-small: MFU, model step"]
    assert (mfu.ratio, mfu.target, mfu.meets) == (pytest.approx(0.5), ">= 0.5", True)
    assert mfu.measured == "10.00 GFLOP/step at 200 GFLOP/s" and mfu.against == "1024^3 matmul peak 400 GFLOP/s"
    assert rows["DINO cpu-small: MFU, model step, at its own shapes"].ratio == pytest.approx(0.8)
    assert rows["DINO cpu-small: MFU, full step"].ratio == pytest.approx(10 / 0.08 / 400)
    assert rows["MAE cpu-small: full step (data + model)"].meets is False  # 1.1 < 1.2
    assert rows["MAE cpu-small: model step"].meets is None  # no target for MAE's model step
    assert rows["MAE cpu-small: MFU, model step"].ratio == pytest.approx(0.25)
    assert rows["MAE cpu-small: MFU, model step"].meets is False
    phase = rows["DINO: where a step goes"]
    assert (phase.ratio, phase.meets) == (0.04, True) and phase.measured == "data 4%, fwd 50%, bwd 46%"
    assert rows["MAE encoder fwd+bwd, mask 0.75, 1 thread(s)"].meets is True
    assert rows["MAE encoder fwd+bwd, mask 0.75, 2 thread(s)"].meets is False  # 4x < 5x
    mem = rows["trainer RSS at step 1000 (peak 830 MB)"]
    assert (mem.ratio, mem.meets) == (pytest.approx(1.025), True)
    dash = rows["dashboard server CPU, Live following a run"]
    assert (dash.ratio, dash.meets, dash.measured) == (0.2, False, "20.0% of a core")


def test_a_target_is_not_given_at_a_preset_it_was_not_set_for():
    rows = _by_figure(report.rows_of({"throughput": {"cpu-tiny": RESULTS["throughput"]["cpu-small"]}}))
    assert rows["DINO cpu-tiny: MFU, model step"].meets is None  # the MFU targets are cpu-small's
    assert rows["DINO cpu-tiny: full step (data + model)"].meets is True


def test_missing_sections_give_no_rows():
    assert report.rows_of({}) == []
    assert [r.figure for r in report.rows_of({"dashboard": RESULTS["dashboard"]})] == [
        "dashboard server CPU, Live following a run"]


def test_table_and_json_carry_every_row(tmp_path):
    rows = report.rows_of(RESULTS)
    text = report.table(rows, "Benchmarks of today")
    lines = text.splitlines()
    assert lines[0] == "Benchmarks of today" and lines[2] == "| figure | measured | against | ratio | target |"
    assert len(lines) == 4 + len(rows)
    assert ("| DINO cpu-small: full step (data + model) | 400 img/s | lightly 200 img/s | 2.00 | >= 1.8 (met) |"
            in lines)
    assert "| DINO cpu-small: model step | 300 img/s | lightly 250 img/s | 1.20 | >= 1.3 (not met) |" in lines
    path = tmp_path / "results" / "bench.json"
    report.write_json(path, RESULTS, rows)
    back = json.loads(path.read_text())
    assert back["throughput"] == RESULTS["throughput"]
    assert [r["figure"] for r in back["rows"]] == [r.figure for r in rows]
    assert back["rows"][0]["ratio"] == pytest.approx(2.0) and back["rows"][0]["meets"] is True
    assert [p.name for p in path.parent.iterdir()] == ["bench.json"]  # no temporary left behind
