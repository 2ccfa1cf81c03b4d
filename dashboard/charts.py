"""Plotly figure builders for every chart in the dashboard.

Plain functions from arrays to ``go.Figure``: no streamlit here, so tests call them directly
and the analysis CLI could reuse them. Curves are drawn like TensorBoard's: the raw series
faint, its debiased exponential moving average on top (``smooth_ema``). Images go on plotly
axes with ``go.Image`` so heat maps (attention, attributions, similarities) overlay them on
the same pixel grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from core import metrics as M
from core.metrics import METRICS
from core.probes import Probe

# 10 distinct colours first (Plotly's), then more; a run keeps its colour on every page.
PALETTE: tuple[str, ...] = tuple(qualitative.Plotly) + tuple(qualitative.Dark24)
# A small white template: naming "plotly_white" instead costs a deep copy of plotly's whole
# template per figure (tens of ms each, most of a Live refresh); in the app Streamlit's
# theme styles the charts anyway.
_TEMPLATE = go.layout.Template(layout=dict(
    paper_bgcolor="white", plot_bgcolor="white", font=dict(color="#31333F"), colorway=list(qualitative.Plotly),
    xaxis=dict(gridcolor="#EBEBEB", zerolinecolor="#EBEBEB", linecolor="#D0D0D0"),
    yaxis=dict(gridcolor="#EBEBEB", zerolinecolor="#EBEBEB", linecolor="#D0D0D0")))
HEAT_SCALE = "Inferno"


@dataclass(frozen=True)
class Curve:
    """One run's series of one metric: ``x`` and ``y`` of equal length, in x order."""

    label: str
    color: str
    x: np.ndarray
    y: np.ndarray
    dash: str = "solid"


def color_key_html(colors: dict[str, str]) -> str:
    """One line of coloured swatches and labels: the shared legend of a page's small multiples."""
    from html import escape

    items = [f'<span style="white-space:nowrap;margin-right:1.2em"><span style="display:inline-block;width:1.6em;'
             f'height:0.3em;background:{c};vertical-align:middle;margin-right:0.4em;border-radius:2px"></span>'
             f'{escape(label)}</span>' for label, c in colors.items()]
    return '<div style="font-size:0.9rem;line-height:1.8">' + "".join(items) + "</div>"


def run_colors(run_ids_oldest_first: Sequence[str]) -> dict[str, str]:
    """A colour per run by its place among all runs, oldest first, so that adding a run never
    changes the colour of the ones already drawn."""
    return {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(run_ids_oldest_first)}


