"""Cache: a second call (also from a new process) does not recompute; keys follow content and
parameters; a corrupt entry is recomputed."""

import subprocess
import sys
import textwrap
from dataclasses import dataclass

import numpy as np
import pytest

from analysis.cache import ResultCache, file_hash


def test_second_call_reads_disk_and_new_process_too(tmp_path):
    cache = ResultCache(tmp_path / "analysis")
    calls = []

    def compute():
        calls.append(1)
        return {"coords": np.arange(6.0).reshape(3, 2), "top1": 0.75, "names": ["a", "b"], "n": np.int64(3)}

    a = cache.cached("umap", "abc123", {"seed": 0}, compute)
    b = cache.cached("umap", "abc123", {"seed": 0}, compute)
    assert len(calls) == 1
    np.testing.assert_array_equal(a["coords"], b["coords"])
    assert b["top1"] == 0.75 and b["names"] == ["a", "b"] and b["n"] == 3
    cache.cached("umap", "abc123", {"seed": 1}, compute)  # other parameters: computed
    cache.cached("umap", "def456", {"seed": 0}, compute)  # other checkpoint: computed
    assert len(calls) == 3
    assert not list((tmp_path / "analysis").glob(".*tmp*"))  # no temporary files left behind
    code = textwrap.dedent(f"""
        from analysis.cache import ResultCache
        def boom():
            raise SystemExit("recomputed in the new process")
        r = ResultCache({str(tmp_path / 'analysis')!r}).cached("umap", "abc123", {{"seed": 0}}, boom)
        assert r["coords"].sum() == 15.0, r
        print("hit")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "hit" in out.stdout, out.stderr


def test_corrupt_entry_is_recomputed(tmp_path):
    cache = ResultCache(tmp_path)
    cache.put("knn", "h", {}, {"top1": 0.5})
    cache.path("knn", "h", {}).write_bytes(b"PK\x03\x04 truncated")
    with pytest.warns(UserWarning, match="unreadable"):
        r = cache.cached("knn", "h", {}, lambda: {"top1": 0.9})
    assert r["top1"] == 0.9
    assert cache.get("knn", "h", {})["top1"] == 0.9  # the fresh result replaced the damaged one


@dataclass
class _Result:
    values: np.ndarray
    label: str
    score: float


def test_dataclass_round_trip(tmp_path):
    cache = ResultCache(tmp_path)
    r = cache.cached_dataclass(_Result, "x", "h", {"k": 20}, lambda: _Result(np.ones(3), "ok", 0.25))
    again = cache.cached_dataclass(_Result, "x", "h", {"k": 20}, lambda: pytest.fail("recomputed"))
    assert isinstance(again, _Result) and again.label == "ok" and again.score == 0.25
    np.testing.assert_array_equal(again.values, r.values)


def test_file_hash_follows_content_and_is_memoised(tmp_path):
    f = tmp_path / "w.safetensors"
    f.write_bytes(b"weights v1")
    h1 = file_hash(f, tmp_path)
    assert (tmp_path / "fingerprints.json").is_file()
    assert file_hash(f, tmp_path) == h1
    f.write_bytes(b"weights v2!")  # retrained in place: new size and mtime, new key
    assert file_hash(f, tmp_path) != h1
    import hashlib

    assert file_hash(f) == hashlib.sha256(b"weights v2!").hexdigest()
