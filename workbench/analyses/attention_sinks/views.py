"""Figures for the attention-sink report: pure builders, DataFrame in, plotly Figure out (no I/O)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.viz.heads import head_heatmap


def first_token_heatmap(heads: pd.DataFrame, value: str = "first_token_share") -> go.Figure:
    """Layer × head heatmap of a per-head column (default: first-token share α[0])."""
    return head_heatmap(heads, value, title=f"{value} per head", zmin=0, zmax=1)


def layer_norm_curves(layers: pd.DataFrame) -> go.Figure:
    """BOS hidden-state norm vs the median token norm per layer, and the share of heads with a BOS sink."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("hidden-state norm", "share of heads with α0 > ε"))
    fig.add_trace(go.Scatter(x=layers["layer"], y=layers["bos_norm"], name="BOS"), row=1, col=1)
    fig.add_trace(go.Scatter(x=layers["layer"], y=layers["median_token_norm"], name="median token"), row=1, col=1)
    fig.add_trace(go.Bar(x=layers["layer"], y=layers["sink_share"], name="sink share"), row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title_text="layer")
    return fig


def token_heatmap(tokens: pd.DataFrame, value: str = "cos_bos") -> go.Figure:
    """Layer × token heatmap of one prompt (cos to BOS, norm or attention received)."""
    grid = tokens.pivot(index="layer", columns="pos", values=value).sort_index()
    names = tokens.drop_duplicates("pos").set_index("pos")["token"].reindex(grid.columns)
    fig = go.Figure(go.Heatmap(z=grid.values, x=[f"{p}:{t!r}" for p, t in names.items()], y=grid.index,
                               colorscale="RdBu" if value == "cos_bos" else "Viridis"))
    fig.update_layout(title=f"{value} per layer and token", xaxis_title="token", yaxis_title="layer",
                      yaxis={"autorange": "reversed"})
    return fig
