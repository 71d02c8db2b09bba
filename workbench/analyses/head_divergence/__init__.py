"""Head divergence (He et al. 2024): score, prompts, checks and CLI.

The spec (torch-free): Params and the names of the functions that run it."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.analyses.base import AnalysisSpec


@dataclass(frozen=True)
class Params:
    n_positions: int = 1
    metric: str = "l2"
    top_k: int = 10
    held_out: float = 0.5
    seed: int = 0


SPEC = AnalysisSpec(
    name="head_divergence",
    summary="how much each head's output changes when a passage is added",
    params_type=Params,
    default_prompts="workbench.analyses.head_divergence.score:default_prompts",
    run="workbench.analyses.head_divergence.score:run",
)
