"""Break 7: ``keep_ckpts`` kept N checkpoints in total while the config says "kept besides the
last"; safetensors files were written 0600 while every other file is 0644; the events table was
not cut back on resume. Promise: each as documented."""

from __future__ import annotations

import os
import stat

from tests.faults.helpers import tiny
from trainer.loop import resume, train
from trainer.store import RunWriter, list_checkpoints, read_events


def test_keep_ckpts_keeps_that_many_besides_the_last(tmp_path):
    run = train(tiny(tmp_path, "keep", "optim.steps=10", "run.ckpt_every=2", "run.keep_ckpts=2"))
    assert [c.step for c in list_checkpoints(run)] == [6, 8, 10]  # 2 besides the last


def test_every_file_of_a_run_has_the_same_mode(tmp_path):
    old = os.umask(0o022)
    try:
        run = train(tiny(tmp_path, "modes", "optim.steps=4", "run.ckpt_every=2", "run.eval_every=1"))
    finally:
        os.umask(old)
    modes = {p.relative_to(run).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in run.rglob("*") if p.is_file()}
    assert any(name.endswith(".safetensors") for name in modes) and any(n.endswith(".npz") for n in modes)
    assert set(modes.values()) == {0o644}, modes


def test_resume_cuts_the_events_of_the_abandoned_timeline(tmp_path):
    run = train(tiny(tmp_path, "ev", "optim.steps=6", "run.ckpt_every=3", "run.keep_ckpts=0"))
    w = RunWriter.reopen(run)
    for s in ("json", "safetensors", "optim.pt"):  # as if killed after step 5, last checkpoint at 3
        (run / "checkpoints" / f"step_6.{s}").unlink()
    w.log_event(4, "warning", "grad norm spike (before the kill)")
    w.log_event(5, "error", "something at step 5 (before the kill)")
    w.log_event(2, "info", "kept: before the checkpoint")
    w.close()
    resume(run)
    messages = [(e["step"], e["message"]) for e in read_events(run)]
    assert (2, "kept: before the checkpoint") in messages and (3, "resumed from step 3") in messages
    assert not any("before the kill" in m for _, m in messages)
