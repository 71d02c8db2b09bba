"""Per-token figures (pure plotly): sink score and BOS mass, WAAD and FAI traces with preplan/anchor marks."""

from __future__ import annotations

from typing import Any, Mapping

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.viz.heads import FONT, _short


def token_traces_figure(traces: Mapping[str, Any], *, title: str | None = None) -> go.Figure:
    """Stacked panels of `api.token_traces` over position: sink/BOS, WAAD, FAI; a selected head's curves dashed."""
    tokens = list(traces["tokens"])
    x = list(range(len(tokens)))
    start = int(traces.get("window_start", 0))
    hover = [f"#{i if not start or i == 0 else start + i - 1} {_short(t, 16)!r}" for i, t in enumerate(tokens)]
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07, subplot_titles=(
        "Sink score (attention received, mean over heads) and BOS mass of each query",
        f"WAAD (window {traces.get('window')}), mean over {traces.get('n_local_heads')} local heads "
        "· ▲ preplan",
        f"FAI (mean attention received from later tokens), mean over {traces.get('n_global_heads')} global heads "
        "· ◆ anchor"))

    def line(y, name, row, color, dash=None):
        fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines", line=dict(color=color, width=1.6, dash=dash),
                                 text=hover, hovertemplate="%{text}<br>" + name + " %{y:.3f}<extra></extra>"),
                      row=row, col=1)

    line(traces["sink"], "sink score", 1, "#1f77b4")
    line(traces["bos_mass"], "BOS mass", 1, "#ff7f0e")
    line(traces["waad"], "WAAD", 2, "#2ca02c")
    line(traces["fai"], "FAI", 3, "#9467bd")
    head = traces.get("head_traces")
    if head:
        name = traces.get("head", "head")
        line(head["sink"], f"{name} sink", 1, "#1f77b4", "dot")
        line(head["waad"], f"{name} WAAD", 2, "#2ca02c", "dot")
    for key, row, series, symbol, color in (("preplan", 2, "waad", "triangle-up", "#d62728"),
                                            ("anchor", 3, "fai", "diamond", "#d62728")):
        marks = list(traces.get(key, []))
        fig.add_trace(go.Scatter(x=marks, y=[traces[series][i] for i in marks], mode="markers", name=key,
                                 marker=dict(symbol=symbol, size=9, color=color),
                                 text=[hover[i] for i in marks], hovertemplate="%{text}<br>" + key + "<extra></extra>"),
                      row=row, col=1)
    fai_rest = [v for v in list(traces["fai"])[1:] if v == v]
    if fai_rest and traces["fai"][0] > 2 * max(fai_rest):  # BOS would flatten every other token
        top = 1.25 * max(fai_rest)
        fig.update_yaxes(range=[0, top], row=3, col=1)
        fig.add_annotation(x=0, y=top, text=f"BOS {traces['fai'][0]:.2f} ↑", showarrow=False, xanchor="left",
                           yanchor="top", font=dict(size=10, color="#9467bd"), row=3, col=1)
    every = max(1, len(tokens) // 48)
    ticks = list(range(0, len(tokens), every))
    fig.update_xaxes(tickvals=ticks, ticktext=[_short(tokens[i], 8) for i in ticks], tickangle=-60,
                     tickfont=dict(size=9), row=3, col=1)
    fig.update_xaxes(title_text="token", row=3, col=1)
    fig.update_yaxes(title_text="attention", row=1, col=1)
    fig.update_yaxes(title_text="tokens back", row=2, col=1)
    fig.update_yaxes(title_text="attention", row=3, col=1)
    fig.update_layout(title=dict(text=title or "Per-token attention", x=0.01, font=dict(size=15)), font=FONT,
                      template="plotly_white", height=780, margin=dict(l=70, r=20, t=110, b=90),
                      legend=dict(orientation="h", y=1.1, x=1, xanchor="right", yanchor="bottom"))
    return fig
