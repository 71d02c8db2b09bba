"""Attention sinks (Xiao et al. 2023; Gu et al. 2024; Yu et al. 2024): the torch-free spec.

`workbench sinks edit` is not a check: it edits heads (or massive dimensions) the user names, not a run's."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.analyses.ablation import ablate_check
from workbench.analyses.base import AnalysisSpec, CheckSpec, Column

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


@dataclass(frozen=True)
class SearchParams:
    """The ACT head search (act_search.py): calibration β, hidden-sink rule, candidate pool, batch size."""

    beta: float = 0.4
    threshold: float = HIDDEN_THRESHOLD
    min_queries: int = 4
    uniform_ratio: float = 3.0
    max_candidates: int = 20
    batch_size: int = 16


@dataclass(frozen=True)
class ActParams(SearchParams):
    """The "act_search" check: the search on a shipped letter-answer set, every `holdout_every`-th item held out."""

    holdout_every: int = 3
    dataset: str = "first_letter"  # or "simple_mc" (data/sinks)


SPEC = AnalysisSpec(
    name="attention_sinks",
    summary="BOS sink rate (α0 > 0.3), first-token share, hidden sinks",
    params_type=Params,
    default_prompts="workbench.analyses.attention_sinks.score:default_prompts",
    run="workbench.analyses.attention_sinks.score:run",
    # It finds its own candidates (hidden-sink mass on the calibration split), so it needs no saved run.
    checks=(CheckSpec("act_search", "ACT: heads whose hidden sinks, scaled by β, raise letter-answer accuracy "
                      "(greedy on a calibration split, scored on held-out items)", ActParams,
                      "workbench.analyses.attention_sinks.checks:run_act_search", needs_scores=False),
            ablate_check("attention_sinks", "next-token loss on its prompts")),
    causal="ablate",
    columns={
        "score": Column("sink rate: share of prompts where the first token receives α[0] > ε = 0.3 (Gu et al.)",
                        "share of prompts (0–1)", "higher = a more reliable BOS sink"),
        "sink_rate": Column("the score: share of prompts with α[0] > ε", "share of prompts (0–1)",
                            "higher = a more reliable sink"),
        "first_token_share": Column("α[0]: attention the first token receives, mean over later queries",
                                    "share of attention (0–1)", "higher = a stronger sink"),
        "hidden_sink_rate": Column("share of prompts with a hidden sink (a key other than the first with α > 0.1)",
                                   "share of prompts (0–1)", "higher = more hidden sinks"),
        "n_hidden_sinks": Column("hidden-sink keys per prompt (mean)", "keys", "higher = more hidden sinks"),
        "max_hidden_alpha": Column("largest α of a hidden sink, mean over prompts", "share of attention (0–1)",
                                   "higher = stronger hidden sinks"),
    },
)
