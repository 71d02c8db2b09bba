"""`workbench induction score|check`: induction heads on repeated random tokens and their causal check."""

from __future__ import annotations

import typer

from workbench.cli.common import DEVICE, DTYPE, MODEL, console, friendly, show

induction_app = typer.Typer(help="Induction heads on repeated random tokens (Olsson et al. 2022).",
                            no_args_is_help=True)

_N = typer.Option(8, "--n-prompts", help="number of repeated-token sequences")
_HALF = typer.Option(64, "--half-len", help="R: tokens in each copy ([BOS] + r + r has 2R + 1 tokens)")
_SEED = typer.Option(0, "--seed", help="seed of the random tokens")


def _scores(model, device, dtype, n_prompts, half_len, seed, top):
    from workbench import api

    params = {"n_prompts": n_prompts, "half_len": half_len, "seed": seed}
    bridge = api.load_model(model, device=device, dtype=dtype)
    scores, record = api.run_analysis("induction_heads", bridge, params=params, progress=False)
    best = scores.sort_values("score", ascending=False).head(top)
    show(best[["label", "induction", "prev_token_random"]], f"top {top} induction heads ({scores['prompt_set'][0]})")
    console.print(f"saved run [bold]{record.run_id}[/]")
    return bridge, scores


@induction_app.command()
@friendly
def score(model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, n_prompts: int = _N,
          half_len: int = _HALF, seed: int = _SEED, top: int = typer.Option(10, help="show this many heads")):
    """Induction score A[t, t−R+1] and previous-token score A[t, t−1] on the second copy, per head."""
    _scores(model, device, dtype, n_prompts, half_len, seed, top)


@induction_app.command()
@friendly
def check(model: str = MODEL, device: str = DEVICE, dtype: str = DTYPE, n_prompts: int = _N,
          half_len: int = _HALF, seed: int = _SEED, k: int = typer.Option(5, help="heads ablated per condition"),
          seeds: int = typer.Option(3, help="random-head seeds"),
          mode: str = typer.Option("mean", help="mean | zero ablation of the head output z")):
    """Loss on the repeated half with the top-k induction heads ablated vs k random heads (per seed)."""
    from workbench.analyses.induction_heads import AblateParams
    from workbench.analyses.induction_heads.checks import run_ablate
    from workbench.core.errors import InterventionError

    if mode not in ("zero", "mean"):  # before the model loads
        raise InterventionError(f"Ablation mode must be 'zero' or 'mean', got {mode!r}.")
    bridge, scores = _scores(model, device, dtype, n_prompts, half_len, seed, k)
    params = AblateParams(n_prompts=n_prompts, half_len=half_len, seed=seed, k=k, seeds=seeds, mode=mode)
    result = run_ablate(bridge, params, scores=scores, progress=False)
    table, s = result.tables["conditions"], result.summary
    show(table.drop(columns=["k", "n_prompts"]).round(4), f"{mode}-ablation · loss on the repeated half")
    console.print(f"top-{k} induction heads: Δloss {s['top_delta']:+.3f}; random heads: Δloss "
                  f"{s['random_delta_mean']:+.3f} (mean of {seeds}, max {s['random_delta_max']:+.3f})")
