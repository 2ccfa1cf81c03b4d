"""Config: every bad value is refused with one line naming field, value and what is allowed."""

import json

import pytest

from trainer.config import Config, ConfigError


@pytest.mark.parametrize("override, fragment", [
    ("run.method=simclr", "run.method='simclr' is not allowed; choose one of: dino, mae, ijepa"),
    ("data.name=cifar", "data.name='cifar'"),
    ("optim.lr=-1", "optim.lr=-1.0 must be a positive"),
    ("optim.lr=abc", "optim.lr='abc' is not valid; it must be a number"),
    ("mae.mask_ratio=1.0", "mae.mask_ratio=1.0 is out of range"),
    ("dino.center_momentum=1.5", "dino.center_momentum=1.5 is out of range"),
    ("dino.hue_jitter=0.7", "dino.hue_jitter=0.7 is out of range; it must lie in [0.0, 0.5]"),
    ("dino.grayscale_p=-0.1", "dino.grayscale_p=-0.1 is out of range; it must lie in [0.0, 1.0]"),
    ("data.batch_size=1", "data.batch_size=1 is too small"),
    ("dino.sharpening=maybe", "dino.sharpening='maybe' is not valid; it must be true or false"),
    ("dino.centering=median", "dino.centering='median'"),
    ("data.image_size=30", "must be a multiple of the patch size 4"),
    ("optim.nosuch=1", "unknown field 'optim.nosuch'"),
    ("nosuch.x=1", "unknown config section 'nosuch'"),
    ("run.name=../etc", "run.name='../etc' may use letters"),
    ("mae.decoder_dim=66", "mae.decoder_dim=66 must be divisible by mae.decoder_heads=4 and by 4"),
    ("ijepa.pred_dim=30", "ijepa.pred_dim=30 must be divisible by 4"),
])
def test_bad_values_are_refused_with_a_clear_line(override, fragment):
    with pytest.raises(ConfigError) as e:
        Config().with_overrides([override]).validate()
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_overrides_parse_types_and_roundtrip_through_files(tmp_path):
    cfg = Config().with_overrides(["optim.lr=5e-4", "dino.sharpening=false", "model.reg_tokens=4", "data.path=/x"])
    assert cfg.optim.lr == 5e-4 and cfg.dino.sharpening is False and cfg.model.reg_tokens == 4
    p = tmp_path / "c.json"
    p.write_text(json.dumps(cfg.to_dict()))
    assert Config.load(p) == cfg
    y = tmp_path / "c.yaml"
    y.write_text("optim:\n  lr: 0.002\ndino:\n  out_dim: 32\n")
    loaded = Config.load(y)
    assert loaded.optim.lr == 0.002 and loaded.dino.out_dim == 32
    (tmp_path / "bad.yaml").write_text("optim: [1, 2")
    with pytest.raises(ConfigError, match="could not be parsed"):
        Config.load(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        Config.load(tmp_path / "missing.yaml")


def test_folder_needs_a_path_and_warmup_fits():
    with pytest.raises(ConfigError, match="needs data.path"):
        Config().with_overrides(["data.name=folder"]).validate()
    with pytest.raises(ConfigError, match="exceeds optim.steps"):
        Config().with_overrides(["optim.steps=10", "optim.warmup_steps=20"]).validate()
