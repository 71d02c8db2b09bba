"""Induction heads (Olsson et al. 2022): score, prompts, checks and CLI.

The spec (torch-free): Params and the names of the functions that run it."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.analyses.base import AnalysisSpec


@dataclass(frozen=True)
class Params:
    n_prompts: int = 8
    half_len: int = 64
    seed: int = 0


SPEC = AnalysisSpec(
    name="induction_heads",
    summary="induction and previous-token scores on repeated random tokens",
    params_type=Params,
    default_prompts="workbench.analyses.induction_heads.score:default_prompts",
    run="workbench.analyses.induction_heads.score:run",
)
