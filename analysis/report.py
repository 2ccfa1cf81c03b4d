"""Files for users without the dashboard: PNG (matplotlib), interactive HTML (plotly) and CSV
from the analysis results. Every file is written atomically; HTML pages share one
``plotly.min.js`` beside them, so they open offline (a cluster has no CDN).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from trainer.store import atomic_write_bytes


def write_csv(path: Path, header: list[str], rows: Iterable[Iterable[Any]]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for r in rows:
        w.writerow([f"{v:.6g}" if isinstance(v, (float, np.floating)) else v for v in r])
    atomic_write_bytes(path, buf.getvalue().encode())
    return path


def write_png(fig: Any, path: Path) -> Path:
    """A matplotlib ``Figure`` (built without pyplot, so no global state or display)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def write_html(fig: Any, path: Path) -> Path:
    """A plotly figure as a standalone page using ./plotly.min.js (written once)."""
    from plotly.offline import get_plotlyjs

    js = path.parent / "plotly.min.js"
    if not js.is_file():
        atomic_write_bytes(js, get_plotlyjs().encode())
    atomic_write_bytes(path, fig.to_html(include_plotlyjs="directory", full_html=True).encode())
    return path


def _figure(rows: int, cols: int, size: float = 1.6) -> tuple[Any, np.ndarray]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(cols * size, rows * size))
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def image_grid(path: Path, columns: dict[str, list[np.ndarray]], cmaps: dict[str, str] | None = None,
               title: str = "") -> Path:
    """A PNG grid: one column per entry of ``columns`` (title -> per-row images), one row per
    image. Images are uint8 (H, W, 3) or float maps (h, w), drawn with ``cmaps[title]``."""
    names = list(columns)
    n = len(columns[names[0]])
    fig, axes = _figure(n, len(names))
    for j, name in enumerate(names):
        axes[0, j].set_title(name, fontsize=8)
        for i, img in enumerate(columns[name]):
            a = np.asarray(img)
            if a.ndim == 2:
                axes[i, j].imshow(a, cmap=(cmaps or {}).get(name, "inferno"), interpolation="nearest")
            else:
                axes[i, j].imshow(a, interpolation="nearest")
    if title:
        fig.suptitle(title, fontsize=9)
    return write_png(fig, path)


def overlay(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], alpha: float = 0.45) -> np.ndarray:
    """uint8 image (H, W, 3) with a patch-grid or pixel mask (h, w) tinted in ``color``."""
    img = np.asarray(image, np.float32)
    m = np.asarray(mask, bool)
    rep = img.shape[0] // m.shape[0]
    m = np.repeat(np.repeat(m, rep, 0), rep, 1)[..., None]
    out = np.where(m, (1 - alpha) * img + alpha * np.asarray(color, np.float32), img)
    return out.round().astype(np.uint8)


def scatter_outputs(out: Path, name: str, coords: np.ndarray, labels: np.ndarray, classes: list[str],
                    indices: np.ndarray, title: str) -> list[Path]:
    """CSV, PNG and HTML of a 2-D embedding, coloured by class."""
    import plotly.express as px
    from matplotlib.figure import Figure

    cls = [classes[y] if 0 <= y < len(classes) else "unlabelled" for y in labels]
    files = [write_csv(out / f"{name}.csv", ["index", "label", "class", "x", "y"],
                       zip(indices.tolist(), labels.tolist(), cls, coords[:, 0].tolist(), coords[:, 1].tolist()))]
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    for y in np.unique(labels):
        sel = labels == y
        ax.scatter(coords[sel, 0], coords[sel, 1], s=4, label=cls[int(np.flatnonzero(sel)[0])])
    ax.legend(fontsize=7, markerscale=3)
    ax.set_title(title, fontsize=9)
    files.append(write_png(fig, out / f"{name}.png"))
    pfig = px.scatter(x=coords[:, 0], y=coords[:, 1], color=cls, hover_name=[f"image {i}" for i in indices],
                      title=title, labels={"x": "", "y": "", "color": "class"})
    pfig.update_traces(marker={"size": 4})
    files.append(write_html(pfig, out / f"{name}.html"))
    return files


def bar_outputs(out: Path, name: str, values: dict[str, float], title: str) -> list[Path]:
    """CSV, PNG and HTML of named scores."""
    import plotly.graph_objects as go
    from matplotlib.figure import Figure

    files = [write_csv(out / f"{name}.csv", ["metric", "value"], values.items())]
    fig = Figure(figsize=(6, 3))
    ax = fig.subplots()
    ax.barh(list(values), list(values.values()))
    ax.set_title(title, fontsize=9)
    files.append(write_png(fig, out / f"{name}.png"))
    files.append(write_html(go.Figure(go.Bar(x=list(values.values()), y=list(values), orientation="h"),
                                      layout={"title": title}), out / f"{name}.html"))
    return files


def heatmap_outputs(out: Path, name: str, matrix: np.ndarray, labels: list[str], title: str) -> list[Path]:
    """CSV and HTML of a labelled square matrix (e.g. a confusion matrix)."""
    import plotly.graph_objects as go

    rows = [[labels[i], *matrix[i].tolist()] for i in range(len(labels))]
    files = [write_csv(out / f"{name}.csv", ["true \\ predicted", *labels], rows)]
    files.append(write_html(go.Figure(go.Heatmap(z=matrix, x=labels, y=labels, colorscale="Blues"),
                                      layout={"title": title, "yaxis": {"autorange": "reversed"}}),
                            out / f"{name}.html"))
    return files


def line_outputs(out: Path, name: str, y: np.ndarray, title: str, log: bool = True) -> list[Path]:
    """CSV, PNG and HTML of one curve over its index (e.g. a singular value spectrum)."""
    import plotly.graph_objects as go
    from matplotlib.figure import Figure

    files = [write_csv(out / f"{name}.csv", ["index", "value"], enumerate(np.asarray(y).tolist()))]
    fig = Figure(figsize=(5, 3))
    ax = fig.subplots()
    ax.plot(np.arange(len(y)), y)
    if log:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    files.append(write_png(fig, out / f"{name}.png"))
    pfig = go.Figure(go.Scatter(y=y, mode="lines"), layout={"title": title})
    if log:
        pfig.update_yaxes(type="log")
    files.append(write_html(pfig, out / f"{name}.html"))
    return files
