"""Head-level figures (pure plotly, DataFrame in, Figure out): layer × head heatmap, head pattern, difference map."""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.core.scores import head_label, is_signed

IDENTITY = ("analysis", "model", "prompt_set", "layer", "head", "label")
SEQUENTIAL = "Viridis"
DIVERGING = "RdBu_r"
FONT = dict(family="Inter, Segoe UI, Helvetica, Arial, sans-serif", size=12)


def extra_columns(scores: pd.DataFrame, limit: int = 6) -> list[str]:
    """Analysis-specific columns worth showing on hover (everything but identity and score)."""
    return [c for c in scores.columns if c not in IDENTITY and c != "score"][:limit]


def _grid(scores: pd.DataFrame, column: str) -> tuple[np.ndarray, int, int]:
    n_layers, n_heads = int(scores["layer"].max()) + 1, int(scores["head"].max()) + 1
    grid = np.full((n_layers, n_heads), np.nan)
    values = pd.to_numeric(scores[column], errors="coerce").to_numpy(dtype=float)
    grid[scores["layer"].to_numpy(), scores["head"].to_numpy()] = values
    return grid, n_layers, n_heads


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "nan" if value != value else f"{value:.4g}"
    return str(value)


def head_heatmap(scores: pd.DataFrame, column: str = "score", *, title: str | None = None,
                 highlight: Sequence[tuple[int, int]] = (), highlight_color: str = "#ff3b30",
                 colorscale: str | None = None, zmid: float | None = None, zmin: float | None = None,
                 zmax: float | None = None, categories: Sequence[tuple[str, str]] = (),
                 height: int | None = None) -> go.Figure:
    """Layer × head heatmap of `column`, hover with the extra columns; `categories` draws codes 0..n−1 as bands.
    Default colours: a signed column (a value < 0) on DIVERGING centred at 0, a non-negative one on SEQUENTIAL."""
    grid, n_layers, n_heads = _grid(scores, column)
    if colorscale is None and not categories:
        colorscale, zmid = (DIVERGING, 0.0 if zmid is None else zmid) if is_signed(grid) else (SEQUENTIAL, zmid)
    extras = extra_columns(scores)
    hover = np.full((n_layers, n_heads), "", dtype=object)
    for row in scores.itertuples(index=False):
        r = row._asdict()
        value = categories[int(r[column])][0] if categories else f"{column}: {_fmt(r[column])}"
        lines = [f"<b>{head_label(r['layer'], r['head'])}</b>", value]
        if column != "score" and "score" in r:
            lines.append(f"score: {_fmt(r['score'])}")
        lines += [f"{c}: {_fmt(r[c])}" for c in extras if c != column]
        hover[r["layer"], r["head"]] = "<br>".join(lines)
    colorbar = dict(title=dict(text=column, side="right"), thickness=14)
    if categories:  # a stepped scale: one flat band per category over z in [-0.5, n − 0.5]
        k = len(categories)
        colorscale = [[(i + j) / k, color] for i, (_, color) in enumerate(categories) for j in (0, 1)]
        zmin, zmax = -0.5, k - 0.5
        ticktext = [f"{name} ({int((grid == i).sum())})" for i, (name, _) in enumerate(categories)]
        colorbar.update(tickvals=list(range(k)), ticktext=ticktext, len=0.6)
    fig = go.Figure(go.Heatmap(
        z=grid, x=list(range(n_heads)), y=list(range(n_layers)), text=hover, hovertemplate="%{text}<extra></extra>",
        colorscale=colorscale, zmid=zmid, zmin=zmin, zmax=zmax, xgap=1, ygap=1, colorbar=colorbar))
    if highlight:
        fig.add_trace(head_marker(highlight, highlight_color))
    head_grid_layout(fig, n_layers, n_heads, title=title or column, height=height)
    fig.update_layout(clickmode="event")
    return fig


def head_marker(heads: Sequence[tuple[int, int]], color: str = "#ff3b30") -> go.Scatter:
    """Open squares around `heads` [(layer, head)] on a layer × head map (an empty trace when there are none)."""
    return go.Scatter(x=[h for _, h in heads], y=[layer for layer, _ in heads], mode="markers",
                      marker=dict(symbol="square-open", size=16, color=color, line=dict(width=3)),
                      hoverinfo="skip", showlegend=False)


