"""Attention profile (mean attention distance without the sink, BOS mass, peakedness): the torch-free spec."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.analyses.ablation import ablate_check
from workbench.analyses.base import AnalysisSpec, Column


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
    columns={
        "score": Column("mean attention distance once the first-token sink is removed, mean_t (D_t − t·A[t,0]) / "
                        "(1 − A[t,0])", "tokens", "higher = reads further back (long-range), sinks left out"),
        "distance_non_sink": Column("the score: attention distance without the first-token sink", "tokens",
                                    "higher = reads further back"),
        "distance": Column("mean attention distance D = mean_t Σ_s A[t,s]·(t−s), the sink included", "tokens",
                           "higher = further back (a BOS-sink head has D ≈ t)"),
        "bos_mass": Column("mean attention on the first token, mean_t A[t,0]", "share of attention (0–1)",
                           "higher = more of a sink"),
        "max_attention": Column("mean_t max_s A[t,s]", "share of attention (0–1)", "higher = more peaked"),
        "prev_token": Column("mean_t A[t,t−1]", "share of attention (0–1)", "higher = more previous-token"),
        "non_sink_queries": Column("share of queries with enough attention off the first token to score",
                                   "share of queries (0–1)", "higher = the score rests on more queries"),
    },
)
