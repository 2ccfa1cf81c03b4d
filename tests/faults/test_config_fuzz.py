"""Promise: bad input of every kind gives one line naming the problem (exit 2). Config values,
``--set`` strings and whole config files are fuzzed with hypothesis: the only error ever raised
is ``ConfigError`` (before this, ``optim.steps=1e400`` raised OverflowError and ``1e13`` a
MemoryError), the CLI answers in one line naming the field, and every accepted config survives
the run.json round trip that ``resume`` relies on."""

from __future__ import annotations

from dataclasses import fields

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainer.config import Config, ConfigError

KEYS = [f"{s.name}.{f.name}" for s in fields(Config) for f in fields(getattr(Config(), s.name))]
TRICKY = ["1e400", "-1e400", "1e13", "nan", "inf", "-0", "0x10", "1_000", "٣", "1e-400", "9" * 5000, "", " ",
          "true", "None", "[1]", "{}", "\0", "2**64", "18446744073709551616", "-9223372036854775809"]
VALUES = st.one_of(st.text(max_size=20), st.integers(), st.floats(), st.booleans(), st.none(),
                   st.lists(st.integers(), max_size=2), st.sampled_from(TRICKY))
FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=4))
def test_any_values_are_accepted_or_refused_with_a_config_error(items):
    cfg = Config()
    try:
        for key, value in items:
            cfg = cfg.set(key, value)
        cfg = cfg.validate()
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    assert Config.from_dict(cfg.to_dict()).validate() == cfg  # what trains can be resumed from run.json


@FUZZ
@given(st.lists(st.one_of(st.text(max_size=30), st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS),
                                                          st.one_of(st.text(max_size=12), st.sampled_from(TRICKY)))),
                max_size=3))
def test_any_set_strings_are_accepted_or_refused_with_a_config_error(overrides):
    try:
        Config().with_overrides(overrides).validate()
    except ConfigError as e:
        assert "\n" not in str(e)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.sampled_from(["optim", "data", "steps", "lr", "x"]), inner, max_size=3),
                     max_leaves=10)


@FUZZ
@given(st.one_of(_json, st.dictionaries(st.sampled_from([k.split(".")[0] for k in KEYS]),
                                        st.dictionaries(st.sampled_from([k.split(".")[1] for k in KEYS]), VALUES,
                                                        max_size=3), max_size=3)))
def test_any_config_file_content_is_accepted_or_refused_with_a_config_error(tmp_path_factory, content):
    import json

    path = tmp_path_factory.mktemp("cfg") / "c.json"
    try:
        path.write_text(json.dumps(content, allow_nan=True))
    except ValueError:
        return
    try:
        Config.load(path).validate()
    except ConfigError as e:
        assert "\n" not in str(e)


@pytest.fixture
def no_training(monkeypatch):
    """The CLI up to the point where training would start."""
    import trainer.loop

    def train(cfg, progress=False):
        return cfg.run.runs_dir

    monkeypatch.setattr(trainer.loop, "train", train)


@settings(FUZZ, max_examples=400)
@given(key=st.sampled_from(KEYS), value=st.one_of(st.text(max_size=12), st.sampled_from(TRICKY)))
def test_the_cli_answers_any_set_in_one_line_naming_the_field(no_training, capsys, tmp_path_factory, key, value):
    from trainer.__main__ import main

    if "\0" in value:  # an argv string cannot hold a NUL byte
        return
    capsys.readouterr()
    code = main(["train", "--runs-dir", str(tmp_path_factory.mktemp("runs")), "--set", f"{key}={value}"])
    err = capsys.readouterr().err.strip()
    assert code in (0, 2)
    if code == 2:
        assert len(err.splitlines()) == 1 and err.startswith("error: ")
        assert key in err or "needs the form" in err, err
