"""`workbench divergence report`: heads that read the context (`divergence reinforce`: the generic reinforce check,
added in workbench/cli/main.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from workbench import api
from workbench.analyses import get_analysis
from workbench.cli.common import DEVICE, DTYPE, MODEL, console, friendly, save_figure, show
from workbench.cli.registry import RESULTS_DIR, run_and_show

app = typer.Typer(help="Head divergence with vs without a passage (He et al. 2024, adapted).", no_args_is_help=True)


@app.command()
@friendly
def report(model: str = MODEL, metric: str = typer.Option("l2", help="l2 | cosine"),
           device: str = DEVICE, dtype: str = DTYPE,
           top_k: int = typer.Option(10), out: Optional[Path] = typer.Option(None, help="HTML divergence map"),
           results_dir: Optional[Path] = RESULTS_DIR):
    """The divergence map, the top heads, and whether ignored passages come with low divergence (saved as a run)."""
    result = run_and_show(get_analysis("head_divergence"), {"metric": metric, "top_k": top_k}, model=model,
                          device=device, dtype=dtype, results_dir=results_dir, save=True, out=None, top=top_k)
    show(result.tables["prompts"].round(3), "per prompt")
    if out:
        save_figure(api.plot_heads(result.scores, title=f"Head divergence ({metric})"), out)
        console.print(f"map: {out}")
