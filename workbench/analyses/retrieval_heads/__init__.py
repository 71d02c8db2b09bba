"""Retrieval heads (Wu et al. 2024): the torch-free spec."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.analyses.base import AnalysisSpec, CheckSpec, Column

LONG_LENGTHS = (2048, 4096, 8168)  # with 24 new tokens the last reaches SmolLM2's full 8192 context


@dataclass(frozen=True)
class Trials:
    """The NIAH trials: one per (length, depth, needle)."""

    lengths: tuple[int, ...] = (500, 2000)  # prompt lengths in tokens
    n_depths: int = 5  # depths linspace(0, 100, n_depths) %
    fmt: str = "auto"  # "paper", "chat" (the chat template, for instruct models) or "auto" (chat where there is one)
    max_new_tokens: int = 24


@dataclass(frozen=True)
class Params(Trials):
    threshold: float = 0.1
    span_overlap: float = 0.9
    sink_tokens: int = 4
    recent_tokens: int = 128
    only_correct: bool = True  # the paper's rule; False counts every trial (models that never answer right)


@dataclass(frozen=True)
class MaskParams(Trials):
    k: int = 0  # heads masked per condition; 0 (the default): 5 % of heads
    seeds: int = 3  # random-head sets, seeds 0 … seeds−1


@dataclass(frozen=True)
class BudgetParams(Trials):
    full_share: float = 0.25  # share of KV heads that keep the full cache
    sink: int = 4  # sink tokens of a streaming head
    recent: int = 128  # recent tokens of a streaming head
    seeds: int = 3


def mask_effect(result) -> dict:
    """A saved "mask" as the atlas's causal column: NIAH accuracy with the top-k heads masked vs each random set."""
    from workbench.analyses.ablation import effect_against

    accuracy = result.tables["conditions"]["accuracy"]
    return effect_against(accuracy.iloc[0], accuracy.iloc[1:], "niah_accuracy", "better")


SPEC = AnalysisSpec(
    name="retrieval_heads",
    summary="Wu et al. retrieval score (NIAH copy-paste) + streaming score",
    params_type=Params,
    default_prompts="workbench.analyses.retrieval_heads.score:default_prompts",
    run="workbench.analyses.retrieval_heads.score:run",
    checks=(CheckSpec("mask", "NIAH accuracy with the top-k retrieval heads vs k random non-retrieval heads uniform",
                      MaskParams, "workbench.analyses.retrieval_heads.checks:run_mask", tables=("conditions",),
                      effect="workbench.analyses.retrieval_heads:mask_effect"),
            CheckSpec("kv_budget", "DuoAttention KV budget: retrieval-ranked KV heads full, the rest streaming, "
                      "vs random KV heads full", BudgetParams,
                      "workbench.analyses.retrieval_heads.checks:run_kv_budget", tables=("conditions",))),
    views="workbench.analyses.retrieval_heads.views:views",
    causal="mask",
    columns={
        "score": Column("retrieval score (Wu et al.): share of the needle's tokens the head copy-pastes while the "
                        "model decodes the answer, mean over correctly answered trials",
                        "share of needle tokens (0–1)", "higher = more retrieval; > 0.1 = a retrieval head"),
        "streaming_score": Column("decoding-query attention on the first sink_tokens plus the last recent_tokens "
                                  "keys (DuoAttention's streaming pattern)", "share of attention (0–1)",
                                  "higher = more streaming (local + sink)"),
        "n_events": Column("copy-paste events summed over the counted trials", "events", "higher = more copying"),
        "n_trials": Column("trials counted (answered correctly)", "trials", "the same for every head"),
        "retrieval": Column("a retrieval head: score > threshold (0.1)", "true / false", "true = retrieval head"),
    },
    presets={"long": {"lengths": LONG_LENGTHS, "n_depths": 3}},  # 3 lengths × 3 depths × 3 needles = 27 trials
    tables=("lengths", "top_by_length", "length_pairs", "top_overlap"),
)
