"""Figures for preplan/anchor analysis (pure plotly): WAAD and FAI over a trace with the marks."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots


def trace_figure(tokens: pd.DataFrame, trace: int, *, title: str | None = None) -> go.Figure:
    """Two panels over the generated tokens of one trace: WAAD (▲ preplan) and FAI (◆ anchor)."""
    rows = tokens[tokens["trace"] == trace].sort_values("step")
    hover = [f"#{s} {t!r}" for s, t in zip(rows["step"], rows["token"], strict=True)]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("WAAD over local heads · ▲ preplan", "FAI over global heads · ◆ anchor"))
    for row, column, mark, symbol in ((1, "waad", "preplan", "triangle-up"), (2, "fai", "anchor", "diamond")):
        fig.add_trace(go.Scatter(x=rows["step"], y=rows[column], mode="lines", name=column.upper(), text=hover,
                                 hovertemplate="%{text}<br>%{y:.3f}<extra></extra>"), row=row, col=1)
        marked = rows[rows[mark]]
        fig.add_trace(go.Scatter(x=marked["step"], y=marked[column], mode="markers", name=mark,
                                 marker=dict(symbol=symbol, size=9, color="#d62728"),
                                 text=[f"{t!r}" for t in marked["token"]], hovertemplate="%{text}<extra></extra>"),
                      row=row, col=1)
    fig.update_xaxes(title_text="generated token", row=2, col=1)
    fig.update_yaxes(title_text="tokens back", row=1, col=1)
    fig.update_yaxes(title_text="attention", row=2, col=1)
    fig.update_layout(title=title or f"Trace {trace}", template="plotly_white", height=600)
    return fig


def marked_text(tokens: pd.DataFrame, trace: int, limit: int = 600) -> str:
    """The trace as text with ⟨P…⟩ around preplan tokens, ⟦A…⟧ around anchors (⟦PA…⟧ for both)."""
    parts = []
    for r in tokens[tokens["trace"] == trace].sort_values("step").itertuples():
        tag = ("P" if r.preplan else "") + ("A" if r.anchor else "")
        parts.append(f"⟦{tag}:{r.token}⟧" if tag else r.token)
    text = "".join(parts)
    return text if len(text) <= limit else text[:limit] + " …"