def smooth_ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: EMA with weight ``weight`` in [0, 1), divided by
    1 - weight^n so the first points are not pulled towards 0. Non-finite values are
    carried through unchanged and do not enter the average."""
    v = np.asarray(values, dtype=np.float64)
    if weight <= 0 or v.size == 0:
        return v.copy()
    out = np.empty_like(v)
    acc, n, lo, hi = 0.0, 0, math.inf, -math.inf
    for i, x in enumerate(v):
        if not math.isfinite(x):
            out[i] = x
            continue
        n += 1
        lo, hi = min(lo, x), max(hi, x)
        acc = weight * acc + (1 - weight) * x
        # a weighted mean of the values seen lies within them; clipping drops rounding noise
        # that would otherwise show as spikes on a constant curve
        out[i] = min(max(acc / (1 - weight ** n), lo), hi)
    return out


def _base_layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(
        template=_TEMPLATE, height=height, title=dict(text=title, x=0, xanchor="left", font=dict(size=14)),
        margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2, x=0),
        hovermode="x unified",
    )
    return fig


def _add_curve(fig: go.Figure, c: Curve, smoothing: float, row: int | None = None,
               col: int | None = None, show_legend: bool = True) -> None:
    where = {} if row is None else {"row": row, "col": col}
    if smoothing > 0:
        fig.add_trace(go.Scatter(x=c.x, y=c.y, mode="lines", line=dict(color=c.color, width=1, dash=c.dash),
                                 opacity=0.25, name=c.label, legendgroup=c.label, showlegend=False,
                                 hoverinfo="skip"), **where)
        y = smooth_ema(c.y, smoothing)
    else:
        y = c.y
    mode = "lines+markers" if len(c.x) < 3 else "lines"
    fig.add_trace(go.Scatter(x=c.x, y=y, mode=mode, line=dict(color=c.color, width=2, dash=c.dash),
                             name=c.label, legendgroup=c.label, showlegend=show_legend), **where)


def family_figure(panels: Sequence[tuple[str, Sequence[Curve]]], *, x_title: str = "step", smoothing: float = 0.0,
                  log_y: bool = False, cols: int = 3, panel_height: int = 250,
                  hlines: dict[int, Sequence[tuple[float, str]]] | None = None) -> go.Figure:
    """Small multiples in one figure: one panel per (title, curves), ``cols`` per row. One
    figure per metric family keeps a page of twenty curves quick to draw. ``hlines``: panel
    index -> dashed reference lines (y, label), e.g. 0 and ln K on an entropy panel."""
    n = max(len(panels), 1)
    rows = math.ceil(n / cols)  # a lone panel keeps its 1/cols width: same size everywhere
    specs = [[{} if r * cols + c < n else None for c in range(cols)] for r in range(rows)]  # no empty axes
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[t for t, _ in panels], specs=specs,
                        horizontal_spacing=0.06, vertical_spacing=min(0.25, 0.5 / rows))
    for i, (_, curves) in enumerate(panels):
        r, c = divmod(i, cols)
        for cv in curves:
            _add_curve(fig, cv, smoothing, r + 1, c + 1, show_legend=False)
        fig.update_xaxes(title_text=x_title if r == rows - 1 else "", row=r + 1, col=c + 1)
        for y, label in (hlines or {}).get(i, ()):
            fig.add_hline(y=y, line_dash="dash", line_color="#d62728" if y else "#1f77b4", row=r + 1, col=c + 1,
                          annotation_text=label, annotation_position="top left" if y else "bottom left",
                          exclude_empty_subplots=False)
    fig.update_yaxes(type="log" if log_y else "linear")
    _base_layout(fig, "", rows * panel_height + 30)
    fig.update_layout(showlegend=False, hovermode="closest", margin=dict(t=30))
    fig.update_annotations(font_size=13)
    return fig


# The four DINO collapse signals, in panel order; titles are their declared labels.
COLLAPSE_PANELS: tuple[str, ...] = (M.DINO_TEACHER_ENTROPY, M.DINO_KL_TEACHER_STUDENT, M.DINO_TEACHER_BATCH_ENTROPY,
                                    M.DINO_CENTER_NORM)


def collapse_figure(curves: dict[str, Sequence[Curve]], log_k: float | None, *, x_title: str = "step",
                    smoothing: float = 0.0, height: int = 520) -> go.Figure:
    """DINO's collapse panel, 2 x 2: teacher entropy with lines at 0 (one-hot collapse) and
    ln K (uniform collapse), KL teacher-student (0 in both collapses), batch entropy (low when
    a few prototypes win for all images), center norm. ``curves``: metric -> per-run curves."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=[METRICS[n].label for n in COLLAPSE_PANELS],
                        vertical_spacing=0.16, horizontal_spacing=0.08)
    seen: set[str] = set()
    for i, name in enumerate(COLLAPSE_PANELS):
        row, col = divmod(i, 2)
        for c in curves.get(name, ()):
            _add_curve(fig, c, smoothing, row + 1, col + 1, show_legend=c.label not in seen)
            seen.add(c.label)
        if row == 1:  # the top row's axis title would collide with the bottom row's panel titles
            fig.update_xaxes(title_text=x_title, row=row + 1, col=col + 1)
    if log_k is not None:
        for row, col in ((1, 1), (2, 1)):  # both entropies are bounded by ln K
            fig.add_hline(y=log_k, line_dash="dash", line_color="#d62728", row=row, col=col,
                          annotation_text=f"ln K = {log_k:.2f}: uniform collapse", annotation_position="top left",
                          exclude_empty_subplots=False)
        fig.add_hline(y=0.0, line_dash="dash", line_color="#1f77b4", row=1, col=1,
                      annotation_text="0: one-hot collapse", annotation_position="bottom left",
                      exclude_empty_subplots=False)
    _base_layout(fig, "", height)
    fig.update_layout(hovermode="closest", legend=dict(orientation="h", y=-0.12, x=0))
    return fig


