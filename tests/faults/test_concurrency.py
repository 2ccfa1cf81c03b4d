"""Promise: N trainers and M dashboard readers on one runs directory see no "database is locked",
no lost or duplicated rows and no torn reads, also while a run is resumed (its tail cut and
rewritten) under the readers' cursors."""

from __future__ import annotations

import time
import traceback
from collections import Counter

import pytest
import torch

from tests.faults.helpers import forkserver
from trainer.store import (
    RunWriter,
    ScalarCursor,
    StoreError,
    last_values,
    list_checkpoints,
    load_checkpoint,
    read_events,
    read_new_scalars,
    read_scalars,
    scan_runs,
)

pytestmark = pytest.mark.slow

WRITERS, READERS, STEPS, NAMES = 3, 3, 240, 8
CUT_AT, CUT_TO = 160, 100  # writer 0 "is resumed": at step 160 it reopens from step 100


def _values(step: int, timeline: int) -> dict[str, float]:
    # every row of a step carries one value, so a torn step or a stale timeline shows
    return {f"m{i}": step + timeline / 10 for i in range(NAMES)}


def _writer(root: str, i: int, errors) -> None:
    try:
        w = RunWriter.create(root, f"w{i}", {}, "dino")
        step, timeline = 1, 0
        while step <= STEPS:
            w.log_scalars(step, 0.0, _values(step, timeline))
            if step % 20 == 0:
                w.save_checkpoint(step, {"w": torch.full((64, 64), float(step))}, {"encoder_prefix": ""}, keep=2)
                w.log_event(step, "info", f"checkpoint {step}")
                w.set_progress(step)
            if i == 0 and step == CUT_AT and timeline == 0:
                w.close()
                w = RunWriter.reopen(f"{root}/w0")
                w.truncate_after(CUT_TO)
                step, timeline = CUT_TO, 1
            step += 1
            time.sleep(0.004)
        w.set_status("finished")
        w.close()
    except Exception:  # noqa: BLE001 - reported to the test
        errors.put(f"writer {i}: {traceback.format_exc()}")


def _reader(root: str, j: int, done, errors, results) -> None:
    try:
        cursors = {f"w{i}": ScalarCursor() for i in range(WRITERS)}
        held: dict[str, list[tuple]] = {r: [] for r in cursors}
        polls = 0
        while True:
            finished = done.is_set()
            runs, damaged = scan_runs(root)
            assert not damaged, damaged
            for run in [r["run_id"] for r in runs]:
                cols, cursors[run], reset = read_new_scalars(f"{root}/{run}", cursors[run])
                rows = list(zip(cols["step"].tolist(), cols["name"].tolist(), cols["value"].tolist()))
                held[run] = rows if reset else held[run] + rows
                per_step = Counter(s for s, _, _ in rows)
                assert all(c % NAMES == 0 for c in per_step.values()), f"torn step in {run}: {per_step}"
                assert all(v == int(v) + (v - int(v)) and int(v) == s for s, _, v in rows)
                last_values(f"{root}/{run}")
                read_events(f"{root}/{run}")
                for ck in list_checkpoints(f"{root}/{run}"):
                    try:
                        t = load_checkpoint(ck.path)["w"]
                    except StoreError:
                        continue  # pruned between listing and loading: allowed; a torn file is not
                    assert torch.all(t == ck.step), f"torn checkpoint {ck.path}"
            polls += 1
            if finished:
                break
        results.put((j, polls, {r: sorted(rows) for r, rows in held.items()}))
    except Exception:  # noqa: BLE001 - reported to the test
        errors.put(f"reader {j}: {traceback.format_exc()}")


def test_trainers_and_readers_share_a_runs_dir_without_locks_losses_or_tears(tmp_path):
    ctx = forkserver()
    root = str(tmp_path)
    done, errors, results = ctx.Event(), ctx.Queue(), ctx.Queue()
    writers = [ctx.Process(target=_writer, args=(root, i, errors)) for i in range(WRITERS)]
    readers = [ctx.Process(target=_reader, args=(root, j, done, errors, results)) for j in range(READERS)]
    for p in writers + readers:
        p.start()
    for p in writers:
        p.join(300)
    done.set()
    got, problems, deadline = [], [], time.time() + 120
    while len(got) + len(problems) < READERS + len([p for p in writers if p.exitcode]) and time.time() < deadline:
        for q, out in ((results, got), (errors, problems)):
            try:
                out.append(q.get(timeout=0.2))
            except Exception:  # noqa: BLE001 - queue.Empty
                pass
    for p in readers:
        p.join(60)
    assert not problems, "\n".join(problems)
    assert len(got) == READERS
    final = {}
    for i in range(WRITERS):  # what the store holds in the end
        cols, _ = read_scalars(tmp_path / f"w{i}")
        final[f"w{i}"] = sorted(zip(cols["step"].tolist(), cols["name"].tolist(), cols["value"].tolist()))
        assert len(final[f"w{i}"]) == STEPS * NAMES  # each step once, the cut tail rewritten
    assert {v for s, _, v in final["w0"] if s > CUT_TO} == {s + 0.1 for s in range(CUT_TO + 1, STEPS + 1)}
    for _, polls, held in got:
        assert polls > 10
        assert held == final  # every reader ends with exactly the store's rows: none lost, none twice
