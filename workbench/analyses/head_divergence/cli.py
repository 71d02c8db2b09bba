"""`workbench divergence report|reinforce`: heads that read the context, and reinforcing them (VHD/VHR)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.common import DEVICE, DTYPE, MODEL, console, friendly, save_figure, show

app = typer.Typer(help="Head divergence with vs without a passage (He et al. 2024, adapted).", no_args_is_help=True)


def _run(model: str, metric: str, top_k: int, device: str = "auto", dtype: str = "float32"):
    from workbench import api
    from workbench.results import runs as results

    bridge = api.load_model(model, device=device, dtype=dtype)
    scores, record = api.run_analysis("head_divergence", bridge, params={"metric": metric, "top_k": top_k})
    return bridge, scores, record, results.load_summary(record.run_id), results.load_table(record.run_id, "prompts")


@app.command()
@friendly
def report(model: str = MODEL, metric: str = typer.Option("l2", help="l2 | cosine"),
           device: str = DEVICE, dtype: str = DTYPE,
           top_k: int = typer.Option(10), out: Optional[Path] = typer.Option(None, help="HTML divergence map")):
    """The divergence map, the top heads, and whether ignored passages come with low divergence."""
    from workbench import api

    _, scores, record, summary, prompts = _run(model, metric, top_k, device, dtype)
    show(scores.sort_values("score", ascending=False)[["label", "score", "sd", "rank"]].head(top_k),
         f"top {top_k} heads by divergence ({metric})")
    console.print(f"passage followed on {summary['follow_rate']:.0%} of {summary['n_prompts']} counterfactual prompts")
    console.print(f"aggregate divergence over the top heads: following {summary['divergence_when_following']}, "
                  f"ignoring {summary['divergence_when_ignoring']}; point-biserial r = {summary['point_biserial_r']}")
    show(prompts.round(3), "per prompt")
    if out:
        save_figure(api.plot_heads(scores, title=f"Head divergence ({metric})"), out)
        console.print(f"map: {out}")
    console.print(f"run {record.run_id}")


@app.command()
@friendly
def reinforce(model: str = MODEL, k: int = typer.Option(10),
              device: str = DEVICE, dtype: str = DTYPE,
              alpha: float = typer.Option(2.0), n_random: int = typer.Option(3), metric: str = typer.Option("l2")):
    """Scale the top-k divergence heads by α: follow rate on held-out prompts vs k random heads, neutral cost."""
    from workbench.analyses.head_divergence import ReinforceParams
    from workbench.analyses.head_divergence.checks import run_reinforce

    bridge, scores, _, _, _ = _run(model, metric, k, device, dtype)
    result = run_reinforce(bridge, ReinforceParams(k=k, alpha=alpha, n_random=n_random), scores=scores)
    show(result.tables["reinforce"], f"VHR: heads ×{alpha:g}")
    rates = result.tables["reinforce"].query("condition.str.startswith('random')")["follow_rate"]
    console.print(f"random-k mean follow rate {rates.mean():.2f} ± {rates.std():.2f}")
