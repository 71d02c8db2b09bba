"""Figures of a first_token_attention Result: the head map of a run; the loss change per condition of a check."""

from __future__ import annotations


def views(result) -> dict:
    import plotly.graph_objects as go

    from workbench.viz.heads import head_heatmap

    if result.scores is not None:
        return {"heads": head_heatmap(result.scores, title="attention on the first token")}
    table = result.tables["conditions"]
    return {"conditions": go.Figure(go.Bar(x=table["label"], y=table["delta"]),
                                    layout={"title": "loss change when ablated", "yaxis_title": "Δ loss"})}
