"""Preplan and anchor tokens (Li et al. 2025): the torch-free spec."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.analyses.base import AnalysisSpec, CheckSpec, Column


@dataclass(frozen=True)
class Params:
    n_problems: int = 8
    max_new_tokens: int = 256
    window: int = 10
    split_quantile: float = 0.5
    peak_quantile: float = 0.8
    anchor_quantile: float = 0.9
    coupling_k: int = 3
    min_future: int = 8
    n_shuffles: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class AnchorParams:
    scale: float = 0.1  # attention scale on the chosen keys (0 removes them)
    n_random: int = 3  # random-token controls
    n_problems: int = 8  # the traces: as the analysis's defaults
    max_new_tokens: int = 256
    window: int = 10
    seed: int = 0


def anchor_effect(result) -> dict:
    """A saved "anchor_intervention" as the atlas's causal column: mean Δ log-probability of the traces with the
    global heads' attention to the anchors lowered, vs that mean for each random-token seed."""
    from workbench.analyses.ablation import effect_against

    table = result.tables["intervention"]
    anchors = table["condition"] == "anchors"
    rand = table[~anchors].groupby("condition")["delta_logprob"].mean()
    return effect_against(table.loc[anchors, "delta_logprob"].mean(), rand, "trace_logprob", "better")


SPEC = AnalysisSpec(
    name="preplan_anchor",
    summary="local/global heads, WAAD preplan and FAI anchor tokens",
    params_type=Params,
    default_prompts="workbench.analyses.preplan_anchor.score:default_prompts",
    run="workbench.analyses.preplan_anchor.score:run",
    checks=(CheckSpec("anchor_intervention", "lower the global heads' attention to the anchors vs to as many random "
                      "tokens; change in the trace's log-probability", AnchorParams,
                      "workbench.analyses.preplan_anchor.checks:run_anchor_intervention",
                      effect="workbench.analyses.preplan_anchor:anchor_effect"),),
    causal="anchor_intervention",
    columns={
        "score": Column("mean attention distance on the model's own reasoning traces, mean_t Σ_s A[t,s]·(t−s)",
                        "tokens", "higher = global (reads far back); below the split quantile = local"),
    },
)
