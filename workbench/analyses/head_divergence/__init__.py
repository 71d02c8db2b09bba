"""Head divergence (He et al. 2024): the torch-free spec."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.analyses.ablation import ablate_check
from workbench.analyses.base import AnalysisSpec, CheckSpec, Column


@dataclass(frozen=True)
class Params:
    n_positions: int = 1
    metric: str = "l2"
    top_k: int = 10
    held_out: float = 0.5
    seed: int = 0


@dataclass(frozen=True)
class ReinforceParams:
    k: int = 10  # the top-k divergence heads are scaled
    alpha: float = 2.0  # by this factor
    n_random: int = 3  # controls: k random other heads, one draw per seed
    seed: int = 0
    held_out: float = 0.5  # share of the known facts held out (the analysis scores the rest)


SPEC = AnalysisSpec(
    name="head_divergence",
    summary="how much each head's output changes when a passage is added",
    params_type=Params,
    default_prompts="workbench.analyses.head_divergence.score:default_prompts",
    run="workbench.analyses.head_divergence.score:run",
    checks=(CheckSpec("reinforce", "scale the top-k divergence heads by alpha (VHR): follow rate on held-out "
                      "counterfactual prompts vs k random heads, and the cost on neutral passages", ReinforceParams,
                      "workbench.analyses.head_divergence.checks:run_reinforce"),
            ablate_check("head_divergence", "follow margin logit(passage answer) − logit(true answer) on its "
                         "counterfactual prompts", metric="logit_diff")),
    causal="ablate",
    columns={
        "score": Column("head divergence: mean ‖o(passage + question) − o(question only)‖ of the head's write at the "
                        "answer positions (metric l2; cosine: 1 − cos)", "L2 norm of the head output (or 1 − cos)",
                        "higher = the head reads the passage more"),
        "sd": Column("standard deviation of the divergence over prompts", "as the score", "higher = less stable"),
        "rank": Column("rank of the score among all heads", "rank (1 = largest)", "lower = more divergent"),
    },
)