def collapse_study_figure(entropy: Sequence[Curve], kl: Sequence[Curve], log_k: float | None, *,
                          x_title: str = "step", smoothing: float = 0.0, height: int = 380) -> go.Figure:
    """The two panels of the DINO paper's collapse study (Caron et al. 2021, Fig. 7): teacher
    entropy and KL(teacher || student) over training, one curve per ablation arm."""
    titles = [METRICS[M.DINO_TEACHER_ENTROPY].label, METRICS[M.DINO_KL_TEACHER_STUDENT].label]
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=0.08)
    for c in entropy:
        _add_curve(fig, c, smoothing, 1, 1)
    for c in kl:
        _add_curve(fig, c, smoothing, 1, 2, show_legend=False)
    if log_k is not None:
        fig.add_hline(y=log_k, line_dash="dash", line_color="#d62728", row=1, col=1,
                      annotation_text=f"ln K = {log_k:.2f}", annotation_position="top left",
                      exclude_empty_subplots=False)
        fig.add_hline(y=0.0, line_dash="dash", line_color="#1f77b4", row=1, col=1, exclude_empty_subplots=False)
    fig.update_xaxes(title_text=x_title)
    _base_layout(fig, "", height)
    fig.update_layout(hovermode="closest", legend=dict(orientation="h", y=-0.2, x=0))
    return fig


def embedding_figure(coords: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None = None, *,
                     title: str = "", hover: Sequence[str] | None = None, height: int = 520) -> go.Figure:
    """2-D embedding scatter (UMAP or PCA), one trace per class so the legend toggles classes.
    ``coords``: (N, 2); ``labels``: (N,) int, -1 = unlabelled. Each point's customdata is its
    row index, so a selection maps back to images."""
    coords = np.asarray(coords, dtype=np.float64)
    labels = np.asarray(labels)
    fig = go.Figure()
    for k, lab in enumerate(sorted(set(labels.tolist()))):
        idx = np.flatnonzero(labels == lab)
        name = "unlabelled" if lab < 0 else (class_names[lab] if class_names and lab < len(class_names) else str(lab))
        text = [hover[i] for i in idx] if hover is not None else [f"#{i} {name}" for i in idx]
        fig.add_trace(go.Scattergl(
            x=coords[idx, 0], y=coords[idx, 1], mode="markers", name=name, customdata=idx, text=text,
            hovertemplate="%{text}<extra></extra>",
            marker=dict(size=6, color=PALETTE[k % len(PALETTE)], opacity=0.8, line=dict(width=0)),
        ))
    fig.update_xaxes(showticklabels=False, title_text="")
    fig.update_yaxes(showticklabels=False, title_text="", scaleanchor="x")
    _base_layout(fig, title, height)
    fig.update_layout(hovermode="closest", dragmode="lasso", legend=dict(orientation="v", y=1, x=1.02))
    return fig


def selected_indices(selection: dict | None) -> list[int]:
    """Row indices of the points in a ``st.plotly_chart(on_select=...)`` selection of an
    :func:`embedding_figure` (each point carries its index as customdata)."""
    if not selection:
        return []
    points = (selection.get("selection") or {}).get("points") or []
    out = []
    for p in points:
        cd = p.get("customdata")
        if isinstance(cd, list):
            cd = cd[0] if cd else None
        if cd is not None:
            out.append(int(cd))
    return sorted(set(out))


