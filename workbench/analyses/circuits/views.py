"""Circuit figures (pure plotly): which heads two circuits share, as a categorical layer × head map."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import plotly.graph_objects as go

from workbench.core.errors import WorkbenchError
from workbench.core.heads import parse_heads
from workbench.viz.heads import head_grid_layout

OVERLAP_COLORS = ("#f2f2f2", "#4c78a8", "#f58518", "#54a24b")  # neither, only A, only B, both


def _categories(names: Sequence[str]) -> tuple[str, str, str, str]:
    a, b = names
    return "neither", f"only {a}", f"only {b}", f"both ({a} ∩ {b})"


def circuit_overlap_map(n_layers: int, n_heads: int, a_heads: Iterable, b_heads: Iterable,
                        names: Sequence[str] = ("A", "B"), *, title: str | None = None,
                        height: int | None = None) -> go.Figure:
    """Layer × head map coloured by membership: neither (0) · only A (1) · only B (2) · both (3)."""
    if len(names) != 2:
        raise WorkbenchError(f"names must be two labels (for A and B), got {names!r}.")
    a, b = set(parse_heads(a_heads)), set(parse_heads(b_heads))
    bad = sorted(str(h) for h in a | b if not (0 <= h.layer < n_layers and 0 <= h.head < n_heads))
    if bad:
        raise WorkbenchError(f"heads {', '.join(bad[:8])} are outside the {n_layers}×{n_heads} map; check that the "
                             "circuits belong to a model of this shape.")
    z = np.zeros((n_layers, n_heads), dtype=int)
    for h in a:
        z[h.layer, h.head] += 1
    for h in b:
        z[h.layer, h.head] += 2
    cats = _categories([str(x) for x in names])
    hover = np.empty((n_layers, n_heads), dtype=object)
    for layer in range(n_layers):
        for head in range(n_heads):
            hover[layer, head] = f"<b>L{layer}H{head}</b><br>{cats[z[layer, head]]}"
    colorscale = []
    for i, color in enumerate(OVERLAP_COLORS):  # stepped scale: one flat band per category over z in [-0.5, 3.5]
        colorscale += [[i / 4, color], [(i + 1) / 4, color]]
    counts = [int((z == i).sum()) for i in range(4)]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(n_heads)), y=list(range(n_layers)), zmin=-0.5, zmax=3.5, colorscale=colorscale,
        text=hover, hovertemplate="%{text}<extra></extra>", xgap=1, ygap=1,
        colorbar=dict(tickvals=[0, 1, 2, 3], ticktext=[f"{c} ({n})" for c, n in zip(cats, counts, strict=True)],
                      thickness=14, len=0.6, title=dict(text="heads", side="top"))))
    default_title = (f"{names[0]} vs {names[1]}: {counts[3]} shared of {counts[1] + counts[3]} / "
                     f"{counts[2] + counts[3]} heads")
    head_grid_layout(fig, n_layers, n_heads, title=title or default_title, height=height)
    return fig


def roc_by_examples(summary, *, title: str = "ROC-AUC by number of examples") -> go.Figure:
    """Mean ROC-AUC ± sd against the number of examples, one line per method (sae_report.summarize frame)."""
    fig = go.Figure()
    for method, part in summary.groupby("method"):
        fig.add_trace(go.Scatter(x=part["n_examples"], y=part["roc_auc_mean"], name=str(method), mode="lines+markers",
                                 error_y=dict(type="data", array=part["roc_auc_sd"].fillna(0), visible=True)))
    fig.add_hline(y=0.5, line_dash="dot", annotation_text="chance")
    fig.update_layout(title=title, xaxis_title="examples per class", yaxis_title="ROC-AUC", yaxis_range=[0, 1],
                      template="plotly_white")
    return fig
