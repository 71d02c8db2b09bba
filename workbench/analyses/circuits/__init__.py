"""Circuits: head attribution by patching, circuit files, overlap, faithfulness, repair, SAE discovery.

The spec (torch-free): Params and the names of the functions that run it."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.analyses.base import AnalysisSpec


@dataclass(frozen=True)
class AttributionParams:
    task: str = "ioi"
    n_prompts: int = 50
    seed: int = 0
    method: str = "both"  # activation | attribution | both | path
    receivers: str = ""  # path patching: heads like 'L23H3,L29H1' ('' = direct path to the logits)
    receiver_positions: str = "all"  # path patching: patch the receivers at all positions or only the last
    layers: str = ""  # activation patching only on these layers, e.g. '20-29' ('' = all)


HEAD_ATTRIBUTION = AnalysisSpec(
    name="head_attribution",
    summary="Per-head effect on a contrast task (IOI, Colored Objects, "
            "greater-than, docstring) by activation, attribution or path patching",
    params_type=AttributionParams,
    default_prompts="workbench.analyses.circuits.head_attribution:default_prompts",
    run="workbench.analyses.circuits.head_attribution:run",
)


@dataclass(frozen=True)
class SAEParams:
    task: str = "ioi"
    n_examples: int = 10
    seed: int = 0
    positions: str = "mean"  # mean | last
    n_latents: int = 300
    l1: float = 0.02
    epochs: int = 500
    discretiser: str = "sae"  # sae | kmeans
    top_fraction: float = 0.05  # the circuit_: this share of heads by node score (the patching circuits' 5 %)
    reference: str = ""  # circuit name in circuits/ ('' = the saved one for this model and task, if any)


SAE_CIRCUITS = AnalysisSpec(
    name="sae_circuits",
    summary="SAE circuit discovery (O'Neill & Bui 2024): heads whose "
            "discretised outputs separate positive from corrupted prompts, vs a patching circuit",
    params_type=SAEParams,
    default_prompts="workbench.analyses.circuits.sae.analysis:default_prompts",
    run="workbench.analyses.circuits.sae.analysis:run",
)
