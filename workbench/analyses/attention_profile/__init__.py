"""Attention profile (mean attention distance without the sink, BOS mass, peakedness): the torch-free spec."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.analyses.ablation import ablate_check
from workbench.analyses.base import AnalysisSpec


@dataclass(frozen=True)
class Params:
    n_prompts: int = 4
    n_tokens: int = 256


SPEC = AnalysisSpec(
    name="attention_profile",
    summary="mean attention distance without the first-token sink, raw distance, BOS mass, "
            "peakedness per head",
    params_type=Params,
    default_prompts="workbench.analyses.attention_profile.score:default_prompts",
    run="workbench.analyses.attention_profile.score:run",
    checks=(ablate_check("attention_profile", "next-token loss on its natural text"),),
    causal="ablate",
)
