"""CLI: bad inputs are refused before training with one clear line (exit 2), not a traceback."""

import subprocess
import sys

import pytest


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "trainer", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, fragment", [
    (["train", "--set", "optim.lr=-3"], "optim.lr=-3.0 must be a positive finite number"),
    (["train", "--set", "dino.centering=sometimes"], "dino.centering='sometimes' is not allowed"),
    (["train", "--set", "oops"], "needs the form section.field=value"),
    (["train", "--config", "/nonexistent/cfg.yaml"], "config file '/nonexistent/cfg.yaml' does not exist"),
    (["train", "--data", "fashion-mnist", "--data-path", "/nonexistent/fm"],
     "sudo apt-get install dataset-fashion-mnist"),
    (["train", "--data", "folder"], "needs data.path"),
    (["resume", "/nonexistent/run"], "run folder '/nonexistent/run' does not exist"),
])
def test_bad_input_gives_one_clear_line(args, fragment, tmp_path):
    r = run_cli(*args, "--runs-dir", str(tmp_path)) if args[0] != "resume" else run_cli(*args)
    assert r.returncode == 2, r.stderr
    assert fragment in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_folders_with_nothing_usable(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    (junk / "fake.png").write_text("not a png")
    (junk / "zero.jpg").write_bytes(b"")
    for folder in (empty, junk):
        r = run_cli("train", "--data", "folder", "--data-path", str(folder), "--runs-dir", str(tmp_path / "runs"))
        assert r.returncode == 2
        assert str(folder) in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing half-created


def test_help_says_what_to_try():
    r = run_cli("train", "--help")
    assert r.returncode == 0 and "--set" in r.stdout and "centering" in r.stdout
