"""Figures of dense (patch) features: DINOv2's PCA colouring and the clickable patch-similarity
map. Plain functions from arrays (``analysis.dense`` results) to plotly figures, as
``dashboard.charts``; the Live page draws them from the probe's saved patch features, the
Inspect page from any backbone's."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.charts import _TEMPLATE, image_trace


def _nearest(grid: np.ndarray, size: int) -> np.ndarray:
    """A patch-grid array (h, w, ...) on a (size, size) pixel grid by repetition."""
    ys = np.arange(size) * grid.shape[0] // size
    xs = np.arange(size) * grid.shape[1] // size
    return grid[np.ix_(ys, xs)]


def pca_rgb_image(rgb: np.ndarray, size: int) -> np.ndarray:
    """(h, w, 3) colours in [0, 1] -> a uint8 (size, size, 3) picture, patch by patch."""
    return (np.clip(_nearest(np.asarray(rgb, np.float64), size), 0, 1) * 255).round().astype(np.uint8)


def pca_grid_figure(images: np.ndarray | None, rgb: np.ndarray, *, max_images: int = 8,
                    panel_px: int = 120) -> go.Figure:
    """Row 1 the pictures (when given, uint8 (N, S, S, 3)), row 2 their patch features in PCA
    colours (``analysis.dense.patch_pca(...).rgb``, (N, h, w, 3); background black)."""
    rgb = np.asarray(rgb)
    n = min(max_images, len(rgb))
    size = images.shape[1] if images is not None else 8 * rgb.shape[1]
    rows = 2 if images is not None else 1
    fig = make_subplots(rows=rows, cols=n, horizontal_spacing=0.01, vertical_spacing=0.03)
    for i in range(n):
        if images is not None:
            fig.add_trace(image_trace(images[i]), row=1, col=i + 1)
        fig.add_trace(image_trace(pca_rgb_image(rgb[i], size)), row=rows, col=i + 1)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    for k in range(rows * n):
        suffix = "" if k == 0 else str(k + 1)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    fig.update_layout(template=_TEMPLATE, height=rows * panel_px + 20, margin=dict(l=5, r=5, t=5, b=5),
                      showlegend=False)
    return fig


def similarity_figure(image: np.ndarray | None, sim: np.ndarray, picked: tuple[int, int], *,
                      panel_px: int = 340) -> go.Figure:
    """One picture with the cosine of the ``picked`` (row, col) patch to every patch (``sim``
    (h, w), from -1 to 1) over it, the picked patch outlined. Every patch centre carries a
    clickable marker whose customdata is (row, col): ``clicked_patch`` reads a click back."""
    sim = np.asarray(sim, np.float64)
    h, w = sim.shape
    size = image.shape[0] if image is not None else 8 * h
    dy, dx = size / h, size / w
    fig = go.Figure()
    if image is not None:
        fig.add_trace(image_trace(image))
    fig.add_trace(go.Heatmap(z=sim, x0=dx / 2 - 0.5, dx=dx, y0=dy / 2 - 0.5, dy=dy, colorscale="RdBu_r", zmin=-1,
                             zmax=1, opacity=0.6 if image is not None else 1.0, showscale=True,
                             colorbar=dict(title="cosine", thickness=12), hoverinfo="skip"))
    ys, xs = np.mgrid[0:h, 0:w]
    fig.add_trace(go.Scatter(
        x=(xs.ravel() + 0.5) * dx - 0.5, y=(ys.ravel() + 0.5) * dy - 0.5, mode="markers",
        marker=dict(size=max(6, int(panel_px / max(h, w) * 0.8)), color="rgba(0,0,0,0)", symbol="square"),
        customdata=np.stack([ys.ravel(), xs.ravel()], 1), text=[f"{v:.2f}" for v in sim.ravel()],
        hovertemplate="patch (%{customdata[0]}, %{customdata[1]}): cosine %{text}<extra></extra>"))
    r, c = picked
    fig.add_shape(type="rect", x0=c * dx - 0.5, x1=(c + 1) * dx - 0.5, y0=r * dy - 0.5, y1=(r + 1) * dy - 0.5,
                  line=dict(color="#00ff00", width=3))
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, range=[-0.5, size - 0.5])
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, range=[size - 0.5, -0.5],
                     scaleanchor="x")
    fig.update_layout(template=_TEMPLATE, height=panel_px, width=panel_px + 90, margin=dict(l=5, r=5, t=5, b=5),
                      showlegend=False, hovermode="closest", clickmode="event+select", dragmode=False)
    return fig


def clicked_patch(selection: dict | None) -> tuple[int, int] | None:
    """The (row, col) of the patch clicked in a ``similarity_figure`` (from ``st.plotly_chart``'s
    selection event), None when nothing was clicked."""
    if not selection:
        return None
    points: Sequence[dict] = (selection.get("selection") or {}).get("points") or []
    for p in points:
        cd = p.get("customdata")
        if isinstance(cd, (list, tuple)) and len(cd) == 2:
            return int(cd[0]), int(cd[1])
    return None
