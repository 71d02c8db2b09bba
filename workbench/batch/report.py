"""A self-contained HTML report of a batch (plotly.js inlined once): the summary table and, per finished run, its
head map and top heads; per finished check, its summary, tables and head map when it has per-head scores.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from workbench.core.scores import ranked
from workbench.results import runs as results


def write_report(summary: pd.DataFrame, path: str | Path, *, title: str = "Batch report",
                 results_dir: Path | None = None, top: int = 10) -> Path:
    from workbench.viz.heads import head_heatmap

    path = Path(path)
    parts = [f"<h1>{html.escape(title)}</h1>", "<h2>Cells</h2>", summary.to_html(index=False, border=0)]
    first_figure = True
    for row in summary.itertuples():
        if row.status not in ("done", "skipped") or not row.run_id:
            continue
        result = results.load_result(row.run_id, results_dir)
        scores, record = result.scores, result.record
        kind = "" if record.kind == "run" else f"check {record.kind} of {record.parent_run} · "
        parts.append(f"<h2>{html.escape(record.analysis)} · {html.escape(kind + record.model)} · "
                     f"{html.escape(record.prompt_set)}</h2><p>run {html.escape(record.run_id)}, "
                     f"{record.timings.get('total', 0):.1f} s, params {html.escape(str(record.params))}</p>")
        if record.kind != "run":
            parts.append(f"<p>{html.escape(str(result.summary))}</p>" + "".join(
                f"<h3>{html.escape(name)}</h3>" + table.head(top).to_html(index=False, border=0, float_format="%.4g")
                for name, table in result.tables.items()))
        if scores is None:
            continue
        fig = head_heatmap(scores, title=f"{record.analysis} {kind}score per head")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=first_figure))
        first_figure = False
        best = ranked(scores, "score", top)  # by |score| where signed, average ranks
        shown = [c for c in best.columns if c not in ("analysis", "model", "prompt_set")]
        parts.append(f"<h3>Top {top} heads by {best.attrs['by']}</h3>"
                     + best[shown].to_html(index=False, border=0, float_format="%.4g"))
    style = ("<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
             "table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid #ddd}"
             "th{background:#f3f3f3}</style>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                    f"{style}</head><body>{''.join(parts)}</body></html>")
    return path
