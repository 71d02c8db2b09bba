"""The atlas's rank heatmap (pure plotly): heads (rows) × metrics (columns), rank 1 = strongest drawn brightest;
a signed metric is ranked by |value| (workbench.core.scores.head_ranks) and its column reads '|metric|'."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.viz.heads import FONT


def rank_heatmap(ranks: pd.DataFrame, *, n_heads_total: int, title: str = "rank of each head by each metric",
                 signed: Iterable[str] = ()):
    """`ranks`: index head labels, columns metrics, values ranks (1 = strongest, NaN = no value); `signed`: the
    metrics ranked by |value|."""
    z, signed = ranks.to_numpy(dtype=float), set(signed)
    by = {m: " by |value|" if m in signed else "" for m in ranks.columns}
    text = np.array([[f"<b>{h}</b><br>{m}<br>rank {'–' if np.isnan(v) else f'{v:g}'} / {n_heads_total}{by[m]}"
                      for m, v in zip(ranks.columns, row, strict=True)] for h, row in zip(ranks.index, z, strict=True)])
    fig = go.Figure(go.Heatmap(z=z, x=list(ranks.columns), y=list(ranks.index), text=text,
                               hovertemplate="%{text}<extra></extra>", colorscale="Viridis", reversescale=True,
                               zmin=1, zmax=n_heads_total, xgap=1, ygap=1,
                               colorbar=dict(title=dict(text="rank", side="right"), thickness=14)))
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=14)), font=FONT, clickmode="event",
                      height=max(320, 18 * len(ranks) + 220), margin=dict(l=70, r=20, t=50, b=170),
                      plot_bgcolor="#fff", paper_bgcolor="#fff")
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", tickangle=-40, tickvals=list(ranks.columns),
                     ticktext=[f"|{m}|" if m in signed else m for m in ranks.columns])
    return fig
