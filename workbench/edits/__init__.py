"""Edits to heads and the residual stream: classes (kinds), one applier (apply), vocabulary. Torch-free at import."""

from workbench.edits.kinds import (  # noqa: F401
    AblateHead,
    AttentionEdit,
    Batch,
    Edit,
    FinalQueryBias,
    MassiveDimEdit,
    PatchHead,
    ScaleHead,
    SinkCalibration,
    StreamingWindow,
    UniformAttention,
    describe,
)
