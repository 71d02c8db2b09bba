"""Retrieval heads (Wu et al. 2024): score, prompts, checks, views and CLI.

The spec (torch-free): Params and the names of the functions that run it."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.analyses.base import AnalysisSpec


@dataclass(frozen=True)
class Params:
    lengths: str = "500,2000"  # prompt lengths in tokens, comma-separated
    n_depths: int = 5  # depths linspace(0, 100, n_depths) %
    fmt: str = "chat"  # "paper" or "chat" (chat template, for instruct models)
    max_new_tokens: int = 24
    threshold: float = 0.1
    span_overlap: float = 0.9
    sink_tokens: int = 4
    recent_tokens: int = 128
    only_correct: bool = True  # the paper's rule; False counts every trial (models that never answer right)


SPEC = AnalysisSpec(
    name="retrieval_heads",
    summary="Wu et al. retrieval score (NIAH copy-paste) + streaming score",
    params_type=Params,
    default_prompts="workbench.analyses.retrieval_heads.score:default_prompts",
    run="workbench.analyses.retrieval_heads.score:run",
)
