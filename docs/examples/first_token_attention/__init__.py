"""First-token attention: the worked example of docs/adding_an_analysis.md (not in the shipped registry).

The spec (torch-free): Params, the check's Params, and the names of the functions that run them."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.analyses.base import AnalysisSpec, CheckSpec


@dataclass(frozen=True)
class Params:
    n_prompts: int = 4
    n_tokens: int = 64


@dataclass(frozen=True)
class AblateTopParams:
    k: int = 2
    n_random: int = 2  # random draws, seeded 0 … n_random − 1
    n_prompts: int = 4
    n_tokens: int = 64


SPEC = AnalysisSpec(
    name="first_token_attention",
    summary="mean attention on the first token per head (the worked example)",
    params_type=Params,
    default_prompts="first_token_attention.score:default_prompts",
    run="first_token_attention.score:run",
    checks=(CheckSpec("ablate_top", "loss with the top-k heads mean-ablated vs k random heads", AblateTopParams,
                      "first_token_attention.checks:ablate_top"),),
    views="first_token_attention.views:views",
)
