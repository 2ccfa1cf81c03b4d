"""Break 4 (input half): ``--set optim.steps=1e400`` (OverflowError) and ``1e13`` (MemoryError),
a 300-character ``--name``, and ``--runs-dir`` set to a read-only mount, /proc, a regular file
or /dev/null ended in 20-41 lines of traceback, the runs-dir ones only after the data had
loaded; a run failing in ``build_loader`` (a batch larger than the data) left a folder that
lingered as "stopped (killed?)" with its name taken. Promise: one line naming the problem and
the fix (exit 2), before any data loads where that can be known, and nothing left behind."""

from __future__ import annotations

import pytest

from tests.faults.helpers import TINY, cli, main_in_process, one_line, read_only_view, tiny_argv
from trainer.store import list_runs, scan_runs

# data that would fail to load: an error about the runs directory proves it came first
NO_DATA = ["--data", "folder", "--data-path", "/nonexistent/images"]


@pytest.mark.parametrize("setting, words", [
    ("optim.steps=1e400", ["optim.steps='1e400' is not valid", "whole number"]),
    ("optim.steps=1e13", ["optim.steps=10000000000000 is too large", "<= 10000000"]),
    ("data.batch_size=1e9", ["data.batch_size=1000000000 is too large"]),
    ("optim.lr=1e400", ["optim.lr=inf must be a positive finite number"]),
    ("run.seed=-1", ["run.seed=-1 is out of range"]),
    ("data.num_train=100000000", ["memory", "lower data.num_train"]),
    ("data.path=a\0b", ["NUL byte"]),
])
def test_bad_config_values_are_one_line(tmp_path, capsys, setting, words):
    code, err = main_in_process(["train", "--runs-dir", str(tmp_path), "--set", setting], capsys)
    assert code == 2
    line = one_line(err)
    assert all(w in line for w in words), line


def test_a_300_character_name_is_one_line(tmp_path, capsys):
    code, err = main_in_process(["train", "--runs-dir", str(tmp_path), "--name", "n" * 300], capsys)
    assert code == 2
    assert "run.name is 300 characters long; at most 100" in one_line(err)
    assert not any(tmp_path.iterdir())


def test_a_bad_value_through_the_real_cli_is_one_line_and_no_traceback(tmp_path):
    r = cli("train", "--runs-dir", str(tmp_path), "--set", "optim.steps=1e400")
    assert r.returncode == 2 and "optim.steps='1e400' is not valid" in one_line(r.stderr)


@pytest.mark.parametrize("where", ["/proc", "/dev/null", "file"])
def test_an_unusable_runs_dir_is_refused_before_the_data_loads(tmp_path, capsys, where):
    if where == "file":
        where = str(tmp_path / "notes.txt")
        (tmp_path / "notes.txt").write_text("not a folder")
    code, err = main_in_process(["train", "--runs-dir", where, *NO_DATA], capsys)
    assert code == 2
    line = one_line(err)
    assert f"runs directory '{where}'" in line and "/nonexistent/images" not in line


def test_a_read_only_runs_dir_is_refused_before_the_data_loads(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    with read_only_view(tmp_path / "runs") as ro:
        code, err = main_in_process(["train", "--runs-dir", str(ro), *NO_DATA], capsys)
    assert code == 2
    line = one_line(err)
    assert f"runs directory '{ro}' is not writable (Read-only file system)" in line


def test_a_failed_set_up_leaves_no_folder_and_the_name_free(tmp_path, capsys):
    # a batch larger than the data fails in build_loader, after the data has loaded
    argv = tiny_argv(tmp_path, "big-batch", "data.num_train=8", "data.batch_size=16", "optim.steps=2")
    code, err = main_in_process(argv, capsys)
    assert code == 2 and "one step needs 16" in one_line(err)
    assert scan_runs(tmp_path) == ([], []) and not (tmp_path / "big-batch").exists()
    code, _ = main_in_process(tiny_argv(tmp_path, "big-batch", "optim.steps=2"), capsys)  # the name is free
    assert code == 0 and [r["status"] for r in list_runs(tmp_path)] == ["finished"]


def test_a_taken_name_is_refused_before_the_data_loads(tmp_path, capsys):
    assert main_in_process(tiny_argv(tmp_path, "taken", "optim.steps=1"), capsys)[0] == 0
    sets = [x for s in TINY for x in ("--set", s)]
    code, err = main_in_process(["train", "--runs-dir", str(tmp_path), "--name", "taken", *sets, *NO_DATA], capsys)
    assert code == 2
    assert "already exists; pick another --name, or continue it with" in one_line(err)
