"""Circuit figures (pure plotly): which heads two circuits share, as a categorical layer × head map."""

from __future__ import annotations

from typing import Iterable, Sequence

import pandas as pd
import plotly.graph_objects as go

from workbench.core.errors import WorkbenchError
from workbench.core.heads import parse_heads
from workbench.viz.heads import head_heatmap

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
    member = {(h.layer, h.head): (h in a) + 2 * (h in b) for h in a | b}
    cells = pd.DataFrame([{"layer": layer, "head": head, "circuit": member.get((layer, head), 0)}
                          for layer in range(n_layers) for head in range(n_heads)])
    cats = _categories([str(x) for x in names])
    counts = [int((cells["circuit"] == i).sum()) for i in range(4)]
    default_title = (f"{names[0]} vs {names[1]}: {counts[3]} shared of {counts[1] + counts[3]} / "
                     f"{counts[2] + counts[3]} heads")
    return head_heatmap(cells, "circuit", categories=list(zip(cats, OVERLAP_COLORS, strict=True)),
                        title=title or default_title, height=height)


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
