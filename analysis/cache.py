"""Analysis results cached on disk, keyed by checkpoint content and parameters.

A result is a dict of numpy arrays and JSON values (or a flat dataclass of them), stored as one
``<kind>-<key>.npz`` under a run's ``analysis/`` folder (external checkpoints: beside
``$SSLSCOPE_CACHE``, default ``~/.cache/sslscope/analysis``). The key hashes the checkpoint's
content hash, the parameters and ``CACHE_VERSION``, so a retrained checkpoint at the same path
or a different parameter never returns a stale result, and a second call -- also in a new
process -- reads the file instead of recomputing.

Content hashes (sha256 of the file bytes) are memoised per (path, size, mtime) in the cache
folder's ``fingerprints.json``, so a large weights file is hashed once. Writes go to a temporary
name and are renamed; an unreadable entry is deleted and recomputed, never fatal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from trainer.store import atomic_write_bytes, atomic_write_json

CACHE_VERSION = 1  # bump when a result's meaning changes, to invalidate old entries
_JSON = "__json__"
T = TypeVar("T")


def default_cache_root() -> Path:
    """Where results of checkpoints outside a run folder go."""
    return Path(os.environ.get("SSLSCOPE_CACHE", Path.home() / ".cache" / "sslscope" / "analysis"))


def file_hash(path: Path | str, memo_dir: Path | None = None) -> str:
    """sha256 (hex) of a file's bytes; memoised in ``memo_dir/fingerprints.json`` by
    (absolute path, size, mtime_ns), so an unchanged file is read once."""
    p = Path(path).resolve()
    st = p.stat()
    ident = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    memo_file = memo_dir / "fingerprints.json" if memo_dir is not None else None
    memo: dict[str, str] = {}
    if memo_file is not None and memo_file.is_file():
        try:
            memo = json.loads(memo_file.read_text())
        except (OSError, json.JSONDecodeError):
            memo = {}
        if ident in memo:
            return memo[ident]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    digest = h.hexdigest()
    if memo_file is not None:
        memo[ident] = digest
        try:
            atomic_write_json(memo_file, memo)
        except OSError:
            pass  # a read-only folder: hash again next time
    return digest


def result_key(kind: str, checkpoint: str, params: dict[str, Any]) -> str:
    """Stable hex key of (kind, checkpoint content hash, parameters, cache version)."""
    blob = json.dumps({"kind": kind, "ckpt": checkpoint, "params": params, "v": CACHE_VERSION},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def encode_result(result: dict[str, Any]) -> bytes:
    """npz bytes: arrays as entries, everything else as one JSON string (no pickle)."""
    arrays = {k: v for k, v in result.items() if isinstance(v, np.ndarray)}
    rest = {k: _jsonable(v) for k, v in result.items() if not isinstance(v, np.ndarray)}
    if any(a.dtype == object for a in arrays.values()):
        raise TypeError("object arrays cannot be cached without pickle; convert them to str or numbers")
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{_JSON: np.array(json.dumps(rest))})
    return buf.getvalue()


def decode_result(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as z:
        out: dict[str, Any] = {k: z[k] for k in z.files if k != _JSON}
        out.update(json.loads(str(z[_JSON])))
    return out


class ResultCache:
    """One folder of cached results."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def path(self, kind: str, checkpoint: str, params: dict[str, Any]) -> Path:
        return self.root / f"{kind}-{result_key(kind, checkpoint, params)}.npz"

    def get(self, kind: str, checkpoint: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """The stored result, or None if absent or unreadable (an unreadable one is removed)."""
        p = self.path(kind, checkpoint, params)
        if not p.is_file():
            return None
        try:
            return decode_result(p)
        except Exception as e:  # noqa: BLE001 - any damage means: recompute
            warnings.warn(f"cached result '{p.name}' was unreadable ({type(e).__name__}); recomputing", stacklevel=2)
            p.unlink(missing_ok=True)
            return None

    def put(self, kind: str, checkpoint: str, params: dict[str, Any], result: dict[str, Any]) -> Path:
        p = self.path(kind, checkpoint, params)
        atomic_write_bytes(p, encode_result(result))
        return p

    def cached(self, kind: str, checkpoint: str, params: dict[str, Any],
               compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``compute()``'s result, from disk when present; stored otherwise."""
        hit = self.get(kind, checkpoint, params)
        if hit is not None:
            return hit
        result = compute()
        try:
            self.put(kind, checkpoint, params, result)
        except OSError as e:  # a read-only run folder still gets its answer
            warnings.warn(f"could not cache '{kind}' in '{self.root}' ({e})", stacklevel=2)
        return result

    def cached_dataclass(self, cls: type[T], kind: str, checkpoint: str, params: dict[str, Any],
                         compute: Callable[[], T]) -> T:
        """``cached`` for a flat dataclass whose fields are arrays or JSON values."""
        d = self.cached(kind, checkpoint, params, lambda: dataclasses.asdict(compute()))
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
