"""Attention sinks (Xiao et al. 2023; Gu et al. 2024; Yu et al. 2024): score, report, checks, views, CLI.

The spec (torch-free): Params and the names of the functions that run it."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.analyses.base import AnalysisSpec

EPSILON = 0.3  # a head is a sink head on a prompt when α0 > EPSILON (Gu et al. 2024)
HIDDEN_THRESHOLD = 0.1


@dataclass(frozen=True)
class Params:
    n_prompts: int = 16
    n_tokens: int = 64
    epsilon: float = EPSILON
    hidden_threshold: float = HIDDEN_THRESHOLD
    min_queries: int = 8
    uniform_ratio: float = 3.0


SPEC = AnalysisSpec(
    name="attention_sinks",
    summary="BOS sink rate (α0 > 0.3), first-token share, hidden sinks",
    params_type=Params,
    default_prompts="workbench.analyses.attention_sinks.score:default_prompts",
    run="workbench.analyses.attention_sinks.score:run",
)
