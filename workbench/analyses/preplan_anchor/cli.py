"""`workbench preplan report|intervene`: preplan and anchor tokens in the model's own reasoning traces."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.common import DEVICE, DTYPE, MODEL, console, friendly, show

app = typer.Typer(help="Preplan/anchor tokens in reasoning traces (Li et al. 2025).", no_args_is_help=True)


def _run(n_problems: int, max_new_tokens: int, window: int, model: str, device: str = "auto",
         dtype: str = "float32"):
    from workbench import api
    from workbench.results import runs as results

    params = {"n_problems": n_problems, "max_new_tokens": max_new_tokens, "window": window}
    bridge = api.load_model(model, device=device, dtype=dtype)
    scores, record = api.run_analysis("preplan_anchor", bridge, params=params)
    tokens = results.load_table(record.run_id, "tokens")
    return bridge, scores, record, tokens, results.load_summary(record.run_id)


@app.command()
@friendly
def report(n_problems: int = typer.Option(8), max_new_tokens: int = typer.Option(256),
           window: int = typer.Option(10, help="WAAD window W"), model: str = MODEL,
           device: str = DEVICE, dtype: str = DTYPE,
           examples: int = typer.Option(2), out: Optional[Path] = typer.Option(None, help="HTML figures")):
    """Head split, traces with preplan (P) and anchor (A) marks, and the coupling against chance."""
    from workbench.analyses.preplan_anchor.views import marked_text, trace_figure
    from workbench.results import runs as results

    _, scores, record, tokens, summary = _run(n_problems, max_new_tokens, window, model, device, dtype)
    split = scores.groupby("kind")["score"].agg(["count", "mean", "min", "max"]).round(1).reset_index()
    show(split, "head split by mean attention distance (tokens)")
    for kind in ("global", "local"):
        best = scores[scores["kind"] == kind].sort_values("score", ascending=kind == "local").head(5)
        console.print(f"most {kind} heads: " + ", ".join(f"{r.label} ({r.score:.0f})" for r in best.itertuples()))
    answers = results.load_table(record.run_id, "answers")
    console.print(f"answer accuracy of the traces: {summary['accuracy']:.0%} ({int(answers['correct'].sum())}"
                  f"/{len(answers)}); mean trace length {answers['n_tokens'].mean():.0f} tokens")
    for trace in range(min(examples, summary["n_traces"])):
        console.print(f"\n[bold]trace {trace}[/] (⟦P:…⟧ preplan, ⟦A:…⟧ anchor, ⟦PA:…⟧ both):", highlight=False)
        console.print(marked_text(tokens, trace), highlight=False, markup=False)
    console.print(f"\ncoupling (preplan followed by an anchor within k tokens): {summary['coupling']:.3f} vs chance "
                  f"{summary['chance_mean']:.3f} ± {summary['chance_sd']:.3f} (shuffled anchors), "
                  f"p = {summary['p_value']:.3g}; {summary['n_preplan']} preplan, {summary['n_anchor']} anchor tokens")
    if out:
        figs = [trace_figure(tokens, t, title=f"Trace {t}") for t in range(min(examples, summary["n_traces"]))]
        out.write_text("".join(f.to_html(full_html=False, include_plotlyjs=(i == 0))
                               for i, f in enumerate(figs)))
        console.print(f"figures: {out}")
    console.print(f"run {record.run_id}")


@app.command()
@friendly
def intervene(scale: float = typer.Option(0.1, help="attention scale on the chosen keys (0 removes them)"),
              n_random: int = typer.Option(3), n_problems: int = typer.Option(8),
              max_new_tokens: int = typer.Option(256), window: int = typer.Option(10),
              model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE):
    """Lower global heads' attention to the anchors vs to as many random tokens; effect on the trace."""
    from workbench.analyses.preplan_anchor import AnchorParams
    from workbench.analyses.preplan_anchor.checks import run_anchor_intervention, summarize_intervention

    bridge, scores, _, _, _ = _run(n_problems, max_new_tokens, window, model, device, dtype)
    params = AnchorParams(scale=scale, n_random=n_random, n_problems=n_problems, max_new_tokens=max_new_tokens,
                          window=window)
    table = run_anchor_intervention(bridge, params, scores=scores, progress=False).tables["intervention"]
    show(table.round(4), f"attention ×{scale:g} on anchors vs random tokens (global heads)")
    console.print(summarize_intervention(table).to_string())
