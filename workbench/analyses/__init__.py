"""Analyses: one per file, each a pure tensor function + a frozen Params + a SPEC. The registry is explicit."""

from __future__ import annotations

from workbench.analyses.attention_profile import SPEC as ATTENTION_PROFILE
from workbench.analyses.attention_sinks.score import SPEC as ATTENTION_SINKS
from workbench.analyses.base import AnalysisSpec
from workbench.analyses.circuits.head_attribution import SPEC as HEAD_ATTRIBUTION
from workbench.analyses.circuits.sae.analysis import SPEC as SAE_CIRCUITS
from workbench.analyses.head_divergence.score import SPEC as HEAD_DIVERGENCE
from workbench.analyses.induction_heads.score import SPEC as INDUCTION_HEADS
from workbench.analyses.preplan_anchor.score import SPEC as PREPLAN_ANCHOR
from workbench.analyses.retrieval_heads.score import SPEC as RETRIEVAL_HEADS

REGISTRY: tuple[AnalysisSpec, ...] = (
    ATTENTION_PROFILE, RETRIEVAL_HEADS, ATTENTION_SINKS, PREPLAN_ANCHOR, HEAD_DIVERGENCE, HEAD_ATTRIBUTION,
    SAE_CIRCUITS, INDUCTION_HEADS,
)


def get_analysis(name: str) -> AnalysisSpec:
    from workbench.core.errors import WorkbenchError

    for spec in REGISTRY:
        if spec.name == name:
            return spec
    raise WorkbenchError(f"Unknown analysis {name!r}; available: {', '.join(s.name for s in REGISTRY)}.")
