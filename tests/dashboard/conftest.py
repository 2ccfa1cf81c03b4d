"""Fixture run stores for the dashboard tests and a helper that opens one page in AppTest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard.fixture_runs import train_store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def real_store(tmp_path_factory) -> Path:
    """Real short runs: dino, mae, ijepa and the 4-arm group 'cs' (checkpoints, probes)."""
    return train_store(tmp_path_factory.mktemp("real") / "runs", steps=10, arm_steps=6)


def page_app(page: str, root: Path, monkeypatch, timeout: float = 60) -> AppTest:
    """AppTest running one dashboard page (``dashboard.<page>.render``) on the runs in ``root``."""
    monkeypatch.setenv("SSLSCOPE_RUNS", str(root))
    monkeypatch.chdir(REPO)
    return AppTest.from_string(f"from dashboard.{page} import render\nrender()\n", default_timeout=timeout)


def no_exception(at: AppTest) -> None:
    """Fail with the page's own traceback text if any element is an exception."""
    assert not at.exception, [e.value for e in at.exception] + [e.stack_trace for e in at.exception]


def plotly_specs(at: AppTest) -> dict[str, dict]:
    """Every plotly chart on the page by key: its figure as a dict."""
    import json

    out = {}
    for el in at.get("plotly_chart"):
        key = el.proto.id.split("-", 2)[-1]  # ids read "$$ID-<hash>-<user key>"
        out[key] = json.loads(el.proto.spec)
    return out


def plotly_array(value) -> np.ndarray:
    """A trace's x or y from a figure spec: a list, or plotly's base64 typed array."""
    import base64

    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value)
