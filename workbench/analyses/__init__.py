"""Analyses: one folder per analysis (score, prompts, checks, views; a few also a cli) and an explicit registry.

The registry is torch-free: each analysis package's `__init__.py` declares its spec (Params and the names of
its functions), and the code that runs a model is imported only when an analysis runs.
"""

from __future__ import annotations

from workbench.analyses.attention_profile import SPEC as ATTENTION_PROFILE
from workbench.analyses.attention_sinks import SPEC as ATTENTION_SINKS
from workbench.analyses.base import AnalysisSpec
from workbench.analyses.circuits import HEAD_ATTRIBUTION, SAE_CIRCUITS
from workbench.analyses.head_divergence import SPEC as HEAD_DIVERGENCE
from workbench.analyses.induction_heads import SPEC as INDUCTION_HEADS
from workbench.analyses.preplan_anchor import SPEC as PREPLAN_ANCHOR
from workbench.analyses.retrieval_heads import SPEC as RETRIEVAL_HEADS

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
