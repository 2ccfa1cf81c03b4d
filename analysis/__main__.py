"""python -m analysis RUN_DIR_OR_CHECKPOINT --out DIR --what knn,umap,attention,...
python -m analysis report GROUP --out DIR  (a study's report: verdicts beside the paper's finding)

Analysis without the dashboard (on a cluster, say): writes PNG, interactive HTML (plotly) and
CSV files to ``--out``. Results that cost time (features, scores, embeddings) are cached beside
the run, so a second call is quick. Every bad input ends with one line naming it, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

WHATS = ("knn", "umap", "attention", "reconstruction", "jepa", "attribution", "diagnose")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m analysis", description="Analyse a run or a weights file: k-NN scores, UMAP, attention, "
        "MAE reconstructions, I-JEPA predictions, attributions and a collapse diagnosis, as PNG, HTML and CSV.",
        epilog="Examples: python -m analysis runs/dino-shapes --out report --what knn,umap,diagnose;  "
               "python -m analysis dino_deitsmall16_pretrain.pth --out report --what attention --image-size 64")
    p.add_argument("target", help="a run folder (runs/<id>), one of its checkpoints, or a weights file "
                                  "(DINO, DINOv2, MAE, I-JEPA, timm; .safetensors or .pth)")
    p.add_argument("--out", required=True, help="folder for the output files (created)")
    p.add_argument("--what", default="knn,umap,attention,diagnose",
                   help=f"comma-separated analyses out of: {', '.join(WHATS)} (default: %(default)s)")
    p.add_argument("--step", type=int, help="checkpoint step of a run (default: the latest)")
    p.add_argument("--part", help="which backbone of a multi-model file: teacher, student, encoder, target_encoder")
    p.add_argument("--model-name", help="timm model name to build for a weights file, e.g. vit_small_patch16_224")
    p.add_argument("--num-heads", type=int, help="attention heads of a weights file (default: from the file's "
                   "training arguments or model name, else the official size of its width; a guess otherwise)")
    p.add_argument("--data", help="dataset to analyse on: shapes | fashion-mnist | digits | folder "
                                  "(default: the run's own; shapes for weights files)")
    p.add_argument("--data-path", default="", help="dataset root (folder, fashion-mnist)")
    p.add_argument("--image-size", type=int, help="image side in px (a multiple of the patch size)")
    p.add_argument("--n-images", type=int, default=8, help="images shown in picture grids (default: %(default)s)")
    p.add_argument("--max-points", type=int, default=5000, help="points in the UMAP (default: %(default)s)")
    p.add_argument("--embedding", default="umap", choices=("umap", "pca"), help="2-D map method (default: umap)")
    p.add_argument("--k", type=int, default=20, help="neighbours of the weighted k-NN (default: %(default)s)")
    p.add_argument("--mask-ratio", type=float, help="MAE mask ratio for reconstructions (default: the trained one)")
    p.add_argument("--keep", type=float, default=0.6, help="attention mass kept by masks (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of masks, UMAP and noise (default: %(default)s)")
    return p


def _data(args: argparse.Namespace, source_data):
    from dataclasses import replace

    from trainer.config import Data

    if not (args.data or args.image_size or args.data_path):
        return None
    base = source_data or Data()
    d = replace(base, name=args.data or base.name, path=args.data_path or base.path,
                image_size=args.image_size or base.image_size)
    return d


def _images(source, split: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str], torch.Tensor]:
    from analysis.source import split_images
    from trainer.data.datasets import normalize

    images, labels, masks, classes = split_images(source, split, n)
    return images, labels, masks, classes, normalize(images)


def do_knn(source, out: Path, args) -> list[Path]:
    from analysis.report import bar_outputs, heatmap_outputs
    from analysis.scores import score_source

    r = score_source(source, k=args.k)
    values = {"k-NN top-1": r.knn_top1, "linear top-1": r.linear_top1,
              "k-NN top-1, random init": r.random_init_knn_top1, "linear top-1, random init": r.random_init_linear_top1,
              "k-NN top-1, raw pixels": r.pixels_knn_top1, "linear top-1, raw pixels": r.pixels_linear_top1,
              "chance": r.chance}
    print(f"k-NN top-1 {r.knn_top1:.3f} (random init {r.random_init_knn_top1:.3f}, pixels {r.pixels_knn_top1:.3f}); "
          f"linear {r.linear_top1:.3f} (random init {r.random_init_linear_top1:.3f}); chance {r.chance:.3f}")
    return (bar_outputs(out, "scores", values, f"{source.name}: k-NN (k={r.k}) and linear probe on {source.data.name}")
            + heatmap_outputs(out, "confusion", r.confusion, r.classes, f"{source.name}: k-NN confusion"))


def do_umap(source, out: Path, args) -> list[Path]:
    from analysis.embedding import source_embedding
    from analysis.report import scatter_outputs
    from analysis.source import split_images

    t = time.perf_counter()
    e = source_embedding(source, "train", args.embedding, max_points=args.max_points, seed=args.seed)
    classes = split_images(source, "val", 1)[3]
    print(f"{e.method.upper()} of {len(e.indices)} images in {time.perf_counter() - t:.1f} s")
    return scatter_outputs(out, "embedding", e.coords, e.labels, classes, e.indices,
                           f"{source.name}: {e.method.upper()} of [CLS] features")


def do_attention(source, out: Path, args) -> list[Path]:
    from analysis.attention import attention_jaccard, attention_maps, attention_rollout, last_layer_attention, mass_mask
    from analysis.report import image_grid, overlay, write_csv

    if source.vit.cls_token is None:
        print("attention: skipped, this backbone has no [CLS] token")
        return []
    images, _, masks, _, x = _images(source, "val", args.n_images)
    res = last_layer_attention(source.vit, x)
    maps = attention_maps(source.vit, x)
    rollout = attention_rollout(maps, res.num_prefix, res.mean_attn.shape[-2:])
    kept = mass_mask(res.mean_attn, args.keep)
    cols = {"image": list(images), "mean attention": list(res.mean_attn),
            f"{int(args.keep * 100)}% mass": [overlay(im, k, (255, 60, 60)) for im, k in zip(images, kept)],
            "rollout": list(rollout)}
    for h in range(res.cls_attn.shape[1]):
        cols[f"head {h}"] = list(res.cls_attn[:, h])
    if res.register_maps.shape[2]:
        cols["to registers"] = list(res.register_share)
    files = [image_grid(out / "attention.png", cols, title=f"{source.name}: last-layer [CLS] attention")]
    if masks is not None:
        j = attention_jaccard(source.vit, x, masks, args.keep)
        print(f"attention-mask Jaccard vs object masks: {j.mean:.3f} (best head {j.best_head}: {j.per_head.max():.3f})")
        files.append(write_csv(out / "attention_jaccard.csv", ["image", "jaccard"], enumerate(j.per_image.tolist())))
    return files


def do_reconstruction(source, out: Path, args) -> list[Path]:
    from analysis.reconstruction import reconstruct
    from analysis.report import image_grid, write_csv
    from analysis.source import split_images
    from trainer.data.datasets import normalize
    from trainer.loading import load_method

    if source.method == "mae":
        mae, _, _ = load_method(source.run_dir, source.step)
        _, _, _, _, x = _images(source, "val", args.n_images)
    elif source.mae is not None:  # an official MAE file with its decoder, at the decoder's image size
        mae = source.mae
        x = normalize(split_images(source, "val", args.n_images, image_size=mae.image_size)[0])
    else:
        print("reconstruction: skipped, it needs an MAE run or an MAE file with its decoder (this is "
              f"{source.method or 'a weights file without one'})")
        return []
    r = reconstruct(mae, x, args.mask_ratio, args.seed)
    print(f"MAE masked-patch PSNR at ratio {r.mask_ratio}: {r.psnr_mean:.2f} dB")
    return [image_grid(out / "reconstruction.png", {"original": list(r.original), "masked": list(r.masked),
                                                    "reconstruction": list(r.reconstruction),
                                                    "visible pasted": list(r.pasted)},
                       title=f"{source.name}: mask ratio {r.mask_ratio}, PSNR {r.psnr_mean:.2f} dB"),
            write_csv(out / "reconstruction.csv", ["image", "psnr_masked_db"], enumerate(r.psnr.tolist()))]


def do_jepa(source, out: Path, args) -> list[Path]:
    from analysis.jepa import predict_targets
    from analysis.report import image_grid, overlay, write_csv
    from trainer.loading import load_method

    if source.method != "ijepa":
        print(f"jepa: skipped, it needs an I-JEPA run (this is {source.method or 'a weights file'})")
        return []
    ijepa, _, _ = load_method(source.run_dir, source.step)
    _, _, _, _, x = _images(source, "val", args.n_images)
    p = predict_targets(ijepa, x, args.seed)
    blocks = [overlay(overlay(im, c, (60, 120, 255)), t.any(0), (255, 200, 0))
              for im, c, t in zip(p.original, p.context_mask, p.target_masks)]
    print(f"I-JEPA predicted-to-target cosine: {p.mean_cosine:.3f} (loss {p.loss:.4f})")
    cos_maps = [np.nan_to_num(c, nan=0.0) for c in p.pred_cosine]
    return [image_grid(out / "jepa.png", {"image": list(p.original), "context (blue) / targets (yellow)": blocks,
                                          "cosine per target patch": cos_maps},
                       cmaps={"cosine per target patch": "viridis"},
                       title=f"{source.name}: mean cosine {p.mean_cosine:.3f}"),
            write_csv(out / "jepa.csv", ["image", "block", "cosine"],
                      [(i, t, float(v)) for i, row in enumerate(p.block_cosine) for t, v in enumerate(row)])]


def do_attribution(source, out: Path, args) -> list[Path]:
    from analysis.attribution import attribute_source
    from analysis.report import image_grid, write_csv

    images, labels, ig = attribute_source(source, args.n_images, "integrated_gradients", seed=args.seed)
    _, _, occ = attribute_source(source, args.n_images, "occlusion")
    print(f"attributions of the prototype cosine for {len(images)} images (IG + noise tunnel, occlusion)")
    return [image_grid(out / "attribution.png", {"image": list(images), "integrated gradients": list(ig.heatmap),
                                                 "occlusion": list(occ.heatmap)},
                       cmaps={"integrated gradients": "RdBu_r", "occlusion": "RdBu_r"},
                       title=f"{source.name}: what drives the cosine to the class prototype"),
            write_csv(out / "attribution.csv", ["image", "label", "score"],
                      zip(range(len(images)), labels.tolist(), ig.score.tolist()))]


def do_diagnose(source, out: Path, args) -> list[Path]:
    from analysis.collapse import diagnose_source
    from analysis.report import line_outputs, write_csv

    rep = diagnose_source(source)
    print(f"checkpoint: {rep.checkpoint.summary()}")
    rows = []
    for judged_on, d in (("checkpoint", rep.checkpoint), ("run", rep.run)):
        if d is None:
            continue
        first = "" if d.first_step is None else d.first_step
        rows += [(judged_on, d.label, d.rule, first, e) for e in d.evidence]
        if d.advice:
            rows.append((judged_on, d.label, d.rule, first, f"try: {d.advice}"))
    if rep.run is not None:  # the alarms of analysis.alarms over the curves: what the dashboard shows
        print(f"run (alarms over the logged curves, at step {rep.run.step}): {rep.run.summary()}")
    f = rep.features
    stats = {**f.values(), **(rep.dino or {}), "n": f.n, "dim": f.dim, "feature": rep.feature}
    return ([write_csv(out / "diagnosis.csv", ["judged_on", "label", "rule", "first_step", "evidence"], rows),
             write_csv(out / "feature_stats.csv", ["metric", "value"], stats.items())]
            + line_outputs(out, "spectrum", f.spectrum, f"{source.name}: singular values of {rep.feature} features"))


RUNNERS = {"knn": do_knn, "umap": do_umap, "attention": do_attention, "reconstruction": do_reconstruction,
           "jepa": do_jepa, "attribution": do_attribution, "diagnose": do_diagnose}


def _report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m analysis report", description="A study's report: the paper's finding beside ours, with "
        "a verdict computed from the figures (reproduced, not reproduced, inconclusive), the figures, the final "
        "metrics with their spread over seeds and each run's diagnosis; a self-contained report.html and a "
        "report.md with PNG figures and CSV tables.",
        epilog="Example: python -m trainer ablate centering-sharpening --group cs --seeds 3 --parallel 2; "
               "python -m analysis report cs --out reports/cs")
    p.add_argument("group", help="the study's group (run.group), e.g. centering-sharpening-20260101-120000")
    p.add_argument("--out", required=True, help="folder for the report (created)")
    p.add_argument("--runs-dir", help="run store root (default: $SSLSCOPE_RUNS or runs/)")
    p.add_argument("--no-measures", action="store_true", help="skip the measures computed from checkpoints "
                   "(linear probe, attention Jaccard): quicker, but claims on them stay pending")
    return p


def report_main(argv: list[str]) -> int:
    args = _report_parser().parse_args(argv)
    from analysis.study import StudyError, load_group
    from analysis.study_report import write_study_report
    from trainer.store import StoreError, default_runs_dir

    root = Path(args.runs_dir) if args.runs_dir else default_runs_dir()
    try:
        t = time.perf_counter()
        result = load_group(root, args.group, measures="skip" if args.no_measures else "compute")
        files = write_study_report(result, Path(args.out))
    except (StudyError, StoreError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    st = result.study
    print(f"{st.name if st else 'group'} {args.group}: {len(result.runs)} runs, {len(result.arms)} arms "
          f"({time.perf_counter() - t:.1f} s)")
    if result.verdict is not None:
        print(f"verdict: {result.verdict.verdict} ({result.verdict.why})")
        for c in result.verdict.claims:
            print(f"  [{c.verdict}] {c.claim.text}: {c.why}")
    for note in result.notes:
        print(note)
    for f in files:
        print(f"  wrote {f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:
        return report_main(argv[1:])
    args = _parser().parse_args(argv)
    whats = [w.strip() for w in args.what.split(",") if w.strip()]
    bad = [w for w in whats if w not in WHATS]
    if bad or not whats:
        print(f"error: --what {','.join(bad) or '(empty)'} is not known; choose from: {', '.join(WHATS)}",
              file=sys.stderr)
        return 2
    from analysis.source import SourceError, open_source
    from trainer.config import ConfigError
    from trainer.data.datasets import DataError
    from trainer.store import StoreError

    try:
        source = open_source(args.target, args.step, args.part, args.model_name, args.num_heads)
        data = _data(args, source.data)
        if data is not None:
            source = open_source(args.target, args.step, args.part, args.model_name, args.num_heads, data)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        print(f"analysing {source.name} ({source.layout}) on {source.data.name} at {source.data.image_size} px")
        if source.heads is not None:
            print(f"{source.heads.heads} attention heads, from {source.heads.source}")
            if not source.heads.known:
                print(f"warning: the head count of {source.name} is a guess; pass --num-heads N if you know it",
                      file=sys.stderr)
        for note in source.notes:
            print(note)
        for w in whats:
            for f in RUNNERS[w](source, out, args):
                print(f"  wrote {f}")
    except (SourceError, StoreError, DataError, ConfigError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