def head_grid_layout(fig: go.Figure, n_layers: int, n_heads: int, *, title: str, height: int | None = None) -> None:
    """The shared look of every layer × head map: L0 at the top, H0 on the left, sparse layer ticks past 32."""
    tick_every = 1 if n_layers <= 32 else max(1, n_layers // 24)
    fig.update_layout(
        title=dict(text=title, x=0.01, font=dict(size=15)), font=FONT, template="plotly_white",
        height=height or max(360, min(900, 80 + 20 * n_layers)), margin=dict(l=60, r=20, t=64, b=50),
        xaxis=dict(title="head", tickvals=list(range(n_heads)), ticktext=[f"H{h}" for h in range(n_heads)],
                   side="bottom", showgrid=False),
        yaxis=dict(title="layer", tickvals=list(range(0, n_layers, tick_every)),
                   ticktext=[f"L{x}" for x in range(0, n_layers, tick_every)], autorange="reversed",
                   showgrid=False))


def _downsample(pattern: np.ndarray, limit: int) -> tuple[np.ndarray, int]:
    """Block-max pooling to at most `limit` rows/columns (keeps sharp single-key heads visible)."""
    t = pattern.shape[0]
    step = int(np.ceil(t / limit)) if t > limit else 1
    if step == 1:
        return pattern, 1
    pad = (-t) % step
    padded = np.pad(pattern, ((0, pad), (0, pad)), constant_values=np.nan)
    blocks = padded.reshape(padded.shape[0] // step, step, padded.shape[1] // step, step)
    with warnings.catch_warnings():  # blocks wholly above the diagonal are all-NaN: they stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(blocks, axis=(1, 3)), step


def _short(token: str, width: int = 10) -> str:
    token = token.replace("\n", "⏎").replace("\t", "⇥")
    token = token if token.strip() else token.replace(" ", "␣")
    return token if len(token) <= width else token[: width - 1] + "…"


def pattern_heatmap(tokens: Sequence[str], pattern, *, head: str = "", window_start: int = 0,
                    max_cells: int = 160, title: str | None = None) -> go.Figure:
    """Query × key attention of one head; long prompts are block-max downsampled to `max_cells` per side."""
    matrix = np.asarray(pattern, dtype=float)
    matrix = np.where(np.triu(np.ones_like(matrix, dtype=bool), k=1), np.nan, matrix)  # causal: hide future
    shown, step = _downsample(matrix, max_cells)
    n = shown.shape[0]
    labels = [_short(tokens[min(i * step, len(tokens) - 1)]) for i in range(n)]
    pos = [0] + [window_start + i * step for i in range(1, n)] if window_start else [i * step for i in range(n)]
    every = max(1, int(np.ceil(n / 28)))
    ticks = list(range(0, n, every))
    ticktext = [f"{labels[i]} ·{pos[i]}" for i in ticks]
    hover_x = "key" + (f" block of {step}" if step > 1 else "")
    fig = go.Figure(go.Heatmap(
        z=shown.astype(np.float32),  # float32: half the figure's bytes (hover shows 3 decimals)
        colorscale="Blues", zmin=0, zmax=max(1e-6, float(np.nanmax(shown)) if n else 1.0),
        hovertemplate=f"query #%{{y}} · {hover_x} #%{{x}}<br>attention %{{z:.3f}}<extra></extra>",
        colorbar=dict(title=dict(text="attention", side="right"), thickness=12)))
    note = f" (block-max, {step}×{step} tokens per cell)" if step > 1 else ""
    fig.update_layout(
        title=dict(text=title or f"{head} attention pattern{note}", x=0.01, font=dict(size=15)), font=FONT,
        template="plotly_white", height=560, margin=dict(l=110, r=20, t=50, b=110),
        xaxis=dict(title="key token", tickvals=ticks, ticktext=ticktext, tickangle=-60, showgrid=False,
                   tickfont=dict(size=10)),
        yaxis=dict(title="query token", tickvals=ticks, ticktext=ticktext, autorange="reversed", showgrid=False,
                   tickfont=dict(size=10)))
    return fig


def difference_map(diff: pd.DataFrame, *, label_a: str, label_b: str, column: str = "difference",
                   title: str | None = None) -> go.Figure:
    """Layer × head map of `column` (e.g. percentile rank in A minus in B), diverging around 0."""
    fig = head_heatmap(diff.assign(score=diff[column]), column=column, colorscale=DIVERGING, zmid=0.0,
                       title=title or f"{label_a} − {label_b}")
    fig.data[0].colorbar.title.text = "A − B"
    return fig


def placeholder(message: str, height: int = 300) -> go.Figure:
    """An empty figure carrying a message (nothing to show yet)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font=dict(size=14, color="#666"), x=0.5, y=0.5,
                       xref="paper", yref="paper")
    fig.update_layout(template="plotly_white", height=height, xaxis=dict(visible=False), yaxis=dict(visible=False),
                      margin=dict(l=10, r=10, t=10, b=10), font=FONT)
    return fig
