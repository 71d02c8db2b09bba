"""Induction heads (Olsson et al. 2022): the torch-free spec."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.analyses.base import AnalysisSpec, CheckSpec


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
    mode: str = "mean"  # "mean" or "zero" ablation of the head output z
    batch_size: int = 8


SPEC = AnalysisSpec(
    name="induction_heads",
    summary="induction and previous-token scores on repeated random tokens",
    params_type=Params,
    default_prompts="workbench.analyses.induction_heads.score:default_prompts",
    run="workbench.analyses.induction_heads.score:run",
    checks=(CheckSpec("ablate", "repeated-half loss with the top-k induction heads vs k random heads ablated",
                      AblateParams, "workbench.analyses.induction_heads.checks:run_ablate"),),
)
