"""Break 4 (resume half): a truncated ``.optim.pt`` or a checkpoint tensor of the wrong shape
ended ``resume`` in a traceback; with a corrupt newest checkpoint there was no fallback to the
one before and no ``--step`` to choose one; stale ``.step_N.json.tmpPID`` files stayed after
kills. Promise: one clear line when nothing can be restored, else the newest checkpoint that
loads (said in a warning and an event), ``--step N`` picks one, and leftovers are removed."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from tests.faults.helpers import main_in_process, one_line, tiny
from trainer.loop import train
from trainer.store import list_checkpoints, load_checkpoint, read_events, read_metric, read_run_info


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 8-step run with checkpoints at 2, 4, 6, 8 (all kept)."""
    root = tmp_path_factory.mktemp("ref")
    return train(tiny(root, "ref", "optim.steps=8", "run.ckpt_every=2", "run.keep_ckpts=0"))


def _stopped_copy(tmp_path, reference, upto: int):
    """A copy of the reference run as if it had been killed just after the checkpoint at ``upto``
    (later checkpoints gone, status running: its process is gone)."""
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(reference, run)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "running", "pid": 2**22 + 7, "ended": None}))
    for ck in list_checkpoints(run):
        if ck.step > upto:
            for suffix in (".json", ".safetensors", ".optim.pt"):
                (run / "checkpoints" / f"step_{ck.step}{suffix}").unlink()
    return run


def _same_weights(a, b) -> None:
    ta, tb = load_checkpoint(list_checkpoints(a)[-1].path), load_checkpoint(list_checkpoints(b)[-1].path)
    assert ta.keys() == tb.keys()
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], atol=1e-5, rtol=0)


def _truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _wrong_shape(ck_path) -> None:
    tensors = load_checkpoint(ck_path)
    key = next(k for k, v in tensors.items() if v.dim() == 2)
    tensors[key] = torch.zeros(tensors[key].shape[0] + 1, tensors[key].shape[1])
    save_file(tensors, str(ck_path))


@pytest.mark.parametrize("damage", ["truncated optim", "wrong shape"])
def test_nothing_restorable_is_one_line(tmp_path, reference, capsys, damage):
    run = _stopped_copy(tmp_path, reference, upto=2)
    ck = list_checkpoints(run)[-1]
    if damage == "truncated optim":
        _truncate(ck.path.with_name("step_2.optim.pt"))
    else:
        _wrong_shape(ck.path)
    code, err = main_in_process(["resume", str(run)], capsys)
    assert code == 2
    line = one_line(err)
    assert "no checkpoint can be restored: step 2:" in line
    if damage == "truncated optim":
        assert "optimiser state" in line and "is damaged" in line
    else:
        assert "does not fit" in line


@pytest.mark.parametrize("damage", ["truncated optim", "wrong shape", "truncated weights"])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(tmp_path, reference, capsys, damage):
    run = _stopped_copy(tmp_path, reference, upto=6)
    newest = list_checkpoints(run)[-1]
    assert newest.step == 6
    if damage == "truncated optim":
        _truncate(newest.path.with_name("step_6.optim.pt"))
    elif damage == "wrong shape":
        _wrong_shape(newest.path)
    else:
        _truncate(newest.path)
    code, err = main_in_process(["resume", str(run)], capsys)
    assert code == 0, err
    assert "warning: checkpoint step 6:" in err and "resuming from step 4 instead" in err
    events = [e["message"] for e in read_events(run)]
    assert any("resumed from step 4" in m for m in events) and any("checkpoint step 6:" in m for m in events)
    assert read_run_info(run)["status"] == "finished"
    _same_weights(reference, run)  # the fallback continued exactly, through a rewritten step 6
    steps, losses = read_metric(run, "train/loss")
    assert steps.tolist() == list(range(1, 9))
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(read_metric(reference, "train/loss")[1]),
                               atol=1e-4, rtol=0)


def test_resume_step_picks_a_checkpoint_and_drops_the_later_timeline(tmp_path, reference, capsys):
    run = _stopped_copy(tmp_path, reference, upto=8)
    code, err = main_in_process(["resume", str(run), "--step", "2"], capsys)
    assert code == 0, err
    events = [(e["step"], e["message"]) for e in read_events(run)]
    assert (2, "resumed from step 2") in events
    assert [c.step for c in list_checkpoints(run)] == [2, 4, 6, 8]  # 4..8 written again by the resumed run
    _same_weights(reference, run)
    assert read_metric(run, "train/loss")[0].tolist() == list(range(1, 9))
    code, err = main_in_process(["resume", str(run), "--step", "3"], capsys)
    assert code == 2 and "has no checkpoint at step 3; it has [2, 4, 6, 8]" in one_line(err)


def test_resume_removes_what_a_killed_writer_left(tmp_path, reference, capsys):
    run = _stopped_copy(tmp_path, reference, upto=4)
    ck = run / "checkpoints"
    leftovers = [ck / ".step_6.json.tmp12345", ck / ".step_6.safetensors.tmp12345", ck / ".step_6.optim.pt.tmp99",
                 ck / "step_6.safetensors", run / ".run.json.tmp4242", run / "probes" / ".step_6.npz.tmp7"]
    for p in leftovers:
        p.write_bytes(b"partial")
    code, err = main_in_process(["resume", str(run)], capsys)
    assert code == 0, err
    assert not any(p.exists() for p in leftovers if p.name != "step_6.safetensors")
    assert list(run.rglob(".*.tmp*")) == []
    assert [c.step for c in list_checkpoints(run)] == [2, 4, 6, 8]
    _same_weights(reference, run)  # the orphan step_6 weights were not taken for a checkpoint
