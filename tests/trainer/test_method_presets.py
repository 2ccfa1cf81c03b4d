"""--preset dinov2 / dinov3: the recipes set exactly their fields, after the flags and before
--set, and the run keeps the resulting values (never the preset's name)."""

import pytest

from trainer.__main__ import build_parser, config_from_args
from trainer.config import Config, ConfigError
from trainer.method_presets import apply_preset


def _cfg(*argv):
    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_defaults_have_ibot_and_gram_off():
    d = Config().dino
    assert d.ibot_weight == 0 and d.gram_weight == 0  # plain DINO unless asked


def test_dinov2_turns_ibot_on_and_changes_nothing_else():
    base, v2 = Config().to_dict(), apply_preset(Config(), "dinov2").to_dict()
    changed = {(s, k) for s in base for k in base[s] if base[s][k] != v2[s][k]}
    assert changed == {("dino", "ibot_weight")} and v2["dino"]["ibot_weight"] == 1.0


def test_dinov3_scales_the_gram_steps_with_the_run_and_picks_the_dinov3_backbone():
    cfg = _cfg("--preset", "dinov3", "--steps", "1000")
    d = cfg.dino
    assert cfg.model.preset == "dinov3-cpu-tiny" and d.ibot_weight == 1.0
    assert (d.gram_weight, d.gram_teacher_step, d.gram_start, d.gram_ramp_steps) == (2.0, 100, 500, 50)
    assert _cfg("--preset", "dinov3", "--set", "model.preset=cpu-small").model.preset == "cpu-small"  # --set wins
    assert _cfg("--preset", "dinov3", "--set", "model.preset=cpu-small").dino.gram_weight == 2.0
    assert _cfg("--preset", "dinov3", "--set", "dino.gram_start=40").dino.gram_start == 40


def test_unknown_presets_and_backbones_are_refused():
    with pytest.raises(ConfigError, match="not known"):
        apply_preset(Config(), "dinov4")
    with pytest.raises(ConfigError, match="no DINOv3 backbone"):
        apply_preset(Config().set("model.preset", "vit-tiny"), "dinov3")
