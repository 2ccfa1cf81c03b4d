"""Break 1: one damaged run.json took the whole dashboard down (``list_runs`` caught only
StoreError, so ``[]``, ``null``, non-UTF-8 bytes, a string config or ``"started": "x"`` raised,
and every page failed in AppTest). Promise: a damaged run shows as damaged with its reason,
every other run still shows, and every page renders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.dashboard.conftest import no_exception, page_app
from tests.dashboard.synthetic import write_run
from trainer.store import StoreError, list_runs, read_run_info, scan_runs

# folder -> (run.json bytes built from a good run.json, a word the reason must contain)
DAMAGE = {
    "empty-list": (lambda good: b"[]", "list"),
    "null": (lambda good: b"null", "NoneType"),
    "not-utf8": (lambda good: b"\xff\xfe{\x00\x81 broken", "utf-8"),
    "not-json": (lambda good: good[: len(good) // 2], "column"),
    "config-string": (lambda good: _edit(good, config="dino please"), "'config'"),
    "started-x": (lambda good: _edit(good, started="x"), "'started'"),
    "started-huge": (lambda good: _edit(good, started=1e300), "not a date"),
    "status-odd": (lambda good: _edit(good, status="sleeping"), "status"),
    "section-string": (lambda good: _edit(good, config={"optim": "fast"}), "optim"),
    "steps-text": (lambda good: _edit(good, config={"optim": {"steps": "many"}}), "optim.steps"),
    "pid-text": (lambda good: _edit(good, pid="1234"), "'pid'"),
}


def _edit(good: bytes, **fields) -> bytes:
    return json.dumps({**json.loads(good), **fields}).encode()


def _store(root: Path) -> Path:
    """One good run and, next to it, one copy of it per kind of damage."""
    write_run(root, "good", "dino", steps=10)
    good = (root / "good" / "run.json").read_bytes()
    for name, (damage, _) in DAMAGE.items():
        write_run(root, name, "dino", steps=4)
        (root / name / "run.json").write_bytes(damage(good))
    return root


def test_every_damage_is_reported_with_its_reason_and_the_good_run_still_lists(tmp_path):
    root = _store(tmp_path / "runs")
    runs, damaged = scan_runs(root)
    assert [r["run_id"] for r in runs] == ["good"]
    assert [r["run_id"] for r in list_runs(root)] == ["good"]
    reasons = {d["run_id"]: d["reason"] for d in damaged}
    assert set(reasons) == set(DAMAGE)
    for name, (_, word) in DAMAGE.items():
        assert word in reasons[name], (name, reasons[name])
        assert "\n" not in reasons[name]
        with pytest.raises(StoreError, match="damaged"):
            read_run_info(root / name)
    assert {d["status"] for d in damaged} == {"damaged"}


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=8)


@pytest.fixture(scope="module")
def good_json(tmp_path_factory) -> bytes:
    root = tmp_path_factory.mktemp("good")
    write_run(root, "good", "mae", steps=2)
    return (root / "good" / "run.json").read_bytes()


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(field=st.sampled_from(["config", "status", "started", "ended", "pid", "pid_start", "step", "host",
                              "reason", "method", "group", "versions", "boot_id"]), value=_json,
       whole=st.one_of(st.none(), _json))
def test_fuzzed_run_json_reads_or_is_damaged_never_raises(tmp_path_factory, good_json, field, value, whole):
    root = tmp_path_factory.mktemp("fuzz")
    for name, text in [("good", good_json),
                       ("bad", _edit(good_json, **{field: value}) if whole is None else json.dumps(whole).encode())]:
        (root / name).mkdir()
        (root / name / "run.json").write_bytes(text)
    runs, damaged = scan_runs(root)
    assert "good" in [r["run_id"] for r in runs]
    assert len(runs) + len(damaged) == 2
    for info in runs:  # what readers rely on holds for every run that reads
        assert isinstance(info["config"], dict) and all(isinstance(v, dict) for v in info["config"].values())
        assert info["started"] is None or isinstance(info["started"], (int, float))
        assert isinstance(info["step"], int) and info["status"] in ("running", "finished", "failed", "stopped")


@pytest.mark.slow
@pytest.mark.parametrize("page", ["runs", "live", "compare", "inspect", "guide", "first_start"])
def test_every_page_renders_next_to_damaged_runs(tmp_path, monkeypatch, page):
    root = _store(tmp_path / "runs")
    at = page_app(page, root, monkeypatch)
    if page in ("live", "compare"):
        at.session_state["selected_runs"] = ["good"]
    at.run()
    no_exception(at)
    if page == "runs":
        df = at.dataframe[0].value
        assert set(df["run"]) == {"good", *DAMAGE}
        bad = df[df["run"] != "good"]
        assert set(bad["status"]) == {"damaged"} and bad["reason"].str.contains("damaged").all()
        assert df.loc[df["run"] == "good", "status"].item() == "finished"


@pytest.mark.slow
def test_the_whole_app_renders_next_to_damaged_runs(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.dashboard.conftest import REPO

    root = _store(tmp_path / "runs")
    monkeypatch.setenv("SSLSCOPE_RUNS", str(root))
    monkeypatch.chdir(REPO)
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60).run()
    no_exception(at)
    assert set(at.dataframe[0].value["run"]) == {"good", *DAMAGE}
