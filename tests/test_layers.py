"""Imports run one way: core -> trainer (config -> data -> models -> methods -> loop, store)
-> sslscope (the library for other trainers' loops) -> analysis -> dashboard ->
streamlit_app.py, and no dashboard page imports another page.

Every ``import`` of every module (inside functions and ``TYPE_CHECKING`` blocks too) is read
with ``ast``, resolved to a module of this repository, and its layer compared.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "trainer", "sslscope", "analysis", "dashboard")
# core is the leaf: the standard library and these only
CORE_THIRD_PARTY = {"torch", "numpy", "timm"}
# trainer modules below the methods, in order; every other trainer module is the top (loop, store, ...)
TRAINER_LAYERS = (("trainer.config", "trainer.schedules"), ("trainer.data",), ("trainer.models",),
                  ("trainer.methods",))


def _in(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer(module: str) -> tuple[int, int]:
    """(package rank, rank inside trainer) of a repository module; higher = further up."""
    if _in(module, "core"):
        return (0, 0)
    if _in(module, "trainer"):
        for rank, prefixes in enumerate(TRAINER_LAYERS):
            if any(_in(module, p) for p in prefixes):
                return (1, rank)
        return (1, len(TRAINER_LAYERS))
    if _in(module, "sslscope"):
        return (2, 0)
    if _in(module, "analysis"):
        return (3, 0)
    if _in(module, "dashboard"):
        return (4, 0)
    assert module == "streamlit_app", module
    return (5, 0)


def page_modules() -> set[str]:
    from dashboard.navigation import PAGE_MODULES

    return {f"dashboard.{m}" for m in PAGE_MODULES.values()}


def module_files(root: Path = REPO) -> dict[str, Path]:
    """Module name -> file, for every module of the layered packages and streamlit_app.py."""
    out = {"streamlit_app": root / "streamlit_app.py"} if (root / "streamlit_app.py").is_file() else {}
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = f
    return out


def imports(name: str, path: Path, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, resolved to the deepest known module
    (``from trainer import store`` is ``trainer.store``); third-party names as written."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for a in node.names:
                full = f"{base}.{a.name}"
                out.append((node.lineno, full if full in known else base))
    return out


def violations(root: Path = REPO, pages: set[str] | None = None) -> tuple[list[str], int]:
    """The upward imports, page-to-page imports and stray third-party imports of core, and how
    many repository imports were checked."""
    files = module_files(root)
    known = set(files)
    pages = page_modules() if pages is None else pages
    bad, checked = [], 0
    for name, path in files.items():
        where = path.relative_to(root)
        for line, target in imports(name, path, known):
            top = target.split(".")[0]
            if top not in (*PACKAGES, "streamlit_app"):
                if _in(name, "core") and top not in CORE_THIRD_PARTY and top not in sys.stdlib_module_names:
                    bad.append(f"{where}:{line} imports {target}: core may import only torch, numpy, timm")
                if top == "streamlit" and layer(name) < layer("dashboard"):
                    bad.append(f"{where}:{line} imports {target}: only the dashboard uses streamlit")
                continue
            checked += 1
            if layer(target) > layer(name):
                bad.append(f"{where}:{line} imports {target}, a layer above {name}")
            if target in pages and target != name:
                bad.append(f"{where}:{line} imports the page {target}; pages never import pages")
    return bad, checked


def test_every_import_points_down_and_no_page_imports_a_page():
    bad, checked = violations()
    assert checked > 150, f"only {checked} imports read: is the walk broken?"
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


@pytest.mark.parametrize("module, line, why", [
    ("trainer/data/loader.py", "from trainer.methods.base import Batch", "a layer above"),
    ("core/knn.py", "import analysis.scores", "a layer above"),
    ("core/knn.py", "import sklearn", "core may import only"),
    ("trainer/models/backbone.py", "    from trainer.loop import train", "a layer above"),  # inside a function
    ("dashboard/compare.py", "from dashboard import live", "pages never import pages"),
    ("analysis/scores.py", "import streamlit as st", "only the dashboard uses streamlit"),
    ("trainer/config.py", "from .data import views", "a layer above"),  # relative
])
def test_the_check_catches_each_kind_of_wrong_import(tmp_path, module, line, why):
    for f in (REPO / p for p in ("core/knn.py", "trainer/data/loader.py", "trainer/models/backbone.py",
                                 "dashboard/compare.py", "analysis/scores.py", "trainer/config.py")):
        dest = tmp_path / f.relative_to(REPO)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(f.read_text())
    for init in ("core", "trainer", "trainer/data", "trainer/models", "trainer/methods", "trainer/loop",
                 "analysis", "dashboard"):
        (tmp_path / init).mkdir(parents=True, exist_ok=True)
    (tmp_path / "trainer/loop.py").write_text("")
    (tmp_path / "trainer/methods/base.py").write_text("")
    (tmp_path / "trainer/data/views.py").write_text("")
    (tmp_path / "dashboard/live.py").write_text("")
    pages = {"dashboard.compare", "dashboard.live"}
    assert violations(tmp_path, pages)[0] == []  # the copies as they are: clean
    path = tmp_path / module
    text = path.read_text()
    if line.startswith("    "):  # a lazy import inside the first function
        head, _, rest = text.partition("\ndef ")
        first_line_end = rest.index("\n")
        text = head + "\ndef " + rest[:first_line_end + 1] + line + "\n" + rest[first_line_end + 1:]
    else:
        text = text + "\n" + line + "\n"
    path.write_text(text)
    bad, _ = violations(tmp_path, pages)
    assert len(bad) == 1 and why in bad[0] and module in bad[0], bad


def test_the_monitor_library_imports_core_and_the_store_only():
    """sslscope runs inside other trainers: of this repository it may import core and
    trainer.store (with what the store imports), never the methods (timm, seconds) or above."""
    files = module_files()
    store_deps = {"trainer", "trainer.store", "trainer.liveness", "trainer.lock", "trainer.metrics_db",
                  "trainer.run_info", "trainer.config"}
    bad = []
    for name, path in files.items():
        if not _in(name, "sslscope"):
            continue
        for line, target in imports(name, path, set(files)):
            top = target.split(".")[0]
            if top in PACKAGES and not (_in(target, "core") or _in(target, "sslscope") or target in store_deps):
                bad.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not bad, "\n".join(bad)
    import subprocess

    code = ("import sys, sslscope.monitor; "
            "print(sorted(m for m in sys.modules if m == 'timm' or m.startswith('trainer.m')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-1000:]
    assert out.stdout.strip() == "['trainer.metrics_db']", out.stdout  # no timm, no trainer.methods / models
