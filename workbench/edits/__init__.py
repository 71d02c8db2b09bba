"""Edits to attention heads and the residual stream, applied while a model runs: one class per edit
(kinds), one applier with a bridge and a streaming-twin back end (apply), one vocabulary (vocabulary).
Torch-free at import; `workbench.edits.apply` imports the engine."""

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
