"""Induction heads (Olsson et al. 2022): the torch-free spec."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.analyses.ablation import ablate_check
from workbench.analyses.base import AnalysisSpec, Column


@dataclass(frozen=True)
class Params:
    n_prompts: int = 8
    half_len: int = 64
    seed: int = 0


@dataclass(frozen=True)
class AblateParams(Params):
    """Repeated-token prompts as Params; the k top heads vs k random heads (one set per seed 0 … seeds−1)."""

    k: int = 5
    seeds: int = 3
    mode: str = "mean"  # "mean" or "zero" ablation of the head output z, or "uniform" attention
    column: str = "score"  # the HeadScores column ranked
    batch_size: int = 8


def effect(result) -> dict:
    """A saved "ablate" as the atlas's causal column; one saved before the generic check has no random spread in
    its summary: read it from the conditions table (first row: the top-k)."""
    from workbench.analyses.ablation import effect_against, standard_effect

    if "random_delta_sd" in result.summary:
        return standard_effect(result)
    return effect_against(result.summary["top_delta"], result.tables["conditions"]["delta"].iloc[1:],
                          "repeated_half_loss", "worse")


SPEC = AnalysisSpec(
    name="induction_heads",
    summary="induction and previous-token scores on repeated random tokens",
    params_type=Params,
    default_prompts="workbench.analyses.induction_heads.score:default_prompts",
    run="workbench.analyses.induction_heads.score:run",
    checks=(ablate_check("induction_heads", "repeated-half loss",
                         metric="workbench.analyses.induction_heads.checks:REPEATED_HALF_LOSS", prompts="check",
                         params_type=AblateParams, effect="workbench.analyses.induction_heads:effect"),),
    causal="ablate",
    columns={
        "score": Column("induction score: mean attention from a second-copy token to the token after its first "
                        "occurrence, mean_t A[t, t−R+1], on repeated random tokens", "share of attention (0–1)",
                        "higher = more induction (chance ≈ 1/t)"),
        "induction": Column("the score: mean_t A[t, t−R+1]", "share of attention (0–1)", "higher = more induction"),
        "prev_token_random": Column("previous-token score on the same tokens, mean_t A[t, t−1]",
                                    "share of attention (0–1)", "higher = more previous-token"),
    },
)
