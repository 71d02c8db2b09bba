"""Figures for retrieval heads (`views`): score map, retrieval-vs-streaming scatter, causal check and KV budget bars."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from workbench.core.scores import head_label
from workbench.viz.heads import head_heatmap


def views(result) -> dict[str, go.Figure]:
    """A run: the score map and retrieval vs streaming; a check: accuracy per condition and by context length."""
    if result.kind == "run":
        return {"scores": head_heatmap(result.scores, title="retrieval heads: score"),
                "retrieval_vs_streaming": retrieval_vs_streaming(result.scores)}
    title = {"mask": "top-k vs random heads masked", "kv_budget": "under a KV budget"}.get(result.kind, result.kind)
    return {"conditions": condition_bars(result.tables["conditions"], f"NIAH accuracy: {title}"),
            "by_length": accuracy_by_length(result.tables["trials"], f"{title}: accuracy by length")}


def retrieval_vs_streaming(scores: pd.DataFrame) -> go.Figure:
    """Each head: retrieval score against streaming score (mass on sink + recent keys while decoding)."""
    labels = [head_label(r.layer, r.head) for r in scores.itertuples(index=False)]
    colors = scores["retrieval"].map({True: "crimson", False: "steelblue"})
    fig = go.Figure(go.Scatter(x=scores["streaming_score"], y=scores["score"], mode="markers", text=labels,
                               marker={"color": list(colors)}, hovertemplate="%{text}<br>streaming %{x:.3f}"
                               "<br>retrieval %{y:.3f}<extra></extra>"))
    fig.update_layout(title="retrieval vs streaming heads", xaxis_title="streaming score (sink + recent mass)",
                      yaxis_title="retrieval score")
    return fig


def condition_bars(summary: pd.DataFrame, title: str, baseline: float | None = None) -> go.Figure:
    """Accuracy per condition: bar = mean over seeds, points = single seeds; optional baseline line."""
    agg = summary.groupby("condition", sort=False)["accuracy"].agg(["mean", "std"]).reset_index()
    fig = go.Figure(go.Bar(x=agg["condition"], y=agg["mean"], error_y={"type": "data", "array": agg["std"].fillna(0)},
                           name="mean over seeds"))
    fig.add_trace(go.Scatter(x=summary["condition"], y=summary["accuracy"], mode="markers", name="single run",
                             marker={"color": "black"}))
    if baseline is not None:
        fig.add_hline(y=baseline, line_dash="dash", annotation_text=f"baseline {baseline:.2f}")
    fig.update_layout(title=title, yaxis_title="NIAH accuracy", yaxis_range=[0, 1.05])
    return fig


def accuracy_by_length(trials: pd.DataFrame, title: str) -> go.Figure:
    """Accuracy against context length, one line per condition (seeds pooled)."""
    agg = trials.groupby(["condition", "context_length"], as_index=False)["correct"].mean()
    fig = go.Figure()
    for name, part in agg.groupby("condition", sort=False):
        fig.add_trace(go.Scatter(x=part["context_length"], y=part["correct"], mode="lines+markers", name=name))
    fig.update_layout(title=title, xaxis_title="context length (tokens)", yaxis_title="NIAH accuracy",
                      yaxis_range=[0, 1.05])
    return fig
