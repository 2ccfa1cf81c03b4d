"""Run store: readers poll while a writer writes, and never see a partial row or checkpoint."""

import multiprocessing as mp

import numpy as np
import pytest
import torch

from trainer.store import (
    RunWriter,
    StoreError,
    last_values,
    list_checkpoints,
    list_runs,
    load_checkpoint,
    read_events,
    read_run_info,
    read_scalars,
)

N_STEPS, N_NAMES = 150, 12


def _writer(root: str, ready) -> None:
    w = RunWriter.create(root, "r", {"run": {}}, "dino")
    ready.set()
    for step in range(1, N_STEPS + 1):
        # every name of a step carries value == step, so a torn step would be visible
        w.log_scalars(step, step / 10, {f"m{i}": float(step) for i in range(N_NAMES)})
        if step % 25 == 0:
            big = {"w": torch.full((256, 256), float(step))}
            w.save_checkpoint(step, big, {"encoder_prefix": ""}, keep=2)
    w.set_status("finished")
    w.close()


def test_reader_polling_during_writes_sees_only_whole_steps_and_checkpoints(tmp_path):
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_writer, args=(str(tmp_path), ready))
    proc.start()
    assert ready.wait(60)
    run = tmp_path / "r"
    seen_rows, cursor, polls, ck_loads = 0, 0, 0, 0
    steps: dict[int, int] = {}
    while True:
        cols, cursor = read_scalars(run, after_rowid=cursor)
        seen_rows += len(cols["step"])
        assert np.array_equal(cols["value"], cols["step"].astype(float))
        for s in cols["step"]:
            steps[int(s)] = steps.get(int(s), 0) + 1
        for ck in list_checkpoints(run):
            try:
                t = load_checkpoint(ck.path)["w"]
            except StoreError:
                continue  # pruned between listing and loading: allowed, a torn file is not
            assert torch.all(t == ck.step)
            ck_loads += 1
        polls += 1
        if not proc.is_alive():
            cols, cursor = read_scalars(run, after_rowid=cursor)
            for s in cols["step"]:
                steps[int(s)] = steps.get(int(s), 0) + 1
            seen_rows += len(cols["step"])
            break
    proc.join()
    assert proc.exitcode == 0
    assert polls > 5 and ck_loads > 0
    assert seen_rows == N_STEPS * N_NAMES  # the cursor never skips nor repeats a row
    assert set(steps.values()) == {N_NAMES}
    assert [c.step for c in list_checkpoints(run)] == [100, 125, 150]  # keep=2 besides the last
    assert read_run_info(run)["status"] == "finished"


def test_create_refuses_existing_run_and_readers_handle_damage(tmp_path):
    w = RunWriter.create(tmp_path, "a", {}, "mae", group="g")
    w.log_scalars(1, 0.1, {"train/loss": 2.0})
    w.log_scalars(2, 0.2, {"train/loss": 1.5})
    w.log_event(2, "info", "hello")
    with pytest.raises(StoreError, match="already exists"):
        RunWriter.create(tmp_path, "a", {}, "mae")
    assert last_values(tmp_path / "a") == {"train/loss": 1.5}
    assert read_events(tmp_path / "a")[0]["message"] == "hello"
    w.truncate_after(1)
    assert last_values(tmp_path / "a") == {"train/loss": 2.0}
    w.close()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{not json")
    assert [r["run_id"] for r in list_runs(tmp_path)] == ["a"]
    with pytest.raises(StoreError, match="unreadable"):
        read_run_info(tmp_path / "broken")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(StoreError, match="corrupt"):
        load_checkpoint(bad)


def test_dead_process_reads_as_stopped(tmp_path):
    w = RunWriter.create(tmp_path, "z", {}, "dino")
    w.info["pid"] = 2**22 + 12345  # no such process
    w._write_info()
    w.close()
    info = read_run_info(tmp_path / "z")
    assert info["status"] == "stopped" and "resume" in info["reason"]
