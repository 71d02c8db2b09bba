"""Preplan and anchor tokens (Li et al. 2025): score, prompts, checks, views and CLI.

The spec (torch-free): Params and the names of the functions that run it."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.analyses.base import AnalysisSpec


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


SPEC = AnalysisSpec(
    name="preplan_anchor",
    summary="local/global heads, WAAD preplan and FAI anchor tokens",
    params_type=Params,
    default_prompts="workbench.analyses.preplan_anchor.score:default_prompts",
    run="workbench.analyses.preplan_anchor.score:run",
)
