"""Shared by the fault tests: a tiny training config, the CLI in a subprocess or in-process, and
mounts (a tiny tmpfs, a read-only bind) that need root; tests needing them skip without."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from trainer.config import Config

REPO = Path(__file__).resolve().parents[2]
_BAR = re.compile(r"\d+/\d+ \[")  # a tqdm progress line: "12/40 [00:01<00:03, ...]"

TINY = [
    "model.preset=custom", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.patch_size=4",
    "data.image_size=16", "data.num_train=128", "data.num_val=32", "data.batch_size=16", "data.num_workers=0",
    "dino.out_dim=16", "dino.hidden_dim=32", "dino.bottleneck_dim=16", "dino.n_local=2",
    "optim.warmup_steps=3", "dino.freeze_last_layer_steps=2", "run.log_every=1", "run.eval_every=1000",
    "run.probe_size=4", "run.device=cpu", "run.knn_k=5",
]


def tiny(root: Path, name: str, *extra: str) -> Config:
    return Config().with_overrides(TINY + [f"run.runs_dir={root}", f"run.name={name}", *extra]).validate()


def tiny_argv(root: Path, name: str, *extra: str) -> list[str]:
    """``train`` arguments of :func:`tiny`, for the CLI."""
    sets = TINY + [f"run.runs_dir={root}", f"run.name={name}", *extra]
    return ["train", *[x for s in sets for x in ("--set", s)]]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def cli(*args: str, timeout: float = 180, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m trainer ARGS`` in a fresh process (exit code and stderr as a user sees them)."""
    return subprocess.run([sys.executable, "-m", "trainer", *args], capture_output=True, text=True,
                          timeout=timeout, env=env(), cwd=cwd or REPO)


def start_cli(*args: str, log: Path) -> subprocess.Popen:
    """``python -m trainer ARGS`` started in the background, its output to ``log`` (a pipe
    could fill up with progress bars and block it)."""
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "trainer", *args], env=env(), cwd=REPO,
                                stdout=out, stderr=out, text=True)


def main_in_process(argv: list[str], capsys) -> tuple[int, str]:
    """``trainer.__main__.main(argv)`` here (no interpreter start-up): (exit code, stderr)."""
    from trainer.__main__ import main

    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err


def one_line(stderr: str) -> str:
    """The only line of ``stderr`` (progress-bar noise aside), asserted to be no traceback."""
    lines = [ln for ln in stderr.replace("\r", "\n").splitlines() if ln.strip() and not _BAR.search(ln)]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(lines) == 1, lines
    return lines[0]


def forkserver():
    """The multiprocessing context of the fault tests: children fork from one server that has
    imported torch and the trainer once (milliseconds per child instead of seconds). The server
    is one per test session, so every fault test asks for the same preload."""
    import multiprocessing as mp

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.faults.kill_child"])
    return ctx


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def tmpfs(size: str) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` (e.g. "3m"): a disk that fills up for real. Skips without root."""
    where = Path(tempfile.mkdtemp(prefix="sslscope-tmpfs-"))
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)):
        where.rmdir()
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
        with contextlib.suppress(OSError):
            where.rmdir()


@contextlib.contextmanager
def read_only_view(src: Path) -> Iterator[Path]:
    """``src`` seen through a read-only bind mount (as a read-only share or USB stick would be).
    Skips without root."""
    where = Path(tempfile.mkdtemp(prefix="sslscope-ro-"))
    if os.geteuid() != 0 or not _mount("--bind", str(src), str(where)):
        where.rmdir()
        pytest.skip("a read-only bind mount needs root")
    try:
        if not _mount("-o", "remount,bind,ro", str(where)):
            pytest.skip("remounting read-only is not permitted here")
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
        with contextlib.suppress(OSError):
            where.rmdir()
