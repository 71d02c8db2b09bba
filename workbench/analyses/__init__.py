"""Analyses: one per file, each a pure tensor function + a frozen Params + a SPEC. The registry is explicit."""

from __future__ import annotations

from workbench.analyses.attention_profile import SPEC as ATTENTION_PROFILE
from workbench.analyses.base import AnalysisSpec

REGISTRY: tuple[AnalysisSpec, ...] = (ATTENTION_PROFILE,)


def get_analysis(name: str) -> AnalysisSpec:
    from workbench.errors import WorkbenchError

    for spec in REGISTRY:
        if spec.name == name:
            return spec
    raise WorkbenchError(f"Unknown analysis {name!r}; available: {', '.join(s.name for s in REGISTRY)}.")
