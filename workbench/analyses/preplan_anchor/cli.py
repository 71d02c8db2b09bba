"""`workbench preplan report`: preplan and anchor tokens in the model's own reasoning traces (`preplan intervene`:
the generic anchor_intervention check, added in workbench/cli/main.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from workbench.analyses import get_analysis
from workbench.cli.common import DEVICE, DTYPE, MODEL, console, friendly, show
from workbench.cli.registry import RESULTS_DIR, run_and_show

app = typer.Typer(help="Preplan/anchor tokens in reasoning traces (Li et al. 2025).", no_args_is_help=True)


@app.command()
@friendly
def report(n_problems: int = typer.Option(8), max_new_tokens: int = typer.Option(256),
           window: int = typer.Option(10, help="WAAD window W"), model: str = MODEL,
           device: str = DEVICE, dtype: str = DTYPE,
           examples: int = typer.Option(2), out: Optional[Path] = typer.Option(None, help="HTML figures"),
           results_dir: Optional[Path] = RESULTS_DIR):
    """Head split, traces with preplan (P) and anchor (A) marks, and the coupling against chance (saved as a run)."""
    from workbench.analyses.preplan_anchor.views import marked_text, trace_figure

    params = {"n_problems": n_problems, "max_new_tokens": max_new_tokens, "window": window}
    result = run_and_show(get_analysis("preplan_anchor"), params, model=model, device=device, dtype=dtype,
                          results_dir=results_dir, save=True, out=None, top=5)
    scores, tokens, n_traces = result.scores, result.tables["tokens"], min(examples, result.summary["n_traces"])
    split = scores.groupby("kind")["score"].agg(["count", "mean", "min", "max"]).round(1).reset_index()
    show(split, "head split by mean attention distance (tokens)")
    for trace in range(n_traces):
        console.print(f"\n[bold]trace {trace}[/] (⟦P:…⟧ preplan, ⟦A:…⟧ anchor, ⟦PA:…⟧ both):", highlight=False)
        console.print(marked_text(tokens, trace), highlight=False, markup=False)
    if out:
        figs = [trace_figure(tokens, t, title=f"Trace {t}") for t in range(n_traces)]
        out.write_text("".join(f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figs)))
        console.print(f"figures: {out}")
