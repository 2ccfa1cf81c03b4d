"""Metric names are declared once (``core.metrics``): every name a real run of each method logs
(its step stats, the loop's, the probe's and the evaluation's) has a declaration, hence a Guide
entry, and every declaration is logged by one of these runs."""

from __future__ import annotations

import numpy as np

from core.metrics import FAMILIES, METRICS, PROGRESS, family_names
from trainer.config import Config
from trainer.loop import train
from trainer.store import read_scalars

TINY = ["model.preset=custom", "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.patch_size=4",
        "data.image_size=16", "data.num_train=64", "data.num_val=32", "data.batch_size=8", "data.num_workers=0",
        "dino.out_dim=16", "dino.hidden_dim=32", "dino.bottleneck_dim=16", "dino.n_local=1",
        "mae.decoder_dim=32", "mae.decoder_depth=1", "mae.decoder_heads=2", "ijepa.pred_dim=32",
        "ijepa.pred_depth=1", "optim.steps=2", "optim.warmup_steps=1", "run.log_every=1", "run.eval_every=2",
        "run.ckpt_every=2", "run.probe_size=2", "run.device=cpu"]
# each method with its optional terms on: registers (tokens/register_attn_share), KoLeo (dino/koleo),
# iBOT (ibot/*) and Gram anchoring from step 1 (gram/*), I-JEPA's EMA target (ema/momentum) and
# regulariser (ijepa/reg)
RUNS = {"dino": ["model.reg_tokens=1", "dino.koleo_weight=0.1", "dino.ibot_weight=1", "dino.gram_weight=1",
                 "dino.gram_teacher_step=0", "dino.gram_start=1", "dino.gram_ramp_steps=1"], "mae": [],
        "ijepa": ["ijepa.ema=true", "ijepa.reg=koleo", "ijepa.reg_weight=0.1"]}


def test_every_logged_name_is_declared_and_every_declaration_is_logged(tmp_path):
    logged: dict[str, set[str]] = {}
    for method, extra in RUNS.items():
        cfg = Config().with_overrides(TINY + extra + [f"run.method={method}", f"run.runs_dir={tmp_path}",
                                                      f"run.name={method}"])
        cols, _ = read_scalars(train(cfg))
        logged[method] = set(np.unique(cols["name"]).tolist())
    everything = set().union(*logged.values())
    undeclared = {m: sorted(names - set(METRICS)) for m, names in logged.items() if names - set(METRICS)}
    assert not undeclared, f"logged without a declaration (no Guide entry): {undeclared}"
    assert not set(METRICS) - everything, f"declared but logged by no run: {sorted(set(METRICS) - everything)}"
    # each method logs its own family of names, and the shared ones
    assert {n.split("/")[0] for n in logged["mae"]} == {"train", "opt", "grad", "perf", "mae", "collapse", "eval"}
    assert "ema/momentum" in logged["dino"] and "ema/momentum" in logged["ijepa"]


def test_every_declaration_has_a_guide_entry_in_one_family():
    listed = [n for f in FAMILIES for n in family_names(f)]
    assert sorted(listed) == sorted(METRICS)  # each name in exactly one family the Live page and Guide show
    for m in METRICS.values():
        assert m.title and m.meaning and m.formula, m.name
        assert len(m.name.split("/")) == 2, m.name  # the prefix scheme
        if m.healthy_range is not None:
            assert m.healthy and m.range_text, m.name
    assert set(PROGRESS) <= set(METRICS) and all(METRICS[n].short for n in PROGRESS)