def image_trace(image: np.ndarray) -> go.Image:
    """A uint8 (S, S, 3) image as a PNG data URI: the browser decodes it at once, where a pixel
    array would be converted by plotly.js pixel by pixel (slow for a grid of panels)."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return go.Image(source="data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(), hoverinfo="skip")


def _upsampled_heat_trace(heat: np.ndarray, size: int, opacity: float, scale: str = HEAT_SCALE,
                          showscale: bool = False, zmin: float | None = None, zmax: float | None = None) -> go.Heatmap:
    """A (h, w) map stretched over an image of ``size`` px: each cell covers size/h pixels."""
    h, w = heat.shape
    dy, dx = size / h, size / w
    return go.Heatmap(z=heat, x0=dx / 2 - 0.5, dx=dx, y0=dy / 2 - 0.5, dy=dy, colorscale=scale, opacity=opacity,
                      showscale=showscale, zmin=zmin, zmax=zmax, hoverinfo="skip")


def image_grid_figure(panels: Sequence[tuple[str, np.ndarray | None, np.ndarray | None]], *, cols: int = 4,
                      overlay_opacity: float = 0.6, title: str = "", panel_px: int = 170,
                      heat_scale: str = HEAT_SCALE, signed: bool = False) -> go.Figure:
    """A grid of images and/or heat maps. Each panel is (title, image (S, S, 3) uint8 or None,
    heat (h, w) or None); a heat map over an image is drawn semi-transparent on its pixel grid,
    a heat map alone fills the panel. ``signed``: a diverging scale centred on 0 (attributions)."""
    n = max(len(panels), 1)
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[p[0] for p in panels],
                        horizontal_spacing=0.02, vertical_spacing=0.08 if rows > 1 else 0.02)
    for i, (_, image, heat) in enumerate(panels):
        r, c = divmod(i, cols)
        if image is not None:
            fig.add_trace(image_trace(image), row=r + 1, col=c + 1)
        if heat is not None:
            heat = np.asarray(heat, dtype=np.float64)
            lim = float(np.nanmax(np.abs(heat))) if signed and np.isfinite(heat).any() else None
            zmin, zmax = (-lim, lim) if lim else (None, None)
            if image is not None:
                trace = _upsampled_heat_trace(heat, np.asarray(image).shape[0], overlay_opacity, heat_scale,
                                              zmin=zmin, zmax=zmax)
            else:
                trace = go.Heatmap(z=heat, colorscale=heat_scale, showscale=False, hoverinfo="skip",
                                   zmin=zmin, zmax=zmax)
            fig.add_trace(trace, row=r + 1, col=c + 1)
            if image is None:
                fig.update_yaxes(autorange="reversed", row=r + 1, col=c + 1)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, scaleanchor="x")
    for i in range(n):  # square panels: each y axis anchored to its own x axis
        suffix = "" if i == 0 else str(i + 1)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    fig.update_layout(template=_TEMPLATE, height=rows * panel_px + 50, margin=dict(l=5, r=5, t=50, b=5),
                      title=dict(text=title, x=0, font=dict(size=14)), showlegend=False)
    fig.update_annotations(font_size=11)
    return fig


def attention_grid_figure(image: np.ndarray | None, maps: np.ndarray, *, mean_map: np.ndarray | None = None,
                          mask: np.ndarray | None = None, cols: int = 4, title: str = "") -> go.Figure:
    """Per-head [CLS] attention. ``maps``: (heads, h, w); optionally the mean map and a
    thresholded mask (h, w) in {0, 1}, each over ``image`` (S, S, 3) uint8."""
    panels: list[tuple[str, np.ndarray | None, np.ndarray | None]] = []
    if image is not None:
        panels.append(("image", image, None))
    if mean_map is not None:
        panels.append(("mean over heads", image, mean_map))
    if mask is not None:
        panels.append(("kept mass mask", image, mask))
    panels += [(f"head {h}", image, m) for h, m in enumerate(np.asarray(maps))]
    return image_grid_figure(panels, cols=cols, title=title)


def probe_figure(probe: Probe, *, max_images: int = 8) -> tuple[go.Figure | None, list[str]]:
    """The probe batch of one step as a grid: one row per drawn entry of the probe's declared
    layout (images as they are, heat maps as their mean over a stack, masks as their union,
    both over the layout's first image), one column per probe image. Returns the figure (None
    if nothing is drawable) and the keys it does not draw (embeddings, scalars, undeclared)."""
    rows = probe.drawn()
    if not rows:
        return None, probe.not_drawn()
    base = probe.base_image()
    arrays = [np.asarray(probe.arrays[e.name]) for e in rows]
    n = min(max_images, min(len(a) for a in arrays))
    size = base.shape[1] if base is not None else max(a.shape[-1] for a in arrays)
    # one mosaic per row (the n images side by side): two plotly axes per row instead of n keep
    # the Live page quick to draw
    fig = make_subplots(rows=len(rows), cols=1, subplot_titles=[e.title for e in rows],
                        vertical_spacing=0.06 if len(rows) > 1 else 0.0)
    for r, (entry, a) in enumerate(zip(rows, arrays), start=1):
        if entry.kind == "image":
            fig.add_trace(image_trace(_mosaic([_to_uint8(a[i]) for i in range(n)], 255)), row=r, col=1)
            continue
        maps = a.astype(np.float64)
        if maps.ndim == 4:  # a stack (heads, blocks): heat maps averaged, masks joined
            maps = maps.mean(axis=1) if entry.kind == "heatmap" else maps.max(axis=1)
        heat = _mosaic([_to_grid(maps[i], size) for i in range(n)], np.nan)
        if base is not None:
            fig.add_trace(image_trace(_mosaic([_to_uint8(base[i]) for i in range(n)], 255)), row=r, col=1)
            fig.add_trace(go.Heatmap(z=heat, colorscale=HEAT_SCALE, opacity=0.65, showscale=False, hoverinfo="skip"),
                          row=r, col=1)
        else:
            fig.add_trace(go.Heatmap(z=heat, colorscale=HEAT_SCALE, showscale=False, hoverinfo="skip"), row=r, col=1)
            fig.update_yaxes(autorange="reversed", row=r, col=1)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    for r in range(1, len(rows) + 1):
        suffix = "" if r == 1 else str(r)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    fig.update_layout(template=_TEMPLATE, height=len(rows) * 135 + 30, margin=dict(l=5, r=5, t=30, b=5),
                      showlegend=False)
    fig.update_annotations(font_size=12)
    return fig, probe.not_drawn()


_GAP = 2  # white pixels between the probe images of a row


def _mosaic(tiles: list[np.ndarray], fill: float) -> np.ndarray:
    """Tiles (S, S, ...) side by side, ``_GAP`` columns of ``fill`` between them: (S, n*S + gaps, ...)."""
    gap = np.full((tiles[0].shape[0], _GAP, *tiles[0].shape[2:]), fill, dtype=np.result_type(tiles[0], fill))
    parts: list[np.ndarray] = []
    for i, t in enumerate(tiles):
        parts += [gap, t] if i else [t]
    return np.concatenate(parts, axis=1)


def _to_grid(m: np.ndarray, size: int) -> np.ndarray:
    """A patch-grid map (h, w) shown on a (size, size) pixel grid: each pixel takes its patch's value."""
    m = np.asarray(m, dtype=np.float64)
    ys = np.arange(size) * m.shape[0] // size
    xs = np.arange(size) * m.shape[1] // size
    return m[np.ix_(ys, xs)]


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """Display any (S, S, 3) image as uint8: floats in [0, 1] are scaled, others clipped."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img
    f = img.astype(np.float64)
    if np.nanmax(f) <= 1.0 + 1e-6:
        f = f * 255.0
    return np.clip(np.nan_to_num(f), 0, 255).astype(np.uint8)


def scores_figure(rows: Sequence[tuple[str, float]], *, title: str = "", chance: float | None = None) -> go.Figure:
    """Horizontal bars of top-1 accuracies (0-1): the model's scores beside their baselines."""
    names = [r[0] for r in rows]
    vals = [100.0 * r[1] for r in rows]
    fig = go.Figure(go.Bar(x=vals, y=names, orientation="h", text=[f"{v:.1f}%" for v in vals],
                           textposition="auto", marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(rows))]))
    if chance is not None:
        fig.add_vline(x=100.0 * chance, line_dash="dash", line_color="grey", annotation_text="chance")
    fig.update_xaxes(range=[0, 100], title_text="top-1 accuracy (%)")
    fig.update_yaxes(autorange="reversed")
    _base_layout(fig, title, 60 + 45 * max(len(rows), 1))
    fig.update_layout(hovermode="closest")
    return fig


