"""Before/after figure of an intervention table (pure plotly): the metric per prompt, clean vs edited."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from workbench.viz.heads import FONT


def before_after_figure(table: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Grouped bars of `before` and `after` per prompt (columns of workbench.api.intervene's table)."""
    metric = str(table["metric"].iloc[0]) if len(table) else "metric"
    x = [f"prompt {p}" for p in table["prompt"]]
    fig = go.Figure([
        go.Bar(x=x, y=table["before"], name="before (clean)", marker_color="#9aa5b1",
               hovertemplate="%{x}<br>before %{y:.4f}<extra></extra>"),
        go.Bar(x=x, y=table["after"], name="after (edited)", marker_color="#1f77b4",
               hovertemplate="%{x}<br>after %{y:.4f}<extra></extra>"),
    ])
    fig.update_layout(title=dict(text=title or f"{metric} before and after the edit", x=0.01, font=dict(size=15)),
                      barmode="group", template="plotly_white", font=FONT, height=340,
                      yaxis_title=metric, margin=dict(l=60, r=20, t=50, b=40),
                      legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))
    return fig
