"""Circuits (head attribution by patching, overlap, faithfulness, repair, SAE discovery): the torch-free specs."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.analyses.ablation import ablate_check
from workbench.analyses.base import AnalysisSpec, CheckSpec, Column


@dataclass(frozen=True)
class AttributionParams:
    task: str = "ioi"
    n_prompts: int = 50
    seed: int = 0
    method: str = "both"  # activation | attribution | both | path
    receivers: tuple[str, ...] = ()  # path patching: heads like ("L23H3", "L29H1") (() = direct path to the logits)
    receiver_positions: str = "all"  # path patching: patch the receivers at all positions or only the last
    layers: tuple[int, ...] = ()  # activation patching only on these layers, e.g. "20-29" → (20, …, 29); () = all


@dataclass(frozen=True)
class FaithfulnessParams:
    task: str = ""  # '' = the checked run's task
    top_fraction: float = 0.05  # the circuit: this share of heads by score
    selection: str = "abs"  # rank heads by |score| (abs) or by the signed score (signed)
    n_prompts: int = 50
    seed: int = 1  # prompt seed (1: fresh prompts, not the seed-0 ones that found the circuit)
    n_random: int = 10


@dataclass(frozen=True)
class RepairParams:
    colored: str = ""  # Colored Objects circuit, name or file ('' = <model>_colored_objects in circuits/)
    top_fraction: float = 0.05  # the IOI circuit: this share of the checked run's heads
    selection: str = "abs"  # rank heads by |score| (abs) or by the signed score (signed)
    n_prompts: int = 80  # Colored Objects prompts, half to choose heads, half held out
    seed: int = 1
    bias: float = 3.0  # attention logit bias to the wrong colors
    max_heads: int = 4


HEAD_ATTRIBUTION = AnalysisSpec(
    name="head_attribution",
    summary="Per-head effect on a contrast task (IOI, Colored Objects, "
            "greater-than, docstring) by activation, attribution or path patching",
    params_type=AttributionParams,
    default_prompts="workbench.analyses.circuits.head_attribution:default_prompts",
    run="workbench.analyses.circuits.head_attribution:run",
    checks=(
        CheckSpec("faithfulness", "mean-ablate every head outside the top heads; share of the clean metric kept "
                  "vs random circuits", FaithfulnessParams, "workbench.analyses.circuits.checks:run_faithfulness"),
        CheckSpec("repair", "bias IOI-only heads of an IOI run to the wrong colors; Colored Objects held-out "
                  "accuracy before/after vs random heads", RepairParams,
                  "workbench.analyses.circuits.checks:run_repair"),
        ablate_check("head_attribution", "the task's metric on the run's prompts (mean over the corrupted twins)",
                     metric="contrast", reference="corrupt"),
    ),
    causal="ablate",
    columns={
        "score": Column("normalised patching effect: Σ (M_patched − M_clean) / Σ (M_corrupt − M_clean), the share "
                        "of the clean → corrupted change of the task metric that patching this head alone gives",
                        "share of the clean–corrupted gap (signed)",
                        "positive = carries the task signal; negative = works against it (e.g. negative name movers)"),
        "activation_score": Column("the score by activation patching (the head's output from the corrupted run)",
                                   "share of the clean–corrupted gap (signed)", "as the score"),
        "attribution_score": Column("the score by attribution patching (first-order gradient estimate)",
                                    "share of the clean–corrupted gap (signed)", "as the score"),
    },
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
    checks=(ablate_check("sae_circuits", "the task's metric on the run's prompts (mean over the corrupted twins)",
                         metric="contrast", reference="corrupt"),),
    causal="ablate",
    columns={
        "score": Column("SAE node score: |codes on clean prompts not seen on corrupted ones|, softmax over heads",
                        "share over heads (sums to 1)", "higher = the head's output separates clean from corrupted"),
        "raw_score": Column("|C+ \\ C−|: discrete codes of the head seen only on clean prompts", "codes",
                            "higher = more separating"),
        "baseline_score": Column("baseline |mean ‖o+‖ − mean ‖o−‖| of the head's output norms", "L2 norm",
                                 "higher = norms differ more"),
        "in_circuit": Column("in the found circuit (top_fraction of heads by score)", "true / false", ""),
        "in_reference": Column("in the reference (patching) circuit", "true / false", ""),
    },
)