def confusion_figure(cm: np.ndarray, class_names: Sequence[str] | None = None, *, title: str = "") -> go.Figure:
    """Confusion matrix (true rows, predicted columns) as a heat map of counts."""
    cm = np.asarray(cm)
    names = list(class_names) if class_names else [str(i) for i in range(cm.shape[0])]
    fig = go.Figure(go.Heatmap(z=cm, x=names, y=names, colorscale="Blues", text=cm, texttemplate="%{text}",
                               showscale=False))
    fig.update_xaxes(title_text="predicted")
    fig.update_yaxes(title_text="true", autorange="reversed")
    _base_layout(fig, title, 360)
    fig.update_layout(hovermode="closest")
    return fig


def spectrum_figure(singular_values: np.ndarray, *, title: str = "Singular value spectrum") -> go.Figure:
    """Normalised singular values of the feature matrix on a log axis: a flat spectrum is
    healthy, a few large values then a cliff is dimensional collapse."""
    s = np.asarray(singular_values, dtype=np.float64)
    s = s / s[0] if s.size and s[0] > 0 else s
    fig = go.Figure(go.Scatter(x=np.arange(1, s.size + 1), y=s, mode="lines+markers", line=dict(color=PALETTE[0])))
    fig.update_xaxes(title_text="index")
    fig.update_yaxes(title_text="sigma_i / sigma_1", type="log")
    return _base_layout(fig, title, 300)
