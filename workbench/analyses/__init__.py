"""Analyses: one per file, each a pure tensor function + a frozen Params + a SPEC. The registry is explicit."""

from __future__ import annotations

from workbench.analyses.attention_profile import SPEC as ATTENTION_PROFILE
from workbench.analyses.attention_sinks import SPEC as ATTENTION_SINKS
from workbench.analyses.base import AnalysisSpec
from workbench.analyses.head_attribution import SPEC as HEAD_ATTRIBUTION
from workbench.analyses.head_divergence import SPEC as HEAD_DIVERGENCE
from workbench.analyses.induction_heads import SPEC as INDUCTION_HEADS
from workbench.analyses.preplan_anchor import SPEC as PREPLAN_ANCHOR
from workbench.analyses.retrieval_heads import SPEC as RETRIEVAL_HEADS
from workbench.analyses.sae_circuits import SPEC as SAE_CIRCUITS

REGISTRY: tuple[AnalysisSpec, ...] = (
    ATTENTION_PROFILE, RETRIEVAL_HEADS, ATTENTION_SINKS, PREPLAN_ANCHOR, HEAD_DIVERGENCE, HEAD_ATTRIBUTION,
    SAE_CIRCUITS, INDUCTION_HEADS,
)


def get_analysis(name: str) -> AnalysisSpec:
    from workbench.errors import WorkbenchError

    for spec in REGISTRY:
        if spec.name == name:
            return spec
    raise WorkbenchError(f"Unknown analysis {name!r}; available: {', '.join(s.name for s in REGISTRY)}.")
