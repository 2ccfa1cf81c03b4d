"""The dense side of DINOv2 / DINOv3 at CPU scale, on shapes (exact object masks):

- iBOT vs plain DINO: patch-level k-NN segmentation (``analysis.dense.patch_knn``: each val
  patch labelled by its nearest train patches, background or the object's class), the [CLS]
  attention's Jaccard with the object masks, the PCA foreground's Jaccard, and the [CLS] k-NN;
- a long run with and without Gram anchoring: ``dense/cls_patch_cosine`` over training.

``python tests/trainer/dense_science.py ibot|gram --steps N --seeds 0 1 --out DIR`` trains the
arms one after the other (OMP_NUM_THREADS=1 recommended) and writes ``DIR/<study>.json``;
``figures DIR`` draws the PNGs of docs/architecture.md. ``tests/trainer/test_dense_science.py``
runs a short version and asserts only what held across seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SHAPES_CLASSES = 8
# every arm: the defaults (cpu-tiny, 32 px shapes, batch 32), 1,000 validation images for the k-NN
BASE = ["data.num_val=1000", "run.ckpt_every=100000"]
ARMS = {
    "ibot": {"dino": [], "dino+ibot": ["dino.ibot_weight=1"]},
    # both arms copy the same Gram teacher and log gram/loss; only "+gram" lets its weight rise (the
    # control's gram_start is the last step, where the ramp is still at 0): gram steps set from --steps
    "gram": {"dinov2": ["dino.ibot_weight=1", "dino.gram_weight=2"],
             "dinov2+gram": ["dino.ibot_weight=1", "dino.gram_weight=2"]},
}


def dense_scores(run_dir: Path, n_bank: int = 400, n_query: int = 200, baseline: str | None = None) -> dict:
    """Dense scores of a run's last checkpoint (or, ``baseline="random_init"``, of the same
    backbone at random initialisation) on its data: patch k-NN, attention and PCA Jaccards."""
    import torch

    from analysis.attention import attention_jaccard, jaccard
    from analysis.dense import dense_features, patch_knn, patch_labels, patch_pca
    from analysis.features import random_init_like
    from analysis.source import open_source, split_images
    from core.images import normalize

    src = open_source(run_dir)
    vit = src.vit if baseline is None else random_init_like(src.vit, src.seed)
    tr_x, tr_y, tr_m, _ = split_images(src, "train", n_bank)
    va_x, va_y, va_m, _ = split_images(src, "val", n_query)
    patch = vit.patch_embed.patch_size[0]
    bank, query = dense_features(vit, tr_x), dense_features(vit, va_x)
    pk = patch_knn(bank, patch_labels(tr_m, tr_y, patch), query, patch_labels(va_m, va_y, patch),
                   1 + SHAPES_CLASSES)
    with torch.inference_mode():
        att = attention_jaccard(vit, normalize(va_x[:100]), va_m[:100])
    fg = patch_pca(query[:64]).foreground
    pca_j = float(jaccard(fg, va_m[:64, patch // 2::patch, patch // 2::patch]).mean())
    return {"patch_knn_miou": pk.miou, "patch_knn_fg_iou": pk.foreground_iou, "patch_knn_acc": pk.accuracy,
            "attn_jaccard": att.mean, "attn_jaccard_best_head": float(att.per_head.max()), "pca_fg_jaccard": pca_j}


def run_arm(root: Path, name: str, sets: list[str], steps: int, seed: int) -> dict:
    from trainer.config import Config
    from trainer.loop import train
    from trainer.store import read_metric

    eval_every = max(steps // 5, 1)
    cfg = Config().with_overrides(BASE + sets + [f"optim.steps={steps}", f"run.seed={seed}", f"run.name={name}",
                                                 f"run.runs_dir={root}", f"run.eval_every={eval_every}",
                                                 f"run.log_every={max(steps // 100, 1)}"])
    rd = root / name
    if not (rd / "run.json").is_file():
        rd = train(cfg)
    _, knn = read_metric(rd, "eval/knn_top1")
    out = {"name": name, "seed": seed, "steps": steps, "cls_knn": float(knn[-1]), "cls_knn_init": float(knn[0])}
    out.update(dense_scores(rd))
    out["init"] = dense_scores(rd, baseline="random_init")
    for metric in ("dense/cls_patch_cosine", "dense/patch_rankme", "gram/loss", "dino/teacher_entropy",
                   "ibot/teacher_entropy", "collapse/rankme"):
        s, v = read_metric(rd, metric)
        if len(s):
            out[metric] = {"step": s.tolist(), "value": v.tolist()}
    return out


def gram_sets(steps: int, on: bool = True) -> list[str]:
    """Gram teacher after 10% of the run, the loss on from 50% and ramped over 5% (``on``), or
    only logged (the control: its weight starts rising at the last step, where it is still 0)."""
    return [f"dino.gram_teacher_step={steps // 10}", f"dino.gram_start={steps // 2 if on else steps - 1}",
            f"dino.gram_ramp_steps={max(1, steps // 20)}"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("study", choices=("ibot", "gram", "figures"))
    p.add_argument("out", type=Path)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    a = p.parse_args(argv)
    if a.study == "figures":
        return figures(a.out)
    results = []
    path = a.out / f"{a.study}.json"
    if path.is_file():
        results = json.loads(path.read_text())
    for seed in a.seeds:
        for arm, sets in ARMS[a.study].items():
            name = f"{a.study}-{arm.replace('+', '_')}-s{seed}-{a.steps}"
            if any(r["name"] == name for r in results):
                continue
            extra = gram_sets(a.steps, on=arm.endswith("+gram")) if a.study == "gram" else []
            r = run_arm(a.out / "runs", name, sets + extra, a.steps, seed)
            r["arm"] = arm
            results.append(r)
            path.write_text(json.dumps(results, indent=1))
            print(json.dumps({k: v for k, v in r.items() if not isinstance(v, dict)}), flush=True)
    return 0


def figures(out: Path) -> int:
    """PNG figures of the studies found in ``out`` (docs/architecture.md)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gram = out / "gram.json"
    if gram.is_file():
        res = json.loads(gram.read_text())
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        for r in res:
            style = "-" if r["arm"].endswith("+gram") else "--"
            label = f"{r['arm']} seed {r['seed']}"
            for ax, m in zip(axes, ("dense/cls_patch_cosine", "dense/patch_rankme", "gram/loss")):
                if m in r:
                    ax.plot(r[m]["step"], r[m]["value"], style, label=label, lw=1.2)
                    ax.set_title(m)
        steps = res[0]["steps"]
        for ax in axes:
            ax.axvline(steps // 2, color="grey", lw=0.8, ls=":")
            ax.set_xlabel("step")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "gram_cls_patch_cosine.png", dpi=110)
    ibot = out / "ibot.json"
    if ibot.is_file():
        res = json.loads(ibot.read_text())
        keys = ["cls_knn", "patch_knn_miou", "patch_knn_fg_iou", "attn_jaccard", "pca_fg_jaccard"]
        fig, ax = plt.subplots(figsize=(8, 3.4))
        arms = sorted({r["arm"] for r in res})
        for j, arm in enumerate(arms):
            vals = np.array([[r[k] for k in keys] for r in res if r["arm"] == arm])
            ax.bar(np.arange(len(keys)) + 0.38 * j, vals.mean(0), 0.36, yerr=vals.std(0) if len(vals) > 1 else None,
                   label=f"{arm} ({len(vals)} seeds)")
        init = np.array([[r["init"].get(k, np.nan) if k != "cls_knn" else r["cls_knn_init"] for k in keys]
                         for r in res])
        ax.scatter(np.arange(len(keys)) + 0.19, np.nanmean(init, 0), color="k", marker="_", s=300, label="random init")
        ax.set_xticks(np.arange(len(keys)) + 0.19, keys, fontsize=8)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "ibot_dense_scores.png", dpi=110)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
